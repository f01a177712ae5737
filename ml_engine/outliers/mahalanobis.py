"""The multivariate detector: :class:`MahalanobisOutlierDetector` -> :class:`MahalanobisOutlierModel`.

The columns are standardised (``z = (x - mean) / std``) and the distance is
``d = sqrt(z' R^-1 z)`` with ``R`` the correlation matrix (the covariance of ``z``), which is
the classic Mahalanobis distance ``sqrt((x - mean)' S^-1 (x - mean))``. Chosen over the
distance to k-means centres because it needs no second model, no choice of k and no
random initialisation. Means and standard deviations come from one aggregation, the
correlation matrix from ``pyspark.ml.stat.Correlation`` on the standardised columns
(``RowMatrix``: a fixed number of jobs whatever k, the ``k x k`` sums done in native code;
``k**2`` SQL ``covar_samp`` aggregates instead take minutes to compile for 40 columns), and
the small ``k x k`` inverse is taken on the driver with numpy (``pinv``, so perfectly
collinear columns do not fail). A row is an outlier when ``d > threshold``; for normal data
``d**2`` is chi-square with ``k`` degrees of freedom, so ``sqrt(scipy.stats.chi2.ppf(0.999, k))``
is a principled threshold.
"""

from __future__ import annotations

import functools
import json
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.stat import Correlation
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.outliers.base import (
    OutlierFitError,
    OutlierModel,
    _check_input,
    _check_positive,
    _finite_or_zero,
    _OutlierParams,
    _OutputSetters,
    _SummaryFit,
    _ThresholdParams,
    _value,
)
from ml_engine.quality.quarantine import no_reasons


class _MahalanobisParams(_OutlierParams, _ThresholdParams):
    pass


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

    def learned_rows(self) -> list[dict[str, Any]]:
        return [{"column": ",".join(self.getInputCols()), "threshold": self.getThreshold()}]

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
                self.getReasonsCol(): F.when(flag, F.array(F.lit(reason))).otherwise(no_reasons()),
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
    _SummaryFit,
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

    def _complete(self) -> Column:
        """True on the rows with a value in every input column: the rows it is fitted on."""
        return functools.reduce(operator.and_, [_value(c).isNotNull() for c in self.getInputCols()])

    def summary_aggregates(self, dataset: DataFrame) -> list[Column]:
        """Over the rows with values in every input column: their count, then each column's
        mean, then each column's sample standard deviation."""
        cols = self._checked_input(dataset, "threshold")
        complete = self._complete()
        values = [F.when(complete, _value(c)) for c in cols]
        return [F.count_if(complete), *map(F.avg, values), *map(F.stddev_samp, values)]

    def fit_from_summary(
        self, dataset: DataFrame, summary: Sequence[Any]
    ) -> MahalanobisOutlierModel:
        """The correlation matrix of the standardised columns with
        ``pyspark.ml.stat.Correlation`` (``RowMatrix``: a fixed number of jobs, the ``k x k``
        sums done in native code), inverted on the driver.

        Raises:
            OutlierFitError: fewer than 2 rows have values in all input columns.
        """
        cols = self.getInputCols()
        k = len(cols)
        n, means_, stds_ = summary[0], summary[1 : k + 1], summary[k + 1 :]
        if n < 2:
            raise OutlierFitError(
                f"{type(self).__name__}: {n} row(s) have values in all of {cols}; "
                f"a covariance needs at least 2"
            )
        means = [float(m) for m in means_]
        stds = [_finite_or_zero(s) for s in stds_]
        active = [i for i in range(k) if stds[i] > 0]
        inv = np.zeros((k, k))
        if active:
            # Standardised input: the correlation is the covariance of z, and centred values
            # keep RowMatrix's sums numerically stable whatever the columns' offsets.
            z = dataset.where(self._complete()).select(
                *[
                    ((_value(cols[i]) - F.lit(means[i])) / F.lit(stds[i])).alias(f"__z{i}")
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
