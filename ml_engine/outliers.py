"""Outlier detection: persistable MLlib stages and the ``detect_outliers`` job.

Detectors (each an ``Estimator``/``Model`` pair written like Spark's own stages):

* :class:`IQROutlierDetector` -> :class:`IQROutlierModel`: Tukey fences ``Q1 - k*IQR`` and
  ``Q3 + k*IQR`` (``IQR = Q3 - Q1``).
* :class:`MADOutlierDetector` -> :class:`MADOutlierModel`: robust z-score
  ``0.6745 * (x - median) / MAD`` (``MAD`` = median of ``|x - median|``) against ``threshold``.
* :class:`ZScoreOutlierDetector` -> :class:`ZScoreOutlierModel`: ``(x - mean) / std`` (sample
  standard deviation, ``ddof = 1``) against ``threshold``.
* :class:`MahalanobisOutlierDetector` -> :class:`MahalanobisOutlierModel`: the multivariate
  detector. The columns are standardised (``z = (x - mean) / std``) and the distance is
  ``d = sqrt(z' R^-1 z)`` with ``R`` the correlation matrix (the covariance of ``z``), which is
  the classic Mahalanobis distance ``sqrt((x - mean)' S^-1 (x - mean))``. Chosen over the
  distance to k-means centres because it needs no second model, no choice of k and no
  random initialisation. Means and standard deviations come from one aggregation, the
  correlation matrix from ``pyspark.ml.stat.Correlation`` on the standardised columns
  (``RowMatrix``: a fixed number of jobs whatever k, the ``k x k`` sums done in native code;
  ``k**2`` SQL ``covar_samp`` aggregates were tried and take minutes to compile for 40
  columns), and the small ``k x k`` inverse is taken on the driver with numpy (``pinv``, so
  perfectly collinear columns do not fail). A row is an outlier when ``d > threshold``; for
  normal data ``d**2`` is chi-square with ``k`` degrees of freedom, so
  ``sqrt(scipy.stats.chi2.ppf(0.999, k))`` is a principled threshold.

Shared behaviour of every model:

* ``_transform`` adds three columns and nothing else, all native Column expressions:
  ``outputCol`` (boolean, the row is an outlier), ``scoreCol`` (double, the normalised score)
  and ``reasonsCol`` (``array<string>``, ``"<method>:<column>"`` for each column that fired;
  ``"mahalanobis:<col1>,<col2>,..."`` for the multivariate detector).
* Normalised score: how far a value is from the centre relative to the distance of its fence,
  so that ``score > 1`` means outlier for every method and scores of different methods compare.
  IQR: ``max(Q1 - x, x - Q3, 0) / (k * IQR)``; MAD: ``|robust z| / threshold``; z-score:
  ``|z| / threshold``; Mahalanobis: ``d / threshold``. A univariate model's row score is the
  maximum over its columns. A row is flagged when a value lies strictly outside its fences
  (``x < lower`` or ``x > upper``); univariate fences are ``Q1 - k*IQR``/``Q3 + k*IQR``,
  ``median -/+ threshold * MAD / 0.6745`` and ``mean -/+ threshold * std``.
* Null and NaN values are not scored (score null) and never flagged; a Mahalanobis row with a
  null in any of its columns is not scored.
* Degenerate columns: when a column's spread is zero (IQR = 0, MAD = 0 or std = 0, e.g. a
  constant column) no fence distance can be defined, so the column never flags a value and
  its score is 0 (no division by zero). The Mahalanobis detector leaves such columns out of
  the distance (their standardised value counts as 0).
* Fitting computes the statistics of ALL input columns together, in a number of Spark jobs
  that does not depend on the number of columns: IQR two (value counts, then quantiles),
  z-score one (an ``agg``), MAD three (counts, medians, then the medians of
  ``|x - median|``), Mahalanobis one ``agg`` plus ``Correlation.corr``'s fixed few. Quantiles
  come from :mod:`ml_engine.quantiles`: Spark's exact ``percentile`` (linear interpolation,
  numpy's default method) over every value while a column has at most ``sampleRows`` values,
  otherwise over a sample of about ``sampleRows`` rows chosen by a hash of their values. They
  are approximate on large data but never random: fitting twice on the same rows gives the
  same fences, locally and on a cluster.
* Learned state lives in JSON-serialisable Params (lists of floats, the inverse correlation
  as a nested list), so ``save``/``load`` work with ``DefaultParamsWritable``/``Readable``,
  alone or inside a ``PipelineModel``.

Combining detectors (what the job does, each a pure function of a DataFrame and a fitted
``PipelineModel`` of detectors): :func:`with_outlier_flags` (policy ``flag``),
:func:`with_capped_values` (``cap``), :func:`split_outliers` (``drop``),
:func:`restore_outlier_input` (undo them for a rerun), :func:`outlier_statistics`; the job
is :func:`run_detect_outliers`.

Example::

    model = IQROutlierDetector(inputCols=["amount"], k=3.0).fit(df)
    model.transform(df)   # + <uid>__output, <uid>__score, <uid>__reasons
"""

from __future__ import annotations

import functools
import json
import math
import operator
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import numpy as np
from pyspark import StorageLevel, keyword_only
from pyspark.ml import Estimator, Model, Pipeline, PipelineModel
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCols, HasOutputCol
from pyspark.ml.stat import Correlation
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import Config, DetectorConfig
from ml_engine.quality.quarantine import QUARANTINE_COLUMNS, quarantine_rows, replace_predicate
from ml_engine.quantiles import SAMPLE_ROWS, quantiles
from ml_engine.results import JobError, JobResult
from ml_engine.session import describe
from ml_engine.tables.base import DeltaTables, sql_literal

# 1 / Phi^-1(0.75): makes the MAD of normal data comparable to its standard deviation.
ROBUST_Z_FACTOR = 0.6745

# Columns the job writes to silver (every policy; outlier_original only with cap, else
# null). Delta tables here never change schema, so silver must be created with them.
IS_OUTLIER = "is_outlier"
OUTLIER_SCORE = "outlier_score"
OUTLIER_REASONS = "outlier_reasons"
OUTLIER_ORIGINAL = "outlier_original"
OUTLIER_FIELDS = (
    T.StructField(IS_OUTLIER, T.BooleanType(), True),
    T.StructField(OUTLIER_SCORE, T.DoubleType(), True),
    T.StructField(OUTLIER_REASONS, T.ArrayType(T.StringType(), True), True),
    # Not a map: maps cannot be sorted, grouped or compared in Spark SQL.
    T.StructField(
        OUTLIER_ORIGINAL,
        T.ArrayType(
            T.StructType(
                [T.StructField("column", T.StringType()), T.StructField("value", T.StringType())]
            )
        ),
        True,
    ),
)
OUTLIER_COLUMNS = tuple(f.name for f in OUTLIER_FIELDS)

# The outlier columns silver must have for each policy (others it has are written too).
_POLICY_COLUMNS = {"flag": OUTLIER_COLUMNS[:3], "cap": OUTLIER_COLUMNS, "drop": ()}

STAGE = "outliers"
METADATA_COLUMNS = ("batch_id", "source_file", "ingested_at")
# Microsecond timestamps in quarantined rows, so a restored row is exactly the original.
_JSON_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"}
_FIT_RECORD = "fit_record"


class OutlierFitError(ValueError):
    """A detector cannot be fitted on the data; the message names the stage and column."""


# --------------------------------------------------------------------------- helpers


def _col(name: str) -> Column:
    """The column ``name``, quoted so names with dots or spaces work."""
    return F.col("`" + name.replace("`", "``") + "`")


def _value(name: str) -> Column:
    """A numeric column as double, with NaN as null (NaN is never scored)."""
    return F.nanvl(_col(name).cast("double"), F.lit(None).cast("double"))


def _check_input(dataset: DataFrame, columns: Sequence[str], stage: str) -> None:
    """Raises ValueError unless every column exists in ``dataset`` and is numeric."""
    if not columns:
        raise ValueError(f"{stage}: inputCols is empty; set the numeric columns to check")
    fields = {f.name: f.dataType for f in dataset.schema.fields}
    for c in columns:
        if c not in fields:
            raise ValueError(
                f"{stage}: input column '{c}' is not in the DataFrame (columns: {list(fields)})"
            )
        if not isinstance(fields[c], T.NumericType):
            raise ValueError(
                f"{stage}: input column '{c}' has type {fields[c].simpleString()}; "
                f"outlier detectors need numeric columns"
            )


def _greatest(columns: Sequence[Column]) -> Column:
    """``greatest`` that also accepts a single column (nulls are skipped, all null -> null)."""
    return columns[0] if len(columns) == 1 else F.greatest(*columns)


def _no_values(stage: str, columns: Sequence[str], counts: Sequence[int]) -> None:
    empty = [c for c, n in zip(columns, counts, strict=True) if not n]
    if empty:
        raise OutlierFitError(
            f"{stage}: column(s) {empty} have no non-null, non-NaN values to fit on; "
            f"remove them from the detector's columns or fit on data that has values"
        )


# --------------------------------------------------------------------------- params


class _OutlierParams(HasInputCols, HasOutputCol):
    """Params shared by every detector and its model."""

    scoreCol: Param[str] = Param(
        Params._dummy(),
        "scoreCol",
        "output column of the normalised outlier score (> 1 means outlier)",
        typeConverter=TypeConverters.toString,
    )
    reasonsCol: Param[str] = Param(
        Params._dummy(),
        "reasonsCol",
        "output column (array<string>) of '<method>:<column>' entries that fired",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(scoreCol=self.uid + "__score", reasonsCol=self.uid + "__reasons")

    def getScoreCol(self) -> str:
        """Gets the value of scoreCol or its default value."""
        return self.getOrDefault(self.scoreCol)

    def getReasonsCol(self) -> str:
        """Gets the value of reasonsCol or its default value."""
        return self.getOrDefault(self.reasonsCol)


class _ThresholdParams(Params):
    """The score threshold of the MAD, z-score and Mahalanobis detectors."""

    threshold: Param[float] = Param(
        Params._dummy(),
        "threshold",
        "a value is an outlier when its |robust z| / |z| / distance is above this (> 0)",
        typeConverter=TypeConverters.toFloat,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(threshold=3.5)

    def getThreshold(self) -> float:
        """Gets the value of threshold or its default value."""
        return self.getOrDefault(self.threshold)


class _SampleParams(Params):
    """How many values of a column the quantiles read at most (see ml_engine.quantiles)."""

    sampleRows: Param[int] = Param(
        Params._dummy(),
        "sampleRows",
        "quantiles are exact up to this many values per column, else from a hash-chosen "
        "sample of about this many rows (>= 1)",
        typeConverter=TypeConverters.toInt,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(sampleRows=SAMPLE_ROWS)

    def getSampleRows(self) -> int:
        """Gets the value of sampleRows or its default value."""
        return self.getOrDefault(self.sampleRows)


class _IQRParams(_OutlierParams, _SampleParams):
    k: Param[float] = Param(
        Params._dummy(),
        "k",
        "fence multiplier: fences at Q1 - k*IQR and Q3 + k*IQR (> 0)",
        typeConverter=TypeConverters.toFloat,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(k=1.5)

    def getK(self) -> float:
        """Gets the value of k or its default value."""
        return self.getOrDefault(self.k)


class _MADParams(_OutlierParams, _ThresholdParams, _SampleParams):
    pass


class _ZScoreParams(_OutlierParams, _ThresholdParams):
    pass


class _MahalanobisParams(_OutlierParams, _ThresholdParams):
    pass


class _OutputSetters:
    """Setters shared by detectors and models."""

    def setInputCols(self, value: list[str]):
        """Sets the value of :py:attr:`inputCols`."""
        return self._set(inputCols=value)

    def setOutputCol(self, value: str):
        """Sets the value of :py:attr:`outputCol`."""
        return self._set(outputCol=value)

    def setScoreCol(self, value: str):
        """Sets the value of :py:attr:`scoreCol`."""
        return self._set(scoreCol=value)

    def setReasonsCol(self, value: str):
        """Sets the value of :py:attr:`reasonsCol`."""
        return self._set(reasonsCol=value)


def _check_positive(stage: Params, name: str) -> None:
    value = stage.getOrDefault(stage.getParam(name))
    if not value > 0:
        raise ValueError(f"{type(stage).__name__}: {name} must be > 0, got {value}")


# --------------------------------------------------------------------------- models (base)


class OutlierModel(Model, _OutlierParams, _OutputSetters):
    """Base of the fitted detectors: adds the flag, score and reasons columns."""

    method = "outlier"

    def violation_details(self) -> list[Column]:
        """Human-readable violations of a row, for quarantine reasons.

        Returns:
            One string Column per checked column (multivariate: one), null where the row's
            value is not an outlier, e.g. ``"iqr: amount=900.0 above upper fence 27.5"``.
        """
        raise NotImplementedError

    def fences(self) -> dict[str, tuple[float, float]]:
        """Per-column ``(lower, upper)`` fences that values are capped to; empty when the
        detector has none (Mahalanobis) or every column is degenerate."""
        return {}


class _UnivariateOutlierModel(OutlierModel):
    """A model whose columns each have a centre interval ``[a, b]`` and a fence distance ``s``:
    fences ``a - s`` and ``b + s``, score ``max(a - x, x - b, 0) / s``."""

    def _centres(self) -> list[tuple[float, float, float]]:
        """``(a, b, s)`` per input column; ``s = 0`` for a degenerate column."""
        raise NotImplementedError

    def _checked(self) -> list[tuple[str, float, float, float]]:
        cols = self.getInputCols()
        centres = self._centres()
        if len(centres) != len(cols):
            raise ValueError(
                f"{type(self).__name__}: the learned statistics cover {len(centres)} columns "
                f"but inputCols has {len(cols)} ({cols}); refit the detector"
            )
        return [(c, a, b, s) for c, (a, b, s) in zip(cols, centres, strict=True)]

    def fences(self) -> dict[str, tuple[float, float]]:
        return {c: (a - s, b + s) for c, a, b, s in self._checked() if s > 0}

    def _column_flag(self, c: str, a: float, b: float, s: float) -> Column:
        if not s > 0:
            return F.lit(False)
        x = _value(c)
        return F.coalesce((x < F.lit(a - s)) | (x > F.lit(b + s)), F.lit(False))

    def _transform(self, dataset: DataFrame) -> DataFrame:
        checked = self._checked()
        _check_input(dataset, [c for c, *_ in checked], type(self).__name__)
        scores, reasons = [], []
        for c, a, b, s in checked:
            x = _value(c)
            # greatest() skips nulls: without the guard a null value would score 0.
            if s > 0:
                distance = F.greatest(F.lit(a) - x, x - F.lit(b), F.lit(0.0)) / F.lit(s)
            else:
                distance = F.lit(0.0)
            score = F.when(x.isNotNull(), distance)
            scores.append(score)
            reasons.append(F.when(self._column_flag(c, a, b, s), F.lit(f"{self.method}:{c}")))
        fired = F.filter(F.array(*reasons), lambda r: r.isNotNull())
        return dataset.withColumns(
            {
                self.getOutputCol(): F.size(fired) > 0,
                self.getScoreCol(): _greatest(scores).cast("double"),
                self.getReasonsCol(): fired,
            }
        )

    def violation_details(self) -> list[Column]:
        out = []
        for c, a, b, s in self._checked():
            if not s > 0:
                continue
            x = _value(c)
            lower, upper = a - s, b + s
            text = F.when(
                x < F.lit(lower),
                F.concat(
                    F.lit(f"{self.method}: {c}="),
                    _col(c).cast("string"),
                    F.lit(f" below lower fence {lower!r}"),
                ),
            ).when(
                x > F.lit(upper),
                F.concat(
                    F.lit(f"{self.method}: {c}="),
                    _col(c).cast("string"),
                    F.lit(f" above upper fence {upper!r}"),
                ),
            )
            out.append(text)
        return out


# --------------------------------------------------------------------------- IQR


class IQROutlierModel(
    _UnivariateOutlierModel, _IQRParams, DefaultParamsReadable, DefaultParamsWritable
):
    """Fitted :class:`IQROutlierDetector`: first and third quartiles per input column.

    A value is an outlier outside ``[Q1 - k*IQR, Q3 + k*IQR]``; ``k`` can be changed on the
    fitted model.
    """

    method = "iqr"

    q1s: Param[list[float]] = Param(
        Params._dummy(), "q1s", "first quartile per input column", TypeConverters.toListFloat
    )
    q3s: Param[list[float]] = Param(
        Params._dummy(), "q3s", "third quartile per input column", TypeConverters.toListFloat
    )

    @keyword_only
    def __init__(self, *, q1s: list[float] | None = None, q3s: list[float] | None = None):
        super().__init__()
        self._set(**self._input_kwargs)

    def setK(self, value: float) -> IQROutlierModel:
        """Sets the value of :py:attr:`k`."""
        return self._set(k=value)

    def getQ1s(self) -> list[float]:
        """First quartile per input column."""
        return self.getOrDefault(self.q1s)

    def getQ3s(self) -> list[float]:
        """Third quartile per input column."""
        return self.getOrDefault(self.q3s)

    def _centres(self) -> list[tuple[float, float, float]]:
        _check_positive(self, "k")
        k = self.getK()
        return [
            (q1, q3, k * (q3 - q1)) for q1, q3 in zip(self.getQ1s(), self.getQ3s(), strict=True)
        ]


class IQROutlierDetector(
    Estimator[IQROutlierModel],
    _IQRParams,
    _OutputSetters,
    DefaultParamsReadable,
    DefaultParamsWritable,
):
    """Tukey's fences: a value is an outlier below ``Q1 - k*IQR`` or above ``Q3 + k*IQR``.

    Fitting runs TWO Spark jobs for all input columns (value counts, then quantiles).

    Example::

        model = IQROutlierDetector(inputCols=["amount", "distance_km"], k=3.0).fit(df)
    """

    @keyword_only
    def __init__(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        scoreCol: str | None = None,
        reasonsCol: str | None = None,
        k: float = 1.5,
        sampleRows: int = SAMPLE_ROWS,
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        scoreCol: str | None = None,
        reasonsCol: str | None = None,
        k: float = 1.5,
        sampleRows: int = SAMPLE_ROWS,
    ) -> IQROutlierDetector:
        """Sets params for this detector."""
        return self._set(**self._input_kwargs)

    def setK(self, value: float) -> IQROutlierDetector:
        """Sets the value of :py:attr:`k`."""
        return self._set(k=value)

    def setSampleRows(self, value: int) -> IQROutlierDetector:
        """Sets the value of :py:attr:`sampleRows`."""
        return self._set(sampleRows=value)

    def _fit(self, dataset: DataFrame) -> IQROutlierModel:
        """Quartiles of every input column from one aggregation.

        Raises:
            ValueError: an input column is missing or not numeric, or k <= 0.
            OutlierFitError: a column has no values.
        """
        cols = self.getInputCols() if self.isDefined(self.inputCols) else []
        _check_input(dataset, cols, type(self).__name__)
        _check_positive(self, "k")
        counts, quartiles = quantiles(
            dataset, {c: _value(c) for c in cols}, [0.25, 0.75], self.getSampleRows()
        )
        _no_values(type(self).__name__, cols, counts)
        model = IQROutlierModel(q1s=[q[0] for q in quartiles], q3s=[q[1] for q in quartiles])
        return self._copyValues(model)


# --------------------------------------------------------------------------- MAD


class MADOutlierModel(
    _UnivariateOutlierModel, _MADParams, DefaultParamsReadable, DefaultParamsWritable
):
    """Fitted :class:`MADOutlierDetector`: median and MAD per input column.

    Robust z-score ``0.6745 * (x - median) / MAD``; a value is an outlier when
    ``|robust z| > threshold``, i.e. outside ``median -/+ threshold * MAD / 0.6745``.
    """

    method = "mad"

    medians: Param[list[float]] = Param(
        Params._dummy(), "medians", "median per input column", TypeConverters.toListFloat
    )
    mads: Param[list[float]] = Param(
        Params._dummy(),
        "mads",
        "median absolute deviation from the median per input column (unscaled)",
        TypeConverters.toListFloat,
    )

    @keyword_only
    def __init__(self, *, medians: list[float] | None = None, mads: list[float] | None = None):
        super().__init__()
        self._set(**self._input_kwargs)

    def setThreshold(self, value: float) -> MADOutlierModel:
        """Sets the value of :py:attr:`threshold`."""
        return self._set(threshold=value)

    def getMedians(self) -> list[float]:
        """Median per input column."""
        return self.getOrDefault(self.medians)

    def getMads(self) -> list[float]:
        """MAD per input column."""
        return self.getOrDefault(self.mads)

    def _centres(self) -> list[tuple[float, float, float]]:
        _check_positive(self, "threshold")
        t = self.getThreshold()
        return [
            (m, m, t * mad / ROBUST_Z_FACTOR)
            for m, mad in zip(self.getMedians(), self.getMads(), strict=True)
        ]


class MADOutlierDetector(
    Estimator[MADOutlierModel],
    _MADParams,
    _OutputSetters,
    DefaultParamsReadable,
    DefaultParamsWritable,
):
    """Robust z-score ``0.6745 * (x - median) / MAD`` against ``threshold`` (default 3.5).

    Fitting runs THREE Spark jobs for all input columns: value counts, the medians, then the
    medians of ``|x - median|``.
    """

    @keyword_only
    def __init__(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        scoreCol: str | None = None,
        reasonsCol: str | None = None,
        threshold: float = 3.5,
        sampleRows: int = SAMPLE_ROWS,
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        scoreCol: str | None = None,
        reasonsCol: str | None = None,
        threshold: float = 3.5,
        sampleRows: int = SAMPLE_ROWS,
    ) -> MADOutlierDetector:
        """Sets params for this detector."""
        return self._set(**self._input_kwargs)

    def setThreshold(self, value: float) -> MADOutlierDetector:
        """Sets the value of :py:attr:`threshold`."""
        return self._set(threshold=value)

    def setSampleRows(self, value: int) -> MADOutlierDetector:
        """Sets the value of :py:attr:`sampleRows`."""
        return self._set(sampleRows=value)

    def _fit(self, dataset: DataFrame) -> MADOutlierModel:
        """Medians, then MADs, of every input column (two aggregations).

        Raises:
            ValueError: an input column is missing or not numeric, or threshold <= 0.
            OutlierFitError: a column has no values.
        """
        cols = self.getInputCols() if self.isDefined(self.inputCols) else []
        _check_input(dataset, cols, type(self).__name__)
        _check_positive(self, "threshold")
        rows = self.getSampleRows()
        counts, medians_q = quantiles(dataset, {c: _value(c) for c in cols}, [0.5], rows)
        _no_values(type(self).__name__, cols, counts)
        medians = [q[0] for q in medians_q]
        deviations = {c: F.abs(_value(c) - F.lit(m)) for c, m in zip(cols, medians, strict=True)}
        _, mad_q = quantiles(dataset, deviations, [0.5], rows, counts=counts)
        model = MADOutlierModel(medians=medians, mads=[q[0] for q in mad_q])
        return self._copyValues(model)


# --------------------------------------------------------------------------- z-score


class ZScoreOutlierModel(
    _UnivariateOutlierModel, _ZScoreParams, DefaultParamsReadable, DefaultParamsWritable
):
    """Fitted :class:`ZScoreOutlierDetector`: mean and sample standard deviation per column.

    A value is an outlier when ``|x - mean| / std > threshold``.
    """

    method = "zscore"

    means: Param[list[float]] = Param(
        Params._dummy(), "means", "mean per input column", TypeConverters.toListFloat
    )
    stds: Param[list[float]] = Param(
        Params._dummy(),
        "stds",
        "sample standard deviation (ddof=1) per input column; 0 when undefined",
        TypeConverters.toListFloat,
    )

    @keyword_only
    def __init__(self, *, means: list[float] | None = None, stds: list[float] | None = None):
        super().__init__()
        self._set(**self._input_kwargs)

    def setThreshold(self, value: float) -> ZScoreOutlierModel:
        """Sets the value of :py:attr:`threshold`."""
        return self._set(threshold=value)

    def getMeans(self) -> list[float]:
        """Mean per input column."""
        return self.getOrDefault(self.means)

    def getStds(self) -> list[float]:
        """Sample standard deviation per input column."""
        return self.getOrDefault(self.stds)

    def _centres(self) -> list[tuple[float, float, float]]:
        _check_positive(self, "threshold")
        t = self.getThreshold()
        return [(m, m, t * s) for m, s in zip(self.getMeans(), self.getStds(), strict=True)]


class ZScoreOutlierDetector(
    Estimator[ZScoreOutlierModel],
    _ZScoreParams,
    _OutputSetters,
    DefaultParamsReadable,
    DefaultParamsWritable,
):
    """Z-score ``(x - mean) / std`` against ``threshold`` (default 3.5).

    Fitting runs ONE Spark job for all input columns. A column with one value has no sample
    standard deviation; it is treated as degenerate (std 0, never an outlier).
    """

    @keyword_only
    def __init__(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        scoreCol: str | None = None,
        reasonsCol: str | None = None,
        threshold: float = 3.5,
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        scoreCol: str | None = None,
        reasonsCol: str | None = None,
        threshold: float = 3.5,
    ) -> ZScoreOutlierDetector:
        """Sets params for this detector."""
        return self._set(**self._input_kwargs)

    def setThreshold(self, value: float) -> ZScoreOutlierDetector:
        """Sets the value of :py:attr:`threshold`."""
        return self._set(threshold=value)

    def _fit(self, dataset: DataFrame) -> ZScoreOutlierModel:
        """Means and sample standard deviations of every input column (one aggregation).

        Raises:
            ValueError: an input column is missing or not numeric, or threshold <= 0.
            OutlierFitError: a column has no values.
        """
        cols = self.getInputCols() if self.isDefined(self.inputCols) else []
        _check_input(dataset, cols, type(self).__name__)
        _check_positive(self, "threshold")
        aggs = []
        for i, c in enumerate(cols):
            x = _value(c)
            aggs += [
                F.count(x).alias(f"n{i}"),
                F.avg(x).alias(f"m{i}"),
                F.stddev_samp(x).alias(f"s{i}"),
            ]
        row = dataset.agg(*aggs).first()
        _no_values(type(self).__name__, cols, [row[f"n{i}"] for i in range(len(cols))])
        model = ZScoreOutlierModel(
            means=[float(row[f"m{i}"]) for i in range(len(cols))],
            stds=[_finite_or_zero(row[f"s{i}"]) for i in range(len(cols))],
        )
        return self._copyValues(model)


def _finite_or_zero(value: Any) -> float:
    """A spread statistic, 0.0 when undefined (null, NaN): treated as degenerate."""
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0


# --------------------------------------------------------------------------- Mahalanobis


class MahalanobisOutlierModel(
    OutlierModel, _MahalanobisParams, DefaultParamsReadable, DefaultParamsWritable
):
    """Fitted :class:`MahalanobisOutlierDetector`.

    ``d = sqrt(z' P z)`` with ``z = (x - mean) / std`` and ``P`` the (pseudo-)inverse of the
    correlation matrix of the non-constant columns (rows and columns of constant columns are
    0). A row is an outlier when ``d > threshold``; its score is ``d / threshold``.
    """

    method = "mahalanobis"

    means: Param[list[float]] = Param(
        Params._dummy(), "means", "mean per input column", TypeConverters.toListFloat
    )
    stds: Param[list[float]] = Param(
        Params._dummy(),
        "stds",
        "sample standard deviation per input column (0: constant, left out)",
        TypeConverters.toListFloat,
    )
    invCorrelation: Param[list[list[float]]] = Param(
        Params._dummy(),
        "invCorrelation",
        "pseudo-inverse of the correlation matrix of the input columns, row by row",
        TypeConverters.toListListFloat,
    )

    @keyword_only
    def __init__(
        self,
        *,
        means: list[float] | None = None,
        stds: list[float] | None = None,
        invCorrelation: list[list[float]] | None = None,
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    def setThreshold(self, value: float) -> MahalanobisOutlierModel:
        """Sets the value of :py:attr:`threshold`."""
        return self._set(threshold=value)

    def getMeans(self) -> list[float]:
        """Mean per input column."""
        return self.getOrDefault(self.means)

    def getStds(self) -> list[float]:
        """Sample standard deviation per input column."""
        return self.getOrDefault(self.stds)

    def getInvCorrelation(self) -> list[list[float]]:
        """The inverse correlation matrix, row by row."""
        return self.getOrDefault(self.invCorrelation)

    def _distance(self) -> Column:
        cols = self.getInputCols()
        means, stds, inv = self.getMeans(), self.getStds(), self.getInvCorrelation()
        k = len(cols)
        if not (len(means) == len(stds) == len(inv) == k and all(len(r) == k for r in inv)):
            raise ValueError(
                f"{type(self).__name__}: the learned statistics do not match the {k} "
                f"inputCols {cols}; refit the detector"
            )
        z = F.array(
            *[
                (_value(c) - F.lit(m)) * F.lit(1.0 / s if s > 0 else 0.0)
                for c, m, s in zip(cols, means, stds, strict=True)
            ]
        )
        # One literal for the k x k matrix keeps the plan small for many columns.
        matrix = F.from_json(
            F.lit(json.dumps(inv)), T.ArrayType(T.ArrayType(T.DoubleType(), False), False)
        )

        def dot(u: Column, v: Column) -> Column:
            return F.aggregate(F.zip_with(u, v, lambda a, b: a * b), F.lit(0.0), operator.add)

        d2 = dot(F.transform(matrix, lambda row: dot(row, z)), z)
        # Rounding can make d2 a tiny negative; greatest() would also turn null into 0.
        return F.sqrt(F.when(d2 < F.lit(0.0), F.lit(0.0)).otherwise(d2))

    def _transform(self, dataset: DataFrame) -> DataFrame:
        cols = self.getInputCols()
        _check_input(dataset, cols, type(self).__name__)
        _check_positive(self, "threshold")
        t = self.getThreshold()
        d = self._distance()
        flag = F.coalesce(d > F.lit(t), F.lit(False))
        reason = f"{self.method}:{','.join(cols)}"
        return dataset.withColumns(
            {
                self.getOutputCol(): flag,
                self.getScoreCol(): d / F.lit(t),
                self.getReasonsCol(): F.when(flag, F.array(F.lit(reason))).otherwise(
                    F.array().cast("array<string>")
                ),
            }
        )

    def violation_details(self) -> list[Column]:
        t = self.getThreshold()
        d = self._distance()
        return [
            F.when(
                d > F.lit(t),
                F.concat(
                    F.lit(f"{self.method}: {','.join(self.getInputCols())} distance "),
                    d.cast("string"),
                    F.lit(f" above threshold {t!r}"),
                ),
            )
        ]


class MahalanobisOutlierDetector(
    Estimator[MahalanobisOutlierModel],
    _MahalanobisParams,
    _OutputSetters,
    DefaultParamsReadable,
    DefaultParamsWritable,
):
    """Mahalanobis distance on standardised columns against ``threshold`` (default 3.5).

    Fitted on the rows where all input columns have values: one aggregation (means and
    standard deviations) and ``Correlation.corr`` of the standardised columns; the ``k x k``
    correlation matrix is inverted on the driver.

    Raises (on fit):
        OutlierFitError: fewer than 2 rows have values in every input column.
    """

    @keyword_only
    def __init__(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        scoreCol: str | None = None,
        reasonsCol: str | None = None,
        threshold: float = 3.5,
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCol: str | None = None,
        scoreCol: str | None = None,
        reasonsCol: str | None = None,
        threshold: float = 3.5,
    ) -> MahalanobisOutlierDetector:
        """Sets params for this detector."""
        return self._set(**self._input_kwargs)

    def setThreshold(self, value: float) -> MahalanobisOutlierDetector:
        """Sets the value of :py:attr:`threshold`."""
        return self._set(threshold=value)

    def _fit(self, dataset: DataFrame) -> MahalanobisOutlierModel:
        """Means and standard deviations (one ``agg``), then the correlation matrix of the
        standardised columns with ``pyspark.ml.stat.Correlation`` (``RowMatrix``: a fixed
        number of jobs, the ``k x k`` sums done in native code), inverted on the driver.

        Raises:
            ValueError: an input column is missing or not numeric, or threshold <= 0.
            OutlierFitError: fewer than 2 rows have values in all input columns.
        """
        cols = self.getInputCols() if self.isDefined(self.inputCols) else []
        _check_input(dataset, cols, type(self).__name__)
        _check_positive(self, "threshold")
        k = len(cols)
        values = {f"__v{i}": _value(c) for i, c in enumerate(cols)}
        complete = dataset.select(*[v.alias(n) for n, v in values.items()]).where(
            functools.reduce(operator.and_, [F.col(n).isNotNull() for n in values])
        )
        aggs = [F.count(F.lit(1)).alias("n")]
        aggs += [F.avg(n).alias(f"m{i}") for i, n in enumerate(values)]
        aggs += [F.stddev_samp(n).alias(f"s{i}") for i, n in enumerate(values)]
        row = complete.agg(*aggs).first()
        if row["n"] < 2:
            raise OutlierFitError(
                f"{type(self).__name__}: {row['n']} row(s) have values in all of {cols}; "
                f"a covariance needs at least 2"
            )
        means = [float(row[f"m{i}"]) for i in range(k)]
        stds = [_finite_or_zero(row[f"s{i}"]) for i in range(k)]
        active = [i for i in range(k) if stds[i] > 0]
        inv = np.zeros((k, k))
        if active:
            # Standardised input: the correlation is the covariance of z, and centred values
            # keep RowMatrix's sums numerically stable whatever the columns' offsets.
            z = complete.select(
                *[
                    ((F.col(f"__v{i}") - F.lit(means[i])) / F.lit(stds[i])).alias(f"__z{i}")
                    for i in active
                ]
            )
            assembled = VectorAssembler(
                inputCols=[f"__z{i}" for i in active], outputCol="__z"
            ).transform(z)
            corr = Correlation.corr(assembled, "__z").first()[0].toArray()
            inv[np.ix_(active, active)] = np.linalg.pinv(corr, hermitian=True)
        model = MahalanobisOutlierModel(
            means=means, stds=stds, invCorrelation=[[float(v) for v in r] for r in inv]
        )
        return self._copyValues(model)


DETECTORS: dict[str, type[Estimator]] = {
    "iqr": IQROutlierDetector,
    "mad": MADOutlierDetector,
    "zscore": ZScoreOutlierDetector,
    "mahalanobis": MahalanobisOutlierDetector,
}


# --------------------------------------------------------------------------- combining detectors


def build_outlier_pipeline(
    detectors: Sequence[DetectorConfig], default_columns: Sequence[str]
) -> Pipeline:
    """A Pipeline with one detector stage per config entry.

    Stage ``i`` writes ``__outlier_<i>_flag``, ``__outlier_<i>_score`` and
    ``__outlier_<i>_reasons``; :func:`with_outlier_flags` combines and removes them.

    Args:
        detectors: the ``outliers.detectors`` entries.
        default_columns: columns of a detector whose ``columns`` is not set (the schema's
            numeric features).

    Raises:
        ValueError: a detector has no columns.
    """
    stages = []
    for i, det in enumerate(detectors):
        cols = list(det.columns if det.columns is not None else default_columns)
        if not cols:
            raise ValueError(
                f"outliers.detectors.{i}.columns: no columns to check (and the schema has no "
                f"numeric_feature columns); list the numeric columns"
            )
        est = DETECTORS[det.method](
            inputCols=cols,
            outputCol=f"__outlier_{i}_flag",
            scoreCol=f"__outlier_{i}_score",
            reasonsCol=f"__outlier_{i}_reasons",
        )
        if det.method == "iqr":
            est.setK(det.k)
        else:
            est.setThreshold(det.threshold)
        stages.append(est)
    return Pipeline(stages=stages)


def detector_models(model: PipelineModel) -> list[OutlierModel]:
    """The detector stages of a fitted outlier pipeline.

    Raises:
        ValueError: a stage is not an :class:`OutlierModel` or the pipeline is empty.
    """
    stages = list(model.stages)
    bad = [type(s).__name__ for s in stages if not isinstance(s, OutlierModel)]
    if bad or not stages:
        raise ValueError(
            f"not an outlier detector pipeline: stages {[type(s).__name__ for s in stages]}; "
            f"every stage must be a fitted ml_engine.outliers detector"
        )
    return stages


def _combined(models: Sequence[OutlierModel]) -> dict[str, Column]:
    reasons = F.array_distinct(F.concat(*[F.col(m.getReasonsCol()) for m in models]))
    return {
        IS_OUTLIER: F.size(reasons) > 0,
        OUTLIER_SCORE: _greatest([F.col(m.getScoreCol()) for m in models]).cast("double"),
        OUTLIER_REASONS: reasons,
    }


def with_outlier_flags(df: DataFrame, model: PipelineModel) -> DataFrame:
    """Adds ``is_outlier``, ``outlier_score`` and ``outlier_reasons`` (policy ``flag``).

    ``outlier_score`` is the maximum over the detectors of their normalised scores (> 1 means
    outlier; null when no detector could score the row); ``outlier_reasons`` lists
    ``"<method>:<column>"`` for every detector and column that fired, without duplicates.

    Args:
        df: rows to check; must hold every detector's input columns.
        model: a fitted pipeline of detectors (:func:`build_outlier_pipeline`).

    Raises:
        ValueError: the model is not a detector pipeline or a column is missing.
    """
    models = detector_models(model)
    combined = _combined(models)
    return model.transform(df).select(
        *[_col(c) for c in _data_columns(df)], *[v.alias(k) for k, v in combined.items()]
    )


def _data_columns(df: DataFrame) -> list[str]:
    """``df``'s columns without the ones this module adds."""
    return [c for c in df.columns if c not in OUTLIER_COLUMNS]


def _cap_bounds(models: Sequence[OutlierModel]) -> dict[str, tuple[float, float]]:
    """Per column the tightest fences of all univariate detectors that check it."""
    bounds: dict[str, tuple[float, float]] = {}
    for m in models:
        for c, (lo, hi) in m.fences().items():
            if c in bounds:
                lo, hi = max(lo, bounds[c][0]), min(hi, bounds[c][1])
            bounds[c] = (lo, hi)
    return bounds


_INTEGRAL_RANGES = {
    T.ByteType: (-(2**7), 2**7 - 1),
    T.ShortType: (-(2**15), 2**15 - 1),
    T.IntegerType: (-(2**31), 2**31 - 1),
    T.LongType: (-(2**63), 2**63 - 1),
}


def _fence_literal(dtype: T.DataType, fence: float, lower: bool) -> Column:
    """A fence as a literal of the column's type, rounded towards the inside of the fences
    (integral and decimal columns: the capped value is not an outlier itself) and clamped to
    the type's range (ANSI casts fail on overflow; a value beyond the range cannot exist)."""
    if isinstance(dtype, T.IntegralType):
        low, high = _INTEGRAL_RANGES[type(dtype)]
        v = math.ceil(fence) if lower else math.floor(fence)
        return F.lit(min(max(v, low), high)).cast(dtype)
    if isinstance(dtype, T.DecimalType):
        step = Decimal(1).scaleb(-dtype.scale)
        limit = Decimal(10) ** (dtype.precision - dtype.scale) - step
        if abs(fence) >= float(limit):
            d = limit.copy_sign(Decimal(fence))
        else:
            d = Decimal(fence).quantize(step, rounding=ROUND_CEILING if lower else ROUND_FLOOR)
        return F.lit(d).cast(dtype)
    return F.lit(fence).cast(dtype)


def _capped(name: str, dtype: T.DataType, lo: float, hi: float) -> tuple[Column, Column]:
    """``(capped value, changed?)`` of one column; the value keeps the column's type."""
    x = _value(name)
    lo_v, hi_v = _fence_literal(dtype, lo, lower=True), _fence_literal(dtype, hi, lower=False)
    below, above = F.coalesce(x < F.lit(lo), F.lit(False)), F.coalesce(x > F.lit(hi), F.lit(False))
    value = F.when(below, lo_v).when(above, hi_v).otherwise(_col(name))
    return value, below | above


def with_capped_values(df: DataFrame, model: PipelineModel) -> DataFrame:
    """Winsorises outliers to the fitted fences (policy ``cap``) and flags the rows.

    Every value outside the fences of a univariate detector is replaced by the fence (the
    tightest one when several detectors check the column): IQR ``Q1 - k*IQR``/``Q3 + k*IQR``,
    MAD ``median -/+ threshold * MAD / 0.6745``, z-score ``mean -/+ threshold * std``. The
    Mahalanobis detector has no per-column fence: its rows are flagged, not changed. Columns
    keep their types (integral and decimal columns get the nearest value of their type inside
    the fences).

    Adds ``is_outlier``, ``outlier_score``, ``outlier_reasons`` (computed on the original
    values, as in :func:`with_outlier_flags`) and ``outlier_original``: a
    ``array<struct<column: string, value: string>>`` with the original value (as text) of
    each value that was capped, in column order (null
    when none was), so a rerun can restore its input (:func:`restore_outlier_input`).

    Raises:
        ValueError: the model is not a detector pipeline or a column is missing.
    """
    models = detector_models(model)
    types = {f.name: f.dataType for f in df.schema.fields}
    caps = {c: _capped(c, types[c], lo, hi) for c, (lo, hi) in _cap_bounds(models).items()}
    originals = [
        F.when(changed, F.struct(F.lit(c).alias("column"), _col(c).cast("string").alias("value")))
        for c, (_, changed) in caps.items()
    ]
    if originals:
        entries = F.filter(F.array(*originals), lambda e: e.isNotNull())
        original = F.when(F.size(entries) > 0, entries)
    else:
        original = F.lit(None)
    original = original.cast(OUTLIER_FIELDS[-1].dataType)
    scored = model.transform(df)
    out = [caps[c][0].alias(c) if c in caps else _col(c) for c in _data_columns(df)]
    combined = _combined(models)
    return scored.select(
        *out, *[v.alias(k) for k, v in combined.items()], original.alias(OUTLIER_ORIGINAL)
    )


def outlier_reason(models: Sequence[OutlierModel]) -> Column:
    """A row's quarantine reason: every violation (method, column, value, fence), ``; ``-joined.

    Example: ``"iqr: amount=900.0 above upper fence 27.5; mad: amount=900.0 above upper fence
    31.2"``. Null when the row is not an outlier.
    """
    details = [d for m in models for d in m.violation_details()]
    if not details:
        return F.lit(None).cast("string")
    joined = F.concat_ws("; ", *details)
    return F.when(joined != F.lit(""), joined)


def split_outliers(
    df: DataFrame, model: PipelineModel, record_key: str | None = None
) -> tuple[DataFrame, DataFrame]:
    """Policy ``drop``: the rows that are not outliers, and the outliers as quarantine rows.

    Both come from :func:`with_outlier_flags`'s output, so ``kept`` carries the flag columns
    (``is_outlier`` false, the score, no reasons).

    Args:
        df: rows to check; carries ``batch_id``, ``source_file``, ``ingested_at``.
        model: a fitted pipeline of detectors.
        record_key: column identifying a row (record id or entity key), if any.

    Returns:
        ``(kept, quarantined)``: ``kept`` has the columns of :func:`with_outlier_flags`;
        ``quarantined`` has ``QUARANTINE_COLUMNS``, stage ``outliers``, ``raw_record`` the
        JSON of the row's data columns (microsecond timestamps) and ``reason`` from
        :func:`outlier_reason`.

    Raises:
        ValueError: the model is not a detector pipeline or a column is missing.
    """
    models = detector_models(model)
    flagged = with_outlier_flags(df, model)
    kept = flagged.where(~F.col(IS_OUTLIER))
    data_cols = [c for c in _data_columns(df) if c not in METADATA_COLUMNS]
    outliers = flagged.where(F.col(IS_OUTLIER))
    quarantined = quarantine_rows(
        outliers,
        reason=outlier_reason(models),
        stage=STAGE,
        record_key=_col(record_key) if record_key else None,
        raw_record=F.to_json(F.struct(*[_col(c) for c in data_cols]), _JSON_OPTIONS),
    )
    return kept, quarantined


def restore_outlier_input(silver: DataFrame, quarantined: DataFrame | None = None) -> DataFrame:
    """One batch's silver rows as they were before ``detect_outliers`` last changed them.

    This is what makes a rerun idempotent whatever policy ran before: it re-detects on the
    same input instead of on its own output. (Refitting on capped values would move the
    z-score fences, and refitting after a drop would find new outliers among the rest.)

    * ``outlier_original`` (policy ``cap``) puts the original values back;
    * the batch's quarantine rows of stage ``outliers`` (policy ``drop``) come back unless a
      row with the same data is already in silver (the clean job re-ran since, say);
    * the columns the job adds (``is_outlier``, ``outlier_score``, ``outlier_reasons``,
      ``outlier_original``) are removed.

    Args:
        silver: the batch's silver rows.
        quarantined: the batch's quarantine rows of stage ``outliers`` (None: no table).

    Returns:
        ``silver``'s columns without the outlier columns, in the same order.
    """
    types = {f.name: f.dataType for f in silver.schema.fields}
    keep = [c for c in silver.columns if c not in OUTLIER_COLUMNS]
    if OUTLIER_ORIGINAL in types:
        original = _col(OUTLIER_ORIGINAL)

        def saved(c: str) -> Column:
            match = F.filter(original, lambda e: e["column"] == F.lit(c))
            # Only capped rows have originals: the lambda runs for those alone.
            saved = F.try_element_at(match, F.lit(1))["value"].cast(types[c])
            return F.when(original.isNotNull(), saved)

        restored = [
            F.coalesce(saved(c), _col(c)).alias(c)
            if isinstance(types[c], T.NumericType)
            else _col(c)
            for c in keep
        ]
        base = silver.select(*restored)
    else:
        base = silver.select(*[_col(c) for c in keep])
    if quarantined is None:
        return base
    data_cols = [c for c in keep if c not in METADATA_COLUMNS]
    data_schema = T.StructType([f for f in base.schema.fields if f.name in data_cols])
    parsed = quarantined.select(
        F.from_json("raw_record", data_schema, _JSON_OPTIONS).alias("__row"),
        *[F.col(c) for c in METADATA_COLUMNS],
    )
    back = parsed.select(
        *[
            F.col(f"__row.`{c}`").alias(c) if c in data_cols else F.col(c).cast(types[c]).alias(c)
            for c in keep
        ]
    )
    q, s = back.alias("q"), base.alias("s")
    same = functools.reduce(
        operator.and_,
        [F.col(f"q.`{c}`").eqNullSafe(F.col(f"s.`{c}`")) for c in data_cols],
    )
    missing = q.join(s, on=same, how="left_anti")
    return base.unionByName(missing)


# --------------------------------------------------------------------------- statistics

OUTLIER_STATS_SCHEMA = T.StructType(
    [
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("detector", T.IntegerType(), False),
        T.StructField("method", T.StringType(), False),
        T.StructField("column", T.StringType(), False),
        T.StructField("lower_fence", T.DoubleType(), True),
        T.StructField("upper_fence", T.DoubleType(), True),
        T.StructField("q1", T.DoubleType(), True),
        T.StructField("q3", T.DoubleType(), True),
        T.StructField("median", T.DoubleType(), True),
        T.StructField("mad", T.DoubleType(), True),
        T.StructField("mean", T.DoubleType(), True),
        T.StructField("std", T.DoubleType(), True),
        T.StructField("k", T.DoubleType(), True),
        T.StructField("threshold", T.DoubleType(), True),
        T.StructField("rows_scored", T.LongType(), False),
        T.StructField("rows_flagged", T.LongType(), False),
        T.StructField("policy", T.StringType(), False),
    ]
)


def _learned(m: OutlierModel) -> list[dict[str, Any]]:
    """Per checked column (Mahalanobis: one entry) the statistics of ``OUTLIER_STATS_SCHEMA``."""
    cols = m.getInputCols()
    fences = m.fences()
    if isinstance(m, MahalanobisOutlierModel):
        return [{"column": ",".join(cols), "threshold": m.getThreshold()}]
    if isinstance(m, IQROutlierModel):
        per = [
            {"q1": a, "q3": b, "k": m.getK()} for a, b in zip(m.getQ1s(), m.getQ3s(), strict=True)
        ]
    elif isinstance(m, MADOutlierModel):
        per = [
            {"median": a, "mad": b, "threshold": m.getThreshold()}
            for a, b in zip(m.getMedians(), m.getMads(), strict=True)
        ]
    elif isinstance(m, ZScoreOutlierModel):
        per = [
            {"mean": a, "std": b, "threshold": m.getThreshold()}
            for a, b in zip(m.getMeans(), m.getStds(), strict=True)
        ]
    else:
        per = [{} for _ in cols]
    out = []
    for c, stats in zip(cols, per, strict=True):
        lo, hi = fences.get(c, (None, None))
        out.append({"column": c, "lower_fence": lo, "upper_fence": hi, **stats})
    return out


def countable_from_flags(models: Sequence[OutlierModel]) -> bool:
    """Whether the combined ``outlier_reasons`` of written rows give every detector's counts:
    not with a Mahalanobis detector (its counts need its own output columns), nor with two
    detectors of one method on one column (the combined column merges their reasons)."""
    checks = [(m.method, c) for m in models for c in m.getInputCols()]
    mahalanobis = any(isinstance(m, MahalanobisOutlierModel) for m in models)
    return not mahalanobis and len(set(checks)) == len(checks)


def outlier_statistics(
    df: DataFrame, model: PipelineModel, batch_id: str, policy: str, flagged: bool = False
) -> tuple[list[dict[str, Any]], int, int]:
    """Per detector and column: fences, learned statistics and counts, in one Spark job
    (two with ``flagged``: the counts, then the reasons counted by a grouped aggregation).

    Args:
        df: the rows checked (before any policy is applied), or, with ``flagged``, rows that
            already carry ``is_outlier`` and ``outlier_reasons`` (:func:`with_outlier_flags`
            or :func:`with_capped_values` output, e.g. the silver rows the job wrote): then
            the detectors are not evaluated again and only the columns counted are read.
        model: the fitted detector pipeline.
        batch_id: written into every row.
        policy: written into every row.
        flagged: see ``df``; only when :func:`countable_from_flags` holds.

    Returns:
        ``(rows, total rows, outlier rows)``; ``rows`` are dicts with the fields of
        ``OUTLIER_STATS_SCHEMA``: ``rows_scored`` counts the rows with a value (all values,
        for Mahalanobis), ``rows_flagged`` the rows on which that detector fired for that
        column.

    Raises:
        ValueError: the model is not a detector pipeline, a column is missing, or
            ``flagged`` rows cannot give the model's counts.
    """
    models = detector_models(model)
    if flagged and not countable_from_flags(models):
        raise ValueError(
            "outlier_statistics: flagged rows cannot give the counts of Mahalanobis detectors "
            "or of two detectors of one method on one column"
        )
    scored = df if flagged else model.transform(df).withColumns(_combined(models))
    aggs = [F.count(F.lit(1)).alias("rows"), F.count_if(F.col(IS_OUTLIER)).alias("outliers")]
    entries = []
    for i, m in enumerate(models):
        for j, learned in enumerate(_learned(m)):
            if isinstance(m, MahalanobisOutlierModel):
                scored_n = F.count(F.col(m.getScoreCol()))
                flagged_n = F.count_if(F.col(m.getOutputCol()))
            else:
                c = learned["column"]
                scored_n = F.count(_value(c))
                flagged_n = (
                    None
                    if flagged
                    else F.count_if(
                        F.array_contains(F.col(m.getReasonsCol()), F.lit(f"{m.method}:{c}"))
                    )
                )
            aggs.append(scored_n.alias(f"s{i}_{j}"))
            if flagged_n is not None:
                aggs.append(flagged_n.alias(f"f{i}_{j}"))
            entries.append((i, j, m.method, learned))
    row = scored.agg(*aggs).first().asDict()
    if flagged:
        # Reasons are few (outliers are rare): count them exploded and grouped, one small
        # job, rather than test every row's array once per column (measured 4x slower).
        fired = scored.select(F.explode(OUTLIER_REASONS).alias("reason")).groupBy("reason")
        counts = {r["reason"]: r["count"] for r in fired.count().collect()}  # <= one per check
        for i, j, method, learned in entries:
            row[f"f{i}_{j}"] = counts.get(f"{method}:{learned['column']}", 0)
    fields = [f.name for f in OUTLIER_STATS_SCHEMA.fields]
    rows = []
    for i, j, method, learned in entries:
        rec = dict.fromkeys(fields)
        rec.update(learned)
        rec.update(
            batch_id=batch_id,
            detector=i,
            method=method,
            rows_scored=int(row[f"s{i}_{j}"]),
            rows_flagged=int(row[f"f{i}_{j}"]),
            policy=policy,
        )
        rows.append(
            {
                k: float(v) if isinstance(v, int) and k in _DOUBLE_FIELDS else v
                for k, v in rec.items()
            }
        )
    return rows, int(row["rows"]), int(row["outliers"])


_DOUBLE_FIELDS = {
    f.name for f in OUTLIER_STATS_SCHEMA.fields if isinstance(f.dataType, T.DoubleType)
}


# --------------------------------------------------------------------------- the job


def _read_text(spark: SparkSession, path: str) -> str | None:
    """The first line of a text directory written by Spark, None when it does not exist."""
    # Ask the file system first: a read of a missing path makes Spark log a stack trace.
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    if not hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(hpath):
        return None
    row = spark.read.text(path).first()
    return row[0] if row is not None else None


def load_outlier_model(spark: SparkSession, path: str) -> PipelineModel | None:
    """The detector pipeline saved at ``path``, or None when nothing is saved there.

    Raises:
        ValueError: what is saved there is not a detector pipeline.
    """
    if _read_text(spark, f"{path.rstrip('/')}/metadata") is None:
        return None
    model = PipelineModel.load(path)
    detector_models(model)
    return model


def _fit_params(pipeline: Pipeline, batch_id: str) -> dict[str, Any]:
    """What a fit depends on besides the data: the batch and the detectors' params."""
    params = [
        {"class": type(s).__name__, **{p.name: v for p, v in s.extractParamMap().items()}}
        for s in pipeline.getStages()
    ]
    return json.loads(json.dumps({"batch_id": batch_id, "stages": params}))


def _fit_record(data: DataFrame, pipeline: Pipeline, params: dict[str, Any]) -> dict[str, Any]:
    """What a fit depends on: ``params`` (:func:`_fit_params`) and a fingerprint of the
    detectors' input columns, as JSON values.

    One Spark job: row count and the sum of a 64-bit hash of each row's checked values.
    """
    cols = sorted({c for s in pipeline.getStages() for c in s.getInputCols()})
    row = data.agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.xxhash64(*[_col(c) for c in cols]).cast("decimal(20,0)")).alias("h"),
    ).first()
    return {**params, "rows": int(row["n"]), "hash": str(row["h"])}


def run_detect_outliers(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """``silver`` -> ``silver`` with outliers flagged, capped or dropped, + ``outlier_stats``.

    Steps, for batch ``cfg.effective_batch_id()``:

    1. read the batch's silver rows and restore them as they were before this job last ran
       (:func:`restore_outlier_input`), so a rerun re-detects on the same input and writes
       exactly the same silver, whatever policy ran before;
    2. the detector (see :func:`_fitted_model` for ``outliers.refit``): fitted on those rows
       and saved as a ``PipelineModel`` (overwrite) at ``outliers.model_path`` (default
       ``<storage root>/models/outliers``) with a fit record (detector params, batch, row
       count and a hash of the checked values), or the saved one reused; a rerun whose fit
       record matches reuses the saved model instead of fitting again (the same fences, at
       the cost of the fingerprint pass instead of a fit);
    3. apply ``outliers.policy``: ``flag`` sets ``is_outlier``, ``outlier_score``,
       ``outlier_reasons`` (:func:`with_outlier_flags`); ``cap`` winsorises to the fences,
       sets the same columns and ``outlier_original`` (the raw values, kept so the rerun of
       step 1 can restore them rather than fit on capped values, which would shrink the
       z-score fences and cap again; see :func:`with_capped_values`); ``drop`` writes outlier
       rows to ``quarantine`` (stage ``outliers``; the reason names method, column, value and
       fence) and removes them, the kept rows flagged as with ``flag``.
       ``outlier_original`` is null except with ``cap``. Tables never change schema here,
       so the silver table must have the columns of :data:`OUTLIER_FIELDS` the policy sets
       (``flag``: the first three, ``cap``: all; ``drop`` writes those silver has);
    4. write the batch's quarantine rows of stage ``outliers`` (empty unless ``drop``; only
       when the table exists or rows are quarantined), then silver (``replace_where`` on the
       batch), then one ``outlier_stats`` row per detector and column (fences, statistics,
       counts; replaces the batch's rows).

    Spark jobs: a fixed number per detector (fit), plus the fingerprint, statistics and
    writes; none of them grows with the number of columns.

    Raises:
        JobError: silver is missing, lacks a detector's column or the outlier columns, the
            batch has no values to fit on, or ``refit: never`` and no model is saved at the
            model path.
    """
    oc = cfg.outliers
    batch = cfg.effective_batch_id()
    silver_path = cfg.storage.table_path("silver")
    quarantine_path = cfg.storage.table_path("quarantine")
    model_path = oc.model_path or cfg.storage.path("models", "outliers")

    if not tables.exists(silver_path):
        raise JobError(
            f"detect_outliers: no silver table at {silver_path}; run the clean job for batch "
            f"'{batch}' first"
        )
    describe(spark, f"detect_outliers: read silver batch {batch}")
    silver_table = tables.read(silver_path)
    lacking = [c for c in _POLICY_COLUMNS[oc.policy] if c not in silver_table.columns]
    if lacking:
        raise JobError(
            f"detect_outliers: the silver table {silver_path} has no column(s) {lacking}, "
            f"which outliers.policy '{oc.policy}' writes, and Delta tables here never change "
            f"their schema. Create silver with ml_engine.outliers.OUTLIER_FIELDS as nullable "
            f"columns (null until this job runs), or use outliers.policy: drop"
        )
    silver = tables.read_batch(silver_path, batch)
    quarantined = None
    if tables.exists(quarantine_path):
        quarantined = tables.read(quarantine_path).where(
            (F.col("stage") == F.lit(STAGE)) & (F.col("batch_id") == F.lit(batch))
        )
    # The fits and the fingerprint read only the checked columns, the write all of them:
    # straight from silver's Parquet files, which costs less than building a cache of the
    # whole batch first (measured ~10 s of 46 s at 1M x 68 columns). Rows brought back from
    # quarantine need a join: then the restored batch is cached once for all passes.
    back = None if quarantined is None or quarantined.isEmpty() else quarantined
    data = restore_outlier_input(silver, back)
    if back is not None:
        data = data.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _detect_and_write(
            spark, cfg, tables, data, silver_table, quarantined, batch, model_path
        )
    finally:
        data.unpersist()


def _detect_and_write(
    spark: SparkSession,
    cfg: Config,
    tables: DeltaTables,
    data: DataFrame,
    silver_table: DataFrame,
    quarantined: DataFrame | None,
    batch: str,
    model_path: str,
) -> JobResult:
    """The body of :func:`run_detect_outliers` once the batch's input is cached."""
    oc = cfg.outliers
    silver_path, quarantine_path, stats_path = (
        cfg.storage.table_path(n) for n in ("silver", "quarantine", "outlier_stats")
    )
    in_batch = f"batch_id = {sql_literal(batch)}"
    model, how = _fitted_model(spark, cfg, data, batch, model_path, silver_path)
    models = detector_models(model)
    # With flag and cap every checked row is written to silver with its reasons, so the
    # counts are read back from what was written (a narrow read) instead of evaluating
    # every detector on every row a second time. drop and Mahalanobis count beforehand.
    from_output = oc.policy != "drop" and countable_from_flags(models)
    if not from_output:
        describe(spark, f"detect_outliers: outlier statistics of batch {batch}")
        stats, n_rows, n_outliers = outlier_statistics(data, model, batch, oc.policy)

    quarantine_out = None
    if oc.policy == "flag":
        silver_out = with_outlier_flags(data, model)
    elif oc.policy == "cap":
        silver_out = with_capped_values(data, model)
    else:
        schema = cfg.table_schema
        key = schema.record_id or schema.key
        silver_out, quarantine_out = split_outliers(
            data, model, record_key=key if key in data.columns else None
        )
    if OUTLIER_ORIGINAL not in silver_out.columns:
        silver_out = silver_out.withColumn(
            OUTLIER_ORIGINAL, F.lit(None).cast(OUTLIER_FIELDS[-1].dataType)
        )
    # The outlier columns the table lacks (allowed for drop) are not written.
    silver_out = silver_out.select(*[_col(c) for c in silver_table.columns])
    if quarantine_out is None and quarantined is not None:
        # Clears this stage's rows of an earlier run with policy drop.
        quarantine_out = spark.createDataFrame([], quarantined.select(*QUARANTINE_COLUMNS).schema)

    outputs = {"silver": silver_path, "outlier_stats": stats_path, "outlier_model": model_path}
    if quarantine_out is not None:
        describe(spark, f"detect_outliers: write quarantine rows of batch {batch}")
        tables.overwrite(
            quarantine_out,
            quarantine_path,
            partition_by=["batch_id"],
            replace_where=replace_predicate(STAGE, batch),
        )
        outputs["quarantine"] = quarantine_path
    describe(spark, f"detect_outliers: write silver batch {batch} ({oc.policy})")
    tables.overwrite(silver_out, silver_path, partition_by=["batch_id"], replace_where=in_batch)
    if from_output:
        describe(spark, f"detect_outliers: outlier statistics of batch {batch}")
        written = tables.read(silver_path).where(F.col("batch_id") == F.lit(batch))
        stats, n_rows, n_outliers = outlier_statistics(
            written, model, batch, oc.policy, flagged=True
        )
    describe(spark, f"detect_outliers: write outlier_stats of batch {batch}")
    tables.overwrite(
        spark.createDataFrame(stats, OUTLIER_STATS_SCHEMA),
        stats_path,
        partition_by=["batch_id"],
        replace_where=in_batch,
    )
    return JobResult(
        job="detect_outliers",
        outputs=outputs,
        metrics={
            "batch_id": batch,
            "policy": oc.policy,
            "model": how,
            "detectors": len(models),
            "rows": n_rows,
            "outliers": n_outliers,
            "rows_out": n_rows - n_outliers if oc.policy == "drop" else n_rows,
        },
    )


def _check_columns(
    data: DataFrame, models_or_stages: Sequence[Params], silver_path: str, where: Sequence[str]
) -> None:
    """JobError unless every stage's input columns are numeric columns of ``data``."""
    types = {f.name: f.dataType for f in data.schema.fields}
    for stage, key in zip(models_or_stages, where, strict=True):
        for c in stage.getInputCols():
            if c not in types:
                raise JobError(f"{key}: column '{c}' is not in the silver table {silver_path}")
            if not isinstance(types[c], T.NumericType):
                raise JobError(
                    f"{key}: column '{c}' of the silver table {silver_path} has type "
                    f"{types[c].simpleString()}; outlier detectors need numeric columns"
                )


def _fitted_model(
    spark: SparkSession,
    cfg: Config,
    data: DataFrame,
    batch: str,
    model_path: str,
    silver_path: str,
) -> tuple[PipelineModel, str]:
    """The detector pipeline to apply and how it was obtained, in words for the job's output.

    ``outliers.refit``: ``auto`` reuses the saved detector when its detectors are the
    configured ones (fitted on an earlier batch, normally the reference one) and fits on this
    batch otherwise; ``always`` fits on this batch (unless the same detectors were already
    fitted on exactly these rows); ``never`` applies the saved detector or fails.
    """
    oc = cfg.outliers
    record_path = f"{model_path.rstrip('/')}/{_FIT_RECORD}"
    saved = _read_text(spark, record_path)
    saved = None if saved is None else json.loads(saved)
    try:
        pipeline = build_outlier_pipeline(oc.detectors, cfg.table_schema.numeric_features)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    params = _fit_params(pipeline, batch)
    same_detectors = saved is not None and saved.get("stages") == params["stages"]
    if oc.refit == "never" or (oc.refit == "auto" and same_detectors):
        describe(spark, f"detect_outliers: load outlier model {model_path}")
        try:
            model = load_outlier_model(spark, model_path)
        except ValueError as exc:
            raise JobError(f"outliers.model_path: {model_path}: {exc}") from None
        if model is not None:
            _check_columns(
                data,
                detector_models(model),
                silver_path,
                [f"the outlier model saved at {model_path}"] * len(model.stages),
            )
            fitted_on = (saved or {}).get("batch_id")
            return model, f"reused, fitted on batch {fitted_on}" if fitted_on else "reused"
        if oc.refit == "never":
            raise JobError(
                f"outliers.refit is never but no outlier model is saved at {model_path}; "
                f"run detect_outliers on the reference batch first (outliers.refit: auto or "
                f"always), or set outliers.model_path"
            )
    _check_columns(
        data,
        pipeline.getStages(),
        silver_path,
        [f"outliers.detectors.{i}.columns" for i in range(len(oc.detectors))],
    )
    record = None
    if saved is not None and {k: saved.get(k) for k in params} == params:
        # The same detectors were fitted on this batch before: reuse them if the data is
        # unchanged. (Only then is the fingerprint worth a pass over the data.)
        describe(spark, f"detect_outliers: fingerprint of batch {batch}")
        record = _fit_record(data, pipeline, params)
        if saved == record:
            model = load_outlier_model(spark, model_path)
            if model is not None:
                return model, f"reused, fitted on batch {batch}"
    describe(spark, f"detect_outliers: fit {len(oc.detectors)} detector(s) on batch {batch}")
    try:
        model = pipeline.fit(data)
    except OutlierFitError as exc:
        raise JobError(
            f"detect_outliers: cannot fit on silver batch '{batch}' ({silver_path}): {exc}"
        ) from None
    if record is None:
        describe(spark, f"detect_outliers: fingerprint of batch {batch}")
        record = _fit_record(data, pipeline, params)
    describe(spark, f"detect_outliers: save outlier model to {model_path}")
    model.write().overwrite().save(model_path)
    spark.createDataFrame([(json.dumps(record),)], "value string").coalesce(1).write.mode(
        "overwrite"
    ).text(record_path)
    changed = " (the saved detector had other settings)" if saved and not same_detectors else ""
    return model, f"fitted on batch {batch}{changed}"
