"""Combining fitted detectors: the outlier pipeline and the policies.

Each a pure function of a DataFrame and a fitted ``PipelineModel`` of detectors:
:func:`with_outlier_flags` (policy ``flag``), :func:`with_capped_values` (``cap``),
:func:`split_outliers` (``drop``), and :func:`apply_outlier_policy`, which ``build_features``
applies in the select that writes the feature rows. :func:`build_outlier_pipeline` makes the
pipeline from the ``outliers.detectors`` config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from pyspark.ml import Estimator, Pipeline, PipelineModel
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import DetectorConfig
from ml_engine.outliers.base import (
    IS_OUTLIER,
    OUTLIER_COLUMNS,
    OUTLIER_FIELDS,
    OUTLIER_REASONS,
    OUTLIER_SCORE,
    STAGE,
    OutlierModel,
    _col,
    _greatest,
    _value,
)
from ml_engine.outliers.iqr import IQROutlierDetector
from ml_engine.outliers.mad import MADOutlierDetector
from ml_engine.outliers.mahalanobis import MahalanobisOutlierDetector
from ml_engine.outliers.zscore import ZScoreOutlierDetector
from ml_engine.quality.quarantine import no_reasons, quarantine_rows
from ml_engine.tables.base import META_COLUMNS

# Microsecond timestamps in quarantined rows: the raw record holds the exact value.
_JSON_OPTIONS = {"timestampFormat": "yyyy-MM-dd'T'HH:mm:ss.SSSSSSXXX"}

DETECTORS: dict[str, type[Estimator]] = {
    "iqr": IQROutlierDetector,
    "mad": MADOutlierDetector,
    "zscore": ZScoreOutlierDetector,
    "mahalanobis": MahalanobisOutlierDetector,
}


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
    # A detector's output is true exactly when its reasons are not empty.
    fired = _greatest([F.col(m.getOutputCol()) for m in models])
    reasons = F.array_distinct(F.concat(*[F.col(m.getReasonsCol()) for m in models]))
    return {
        IS_OUTLIER: fired,
        OUTLIER_SCORE: _greatest([F.col(m.getScoreCol()) for m in models]).cast("double"),
        OUTLIER_REASONS: F.when(fired, reasons).otherwise(no_reasons()),
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


def _capped(name: str, dtype: T.DataType, lo: float, hi: float) -> Column:
    """One column's value winsorised to ``[lo, hi]``, keeping the column's type."""
    x = _value(name)
    lo_v, hi_v = _fence_literal(dtype, lo, lower=True), _fence_literal(dtype, hi, lower=False)
    return F.when(x < F.lit(lo), lo_v).when(x > F.lit(hi), hi_v).otherwise(_col(name))


def with_capped_values(df: DataFrame, model: PipelineModel) -> DataFrame:
    """Winsorises outliers to the fitted fences (policy ``cap``) and flags the rows.

    Every value outside the fences of a univariate detector is replaced by the fence (the
    tightest one when several detectors check the column): IQR ``Q1 - k*IQR``/``Q3 + k*IQR``,
    MAD ``median -/+ threshold * MAD / 0.6745``, z-score ``mean -/+ threshold * std``. The
    Mahalanobis detector has no per-column fence: its rows are flagged, not changed. Columns
    keep their types (integral and decimal columns get the nearest value of their type inside
    the fences).

    Adds ``is_outlier``, ``outlier_score`` and ``outlier_reasons``, computed on the original
    values as in :func:`with_outlier_flags`.

    Raises:
        ValueError: the model is not a detector pipeline or a column is missing.
    """
    models = detector_models(model)
    types = {f.name: f.dataType for f in df.schema.fields}
    caps = {c: _capped(c, types[c], lo, hi) for c, (lo, hi) in _cap_bounds(models).items()}
    scored = model.transform(df)
    out = [caps[c].alias(c) if c in caps else _col(c) for c in _data_columns(df)]
    return scored.select(*out, *[v.alias(k) for k, v in _combined(models).items()])


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
    data_cols = [c for c in _data_columns(df) if c not in META_COLUMNS]
    outliers = flagged.where(F.col(IS_OUTLIER))
    quarantined = quarantine_rows(
        outliers,
        reason=outlier_reason(models),
        stage=STAGE,
        record_key=_col(record_key) if record_key else None,
        raw_record=F.to_json(F.struct(*[_col(c) for c in data_cols]), _JSON_OPTIONS),
    )
    return kept, quarantined


def apply_outlier_policy(df: DataFrame, model: PipelineModel | None, policy: str) -> DataFrame:
    """``df`` with ``policy`` applied by the fitted detectors ``model``: ``flag`` adds the flag
    columns, ``cap`` also winsorises, ``drop`` also removes the outliers (the rows
    ``detect_outliers`` quarantined, given the same model). Without a model the flag columns
    are null and no row changes.

    Only expressions over ``df``'s columns: applied before a select that writes rows anyway,
    it costs no pass of its own.

    Raises:
        ValueError: the model is not a detector pipeline or a column is missing.
    """
    if model is None:
        return df.select(
            *[_col(c) for c in _data_columns(df)],
            *[F.lit(None).cast(f.dataType).alias(f.name) for f in OUTLIER_FIELDS],
        )
    if policy == "cap":
        return with_capped_values(df, model)
    if policy == "drop":
        return split_outliers(df, model)[0]
    return with_outlier_flags(df, model)
