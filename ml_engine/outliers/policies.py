"""Combining fitted detectors: the outlier pipeline and the job's policies.

Each a pure function of a DataFrame and a fitted ``PipelineModel`` of detectors:
:func:`with_outlier_flags` (policy ``flag``), :func:`with_capped_values` (``cap``),
:func:`split_outliers` (``drop``) and :func:`restore_outlier_input` (undo them for a rerun).
:func:`build_outlier_pipeline` makes the pipeline from the ``outliers.detectors`` config.
"""

from __future__ import annotations

import functools
import math
import operator
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
    OUTLIER_ORIGINAL,
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
from ml_engine.quality.ingest import BRONZE_META_COLUMNS as METADATA_COLUMNS
from ml_engine.quality.quarantine import quarantine_rows

# Microsecond timestamps in quarantined rows, so a restored row is exactly the original.
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
