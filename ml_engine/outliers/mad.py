"""Robust z-score: :class:`MADOutlierDetector` -> :class:`MADOutlierModel`.

``0.6745 * (x - median) / MAD`` (``MAD`` = median of ``|x - median|``) against ``threshold``.
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
    ROBUST_Z_FACTOR,
    _check_positive,
    _no_values,
    _OutlierParams,
    _OutputSetters,
    _SampleParams,
    _SummaryFit,
    _ThresholdParams,
    _UnivariateOutlierModel,
    _value,
)
from ml_engine.quantiles import SAMPLE_ROWS, quantiles


class _MADParams(_OutlierParams, _ThresholdParams, _SampleParams):
    pass


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

    def _column_statistics(self) -> list[dict[str, Any]]:
        return [
            {"median": a, "mad": b, "threshold": self.getThreshold()}
            for a, b in zip(self.getMedians(), self.getMads(), strict=True)
        ]


class MADOutlierDetector(
    _SummaryFit,
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

    def summary_aggregates(self, dataset: DataFrame) -> list[Column]:
        """The value count of every input column."""
        cols = self._checked_input(dataset, "threshold")
        return [F.count(_value(c)) for c in cols]

    def fit_from_summary(self, dataset: DataFrame, summary: Sequence[Any]) -> MADOutlierModel:
        """Medians, then MADs, of every input column (two aggregations), given their value
        counts."""
        cols = self.getInputCols()
        counts = [int(n) for n in summary]
        _no_values(type(self).__name__, cols, counts)
        rows = self.getSampleRows()
        values = {c: _value(c) for c in cols}
        _, medians_q = quantiles(dataset, values, [0.5], rows, counts)
        medians = [q[0] for q in medians_q]
        deviations = {c: F.abs(_value(c) - F.lit(m)) for c, m in zip(cols, medians, strict=True)}
        _, mad_q = quantiles(dataset, deviations, [0.5], rows, counts)
        model = MADOutlierModel(medians=medians, mads=[q[0] for q in mad_q])
        return self._copyValues(model)
