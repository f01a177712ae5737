"""What every outlier detector shares: params, the fitted-model base classes, helpers, constants.

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
  ``|x - median|``), Mahalanobis one ``agg`` plus ``Correlation.corr``'s fixed few. The
  first of these (counts, moments) is a declarative aggregation, and :func:`fit_detectors`
  runs it for all of a job's detectors together (:class:`_SummaryFit`). Quantiles
  come from :mod:`ml_engine.quantiles`: the exact quantile (the value at rank ``ceil(p * n)``,
  numpy's ``method="inverted_cdf"``) of every value while a column has at most ``sampleRows``
  values, otherwise of a sample of about ``sampleRows`` rows chosen by a hash of their values. They
  are approximate on large data but never random: fitting twice on the same rows gives the
  same fences, locally and on a cluster.
* Learned state lives in JSON-serialisable Params (lists of floats, the inverse correlation
  as a nested list), so ``save``/``load`` work with ``DefaultParamsWritable``/``Readable``,
  alone or inside a ``PipelineModel``. Each model also reports it as
  :meth:`OutlierModel.learned_rows`, the rows of ``outlier_stats``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pyspark.ml import Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCols, HasOutputCol
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.quality.quarantine import no_reasons, reasons
from ml_engine.quantiles import SAMPLE_ROWS
from ml_engine.tables.base import quote_name

# 1 / Phi^-1(0.75): makes the MAD of normal data comparable to its standard deviation.
ROBUST_Z_FACTOR = 0.6745

# Columns the fitted detector adds where rows are written (build_features' select): every
# policy sets them; null on rows no detector was applied to.
IS_OUTLIER = "is_outlier"
OUTLIER_SCORE = "outlier_score"
OUTLIER_REASONS = "outlier_reasons"
OUTLIER_FIELDS = (
    T.StructField(IS_OUTLIER, T.BooleanType(), True),
    T.StructField(OUTLIER_SCORE, T.DoubleType(), True),
    T.StructField(OUTLIER_REASONS, T.ArrayType(T.StringType(), True), True),
)
OUTLIER_COLUMNS = tuple(f.name for f in OUTLIER_FIELDS)

STAGE = "outliers"


class OutlierFitError(ValueError):
    """A detector cannot be fitted on the data; the message names the stage and column."""


# --------------------------------------------------------------------------- helpers


def _col(name: str) -> Column:
    """The column ``name``, quoted so names with dots or spaces work."""
    return F.col(quote_name(name))


def _value(name: str) -> Column:
    """A numeric column as double, with NaN as null (NaN is never scored).

    Written as SQL text: one call to the JVM where the same Column built function by function
    takes a dozen, and the detectors build it for every column several times.
    """
    return F.expr(f"nanvl(CAST({quote_name(name)} AS DOUBLE), CAST(NULL AS DOUBLE))")


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


def _finite_or_zero(value: Any) -> float:
    """A spread statistic, 0.0 when undefined (null, NaN): treated as degenerate."""
    return float(value) if value is not None and math.isfinite(float(value)) else 0.0


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


class _SummaryFit:
    """A detector's fit in two steps, so that one job can fit several detectors on the same
    data with ONE aggregation for all of their first steps (:func:`fit_detectors`):

    1. :meth:`summary_aggregates`: the declarative aggregates the fit starts from (value
       counts, moments), after checking the params and input columns;
    2. :meth:`fit_from_summary`: the model from their values, plus whatever passes over the
       data it needs after them (quantiles at the counted sizes, a correlation matrix).
    """

    def _checked_input(self, dataset: DataFrame, positive: str) -> list[str]:
        """The input columns, after checking that they are numeric columns of ``dataset`` and
        that the param ``positive`` is > 0."""
        cols = self.getInputCols() if self.isDefined(self.inputCols) else []
        _check_input(dataset, cols, type(self).__name__)
        _check_positive(self, positive)
        return cols

    def summary_aggregates(self, dataset: DataFrame) -> list[Column]:
        """Aggregates over ``dataset`` whose values :meth:`fit_from_summary` takes, in order.

        Raises:
            ValueError: an input column is missing or not numeric, or a param is invalid.
        """
        raise NotImplementedError

    def fit_from_summary(self, dataset: DataFrame, summary: Sequence[Any]) -> OutlierModel:
        """The fitted model, given the values of :meth:`summary_aggregates` over ``dataset``.

        Raises:
            OutlierFitError: the data has no values to fit on.
        """
        raise NotImplementedError

    def _fit(self, dataset: DataFrame) -> OutlierModel:
        models, _ = fit_detectors([self], dataset)
        return models[0]


def fit_detectors(
    detectors: Sequence[_SummaryFit], dataset: DataFrame, extra: Sequence[Column] = ()
) -> tuple[list[OutlierModel], list[Any]]:
    """Fits every detector on ``dataset``: one aggregation computes all their summaries and the
    ``extra`` aggregates the caller wants from the same pass, then each detector finishes its
    fit. The same models as fitting each detector alone, in fewer passes over the data.

    Returns:
        The fitted models, in the order of ``detectors``, and the values of ``extra``.
    """
    groups = [d.summary_aggregates(dataset) for d in detectors]
    aggs = [a for g in groups for a in g] + list(extra)
    row = dataset.agg(*[a.alias(f"__s{i}") for i, a in enumerate(aggs)]).first()
    values = list(row)
    models, start = [], 0
    for detector, group in zip(detectors, groups, strict=True):
        models.append(detector.fit_from_summary(dataset, values[start : start + len(group)]))
        start += len(group)
    return models, values[start:]


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

    def column_flags(self) -> list[Column] | None:
        """Per input column, in ``inputCols`` order, a boolean Column (never null) that is true
        on the rows where this detector fires for that column: a declarative expression over
        the column's value, so a job can count flags in any aggregation without applying the
        model. None for a detector that fires for its columns together (multivariate)."""
        return None

    def learned_rows(self) -> list[dict[str, Any]]:
        """Per checked column (multivariate: one entry) the statistics of
        ``OUTLIER_STATS_SCHEMA``: ``column``, the fences and what the model learned."""
        cols = self.getInputCols()
        fences = self.fences()
        out = []
        for c, stats in zip(cols, self._column_statistics(), strict=True):
            lo, hi = fences.get(c, (None, None))
            out.append({"column": c, "lower_fence": lo, "upper_fence": hi, **stats})
        return out

    def _column_statistics(self) -> list[dict[str, Any]]:
        """What the model learned, per input column, keyed by ``OUTLIER_STATS_SCHEMA`` field."""
        return [{} for _ in self.getInputCols()]


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

    def column_flags(self) -> list[Column]:
        out = []
        for c, a, b, s in self._checked():
            x = _value(c)
            fired = (x < F.lit(a - s)) | (x > F.lit(b + s))
            out.append(F.coalesce(fired, F.lit(False)) if s > 0 else F.lit(False))
        return out

    def _transform(self, dataset: DataFrame) -> DataFrame:
        checked = self._checked()
        _check_input(dataset, [c for c, *_ in checked], type(self).__name__)
        flags = self.column_flags()
        scores, fired_names = [], []
        for (c, a, b, s), flag in zip(checked, flags, strict=True):
            x = _value(c)
            # greatest() skips nulls: without the guard a null value would score 0.
            if s > 0:
                distance = F.greatest(F.lit(a) - x, x - F.lit(b), F.lit(0.0)) / F.lit(s)
            else:
                distance = F.lit(0.0)
            score = F.when(x.isNotNull(), distance)
            scores.append(score)
            fired_names.append(F.when(flag, F.lit(f"{self.method}:{c}")))
        fired = _greatest(flags)
        # The reasons array is built only on the rows that fired (few): building and
        # filtering an array of every column on every row is Spark's interpreted path, and
        # took 3x the rest of the row at 100 checked columns.
        return dataset.withColumns(
            {
                self.getOutputCol(): fired,
                self.getScoreCol(): _greatest(scores).cast("double"),
                self.getReasonsCol(): F.when(fired, reasons(fired_names)).otherwise(no_reasons()),
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
