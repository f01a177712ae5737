"""Z-score: :class:`ZScoreOutlierDetector` -> :class:`ZScoreOutlierModel`.

``(x - mean) / std`` (sample standard deviation, ``ddof = 1``) against ``threshold``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from ml_engine.outliers.base import (
    _check_positive,
    _finite_or_zero,
    _no_values,
    _OutlierParams,
    _OutputSetters,
    _SummaryFit,
    _ThresholdParams,
    _UnivariateOutlierModel,
    _value,
)


class _ZScoreParams(_OutlierParams, _ThresholdParams):
    pass


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

    def _column_statistics(self) -> list[dict[str, Any]]:
        return [
            {"mean": a, "std": b, "threshold": self.getThreshold()}
            for a, b in zip(self.getMeans(), self.getStds(), strict=True)
        ]


class ZScoreOutlierDetector(
    _SummaryFit,
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

    def summary_aggregates(self, dataset: DataFrame) -> list[Column]:
        """Value count, mean and sample standard deviation of every input column."""
        cols = self._checked_input(dataset, "threshold")
        return [a(_value(c)) for c in cols for a in (F.count, F.avg, F.stddev_samp)]

    def fit_from_summary(self, dataset: DataFrame, summary: Sequence[Any]) -> ZScoreOutlierModel:
        """The model from the summary alone: no further pass over the data."""
        cols = self.getInputCols()
        counts, means, stds = summary[0::3], summary[1::3], summary[2::3]
        _no_values(type(self).__name__, cols, counts)
        model = ZScoreOutlierModel(
            means=[float(m) for m in means], stds=[_finite_or_zero(s) for s in stds]
        )
        return self._copyValues(model)
