"""Z-score: :class:`ZScoreOutlierDetector` -> :class:`ZScoreOutlierModel`.

``(x - mean) / std`` (sample standard deviation, ``ddof = 1``) against ``threshold``.
"""

from __future__ import annotations

from typing import Any

from pyspark import keyword_only
from pyspark.ml import Estimator
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_engine.outliers.base import (
    _check_input,
    _check_positive,
    _finite_or_zero,
    _no_values,
    _OutlierParams,
    _OutputSetters,
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
