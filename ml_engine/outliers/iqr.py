"""Tukey's fences: :class:`IQROutlierDetector` -> :class:`IQROutlierModel`.

A value is an outlier outside ``Q1 - k*IQR`` and ``Q3 + k*IQR`` (``IQR = Q3 - Q1``).
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
    _no_values,
    _OutlierParams,
    _OutputSetters,
    _SampleParams,
    _SummaryFit,
    _UnivariateOutlierModel,
    _value,
)
from ml_engine.quantiles import SAMPLE_ROWS, quantiles


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

    def _column_statistics(self) -> list[dict[str, Any]]:
        return [
            {"q1": a, "q3": b, "k": self.getK()}
            for a, b in zip(self.getQ1s(), self.getQ3s(), strict=True)
        ]


class IQROutlierDetector(
    _SummaryFit,
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

    def summary_aggregates(self, dataset: DataFrame) -> list[Column]:
        """The value count of every input column."""
        cols = self._checked_input(dataset, "k")
        return [F.count(_value(c)) for c in cols]

    def fit_from_summary(self, dataset: DataFrame, summary: Sequence[Any]) -> IQROutlierModel:
        """Quartiles of every input column from one aggregation, given their value counts."""
        cols = self.getInputCols()
        counts = [int(n) for n in summary]
        _no_values(type(self).__name__, cols, counts)
        _, quartiles = quantiles(
            dataset, {c: _value(c) for c in cols}, [0.25, 0.75], self.getSampleRows(), counts
        )
        model = IQROutlierModel(q1s=[q[0] for q in quartiles], q3s=[q[1] for q in quartiles])
        return self._copyValues(model)
