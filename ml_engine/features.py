"""Feature engineering: ``silver`` -> ``features``, and feature selection.

Every engineered column is a native Column expression; :func:`with_features` puts all of them
(row-level transformations and every time-window aggregate) into ONE ``select``, so Spark plans
one projection and one ``Window`` operator whatever the number of columns, and runs no job
until the result is written.

Transformations (config ``features``, output names in brackets):

* ``expressions`` [key]: a SQL expression over silver columns (``"amount * 2"``).
* ``log`` [``log_<col>``]: ``log1p``. Negative values: ``log_negative: signed`` (default)
  gives ``sign(x) * log1p(|x|)``, equal to ``log1p(x)`` for x >= 0 and monotonic everywhere;
  ``log_negative: null`` gives null for x < 0.
* ``ratios`` [key]: ``numerator / denominator`` as double; null when the denominator is 0 or
  either side is null.
* ``buckets`` [``<col>_bucket``]: the bucket index (double, as ``Bucketizer`` gives) of
  increasing splits ``s``: bucket ``i`` is ``[s_i, s_i+1)``, the last bucket also includes its
  upper split; values outside the splits, NaN and null give null. A native ``when`` chain, so
  it mixes with the other columns in one select.
* ``date_parts`` [``<col>_<part>``]: ``year``, ``month``, ``day`` (of month), ``hour`` (in the
  session time zone, UTC by default) and ``dayofweek`` (Spark's: 1 = Sunday ... 7 = Saturday).
* ``windows`` [``<col>_<agg>_<N>d``]: per entity, ``count``/``sum``/``mean``/``max``/``min`` of
  a column over the events of the same entity with event time in ``(t - N days, t]`` for an
  event at ``t``: the current event is included (and any other event of the entity at the same
  instant), an event exactly N days earlier is not. ``count`` counts non-null values. The frame
  is a range frame over the event time in microseconds, so it is exact to the microsecond.

Example::

    features = with_features(silver_rows, cfg.features, cfg.table_schema)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pyspark.errors import AnalysisException
from pyspark.ml import PipelineModel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import Config, FeaturesConfig, SelectionConfig
from ml_engine.outliers import (
    OUTLIER_COLUMNS,
    apply_outlier_policy,
    check_detector_columns,
    detector_models,
    load_outlier_model,
    outlier_model_path,
)
from ml_engine.quality.clean import dedup_key
from ml_engine.results import JobError, JobResult
from ml_engine.schemas import BATCH_COLUMN, TableSchema
from ml_engine.session import describe
from ml_engine.tables.base import (
    DeltaTables,
    schema_differences,
    sql_literal,
)

MICROS_PER_DAY = 86_400 * 1_000_000
_FIRST_TARGET = "__first_target_us"

_DATE_PARTS = {
    "year": F.year,
    "month": F.month,
    "day": F.dayofmonth,
    "dayofweek": F.dayofweek,
    "hour": F.hour,
}


class FeatureError(ValueError):
    """A feature definition cannot be applied; the message names the config key and column."""


# --------------------------------------------------------------------------- column builders


def expression_columns(expressions: Mapping[str, str]) -> dict[str, Column]:
    """SQL expressions over columns, one output column per entry.

    Spark parses and resolves them when they are selected; :func:`with_features` turns a
    failure into a :class:`FeatureError` naming ``features.expressions.<name>``.

    Args:
        expressions: output name -> SQL expression (``{"amount_x2": "amount * 2"}``).
    """
    return {name: F.expr(sql) for name, sql in expressions.items()}


def log_columns(columns: Sequence[str], negative: str = "signed") -> dict[str, Column]:
    """``log_<col>`` = ``log1p(col)`` as double for each column.

    Args:
        columns: numeric input columns.
        negative: ``signed`` -> ``sign(x) * log1p(|x|)`` (defined for every x); ``null`` -> null
            for x < 0.

    Raises:
        FeatureError: ``negative`` is neither.
    """
    if negative not in ("signed", "null"):
        raise FeatureError(f"features.log_negative: {negative!r}; use 'signed' or 'null'")
    out: dict[str, Column] = {}
    for c in columns:
        x = F.col(c).cast("double")
        if negative == "signed":
            out[f"log_{c}"] = F.signum(x) * F.log1p(F.abs(x))
        else:
            out[f"log_{c}"] = F.when(x >= 0, F.log1p(x))
    return out


def ratio_columns(ratios: Mapping[str, Sequence[str]]) -> dict[str, Column]:
    """``numerator / denominator`` as double; null when the denominator is 0 or a side is null.

    Args:
        ratios: output name -> ``[numerator column, denominator column]``.

    Raises:
        FeatureError: an entry is not a pair.
    """
    out: dict[str, Column] = {}
    for name, pair in ratios.items():
        if len(pair) != 2:
            raise FeatureError(f"features.ratios.{name}: give [numerator, denominator], got {pair}")
        num, den = (F.col(c).cast("double") for c in pair)
        # try_divide gives null for a zero denominator even with ANSI mode on.
        out[name] = F.try_divide(num, den)
    return out


def bucket_column(column: Column, splits: Sequence[float]) -> Column:
    """The bucket index (double) of ``column`` for increasing ``splits``.

    Bucket ``i`` holds ``splits[i] <= x < splits[i+1]``; the last bucket also holds
    ``x == splits[-1]`` (as ``pyspark.ml.feature.Bucketizer``). Values outside the splits, NaN
    and null give null.

    Raises:
        FeatureError: fewer than 2 splits or splits not strictly increasing.
    """
    splits = [float(s) for s in splits]
    if len(splits) < 2 or any(a >= b for a, b in zip(splits[:-1], splits[1:], strict=True)):
        raise FeatureError(f"bucket splits {splits} must be at least 2 strictly increasing numbers")
    x = column.cast("double")
    # Conditions are tried in order, so each only needs the upper bound of its bucket.
    expr = F.when(x.isNull() | F.isnan(x) | (x < F.lit(splits[0])), F.lit(None).cast("double"))
    for i, upper in enumerate(splits[1:-1]):
        expr = expr.when(x < F.lit(upper), F.lit(float(i)))
    return expr.when(x <= F.lit(splits[-1]), F.lit(float(len(splits) - 2)))


def bucket_columns(buckets: Mapping[str, Sequence[float]]) -> dict[str, Column]:
    """``<col>_bucket`` for each column -> splits entry (see :func:`bucket_column`)."""
    out: dict[str, Column] = {}
    for c, splits in buckets.items():
        try:
            out[f"{c}_bucket"] = bucket_column(F.col(c), splits)
        except FeatureError as exc:
            raise FeatureError(f"features.buckets.{c}: {exc}") from None
    return out


def date_part_columns(date_parts: Mapping[str, Sequence[str]]) -> dict[str, Column]:
    """``<col>_<part>`` (int) for each column -> parts entry.

    Parts: ``year``, ``month``, ``day`` (of month), ``dayofweek`` (1 = Sunday ... 7 =
    Saturday) and ``hour`` (session time zone).

    Raises:
        FeatureError: an unknown part.
    """
    out: dict[str, Column] = {}
    for c, parts in date_parts.items():
        for part in parts:
            if part not in _DATE_PARTS:
                raise FeatureError(
                    f"features.date_parts.{c}: unknown part {part!r}; use {sorted(_DATE_PARTS)}"
                )
            out[f"{c}_{part}"] = _DATE_PARTS[part](F.col(c)).cast("int")
    return out


def event_micros(event_time: str | Column) -> Column:
    """Microseconds since the epoch of a timestamp or date column (the window order key)."""
    col = F.col(event_time) if isinstance(event_time, str) else event_time
    return F.unix_micros(col.cast("timestamp"))


def window_columns(
    key: str,
    event_time: str,
    columns: Mapping[str, Column] | Sequence[str],
    days: Sequence[int],
    aggs: Sequence[str],
) -> dict[str, Column]:
    """Per-entity aggregates over the last N days as of each event, ``<col>_<agg>_<N>d``.

    For an event at ``t`` the frame holds the events of the same ``key`` with event time in
    ``(t - N days, t]``: the current event and same-instant events are included, an event
    exactly N days earlier is not. All columns share the partitioning and order, so Spark
    computes them in one ``Window`` operator when they are selected together.

    Args:
        key: entity key column.
        event_time: timestamp or date column.
        columns: column names, or name -> Column (an expression aggregated under that name).
        days: window lengths in days (>= 1).
        aggs: any of ``count`` (non-null values), ``sum``, ``mean``, ``max``, ``min``.

    Raises:
        FeatureError: a window shorter than 1 day or an unknown aggregate.
    """
    if not isinstance(columns, Mapping):
        columns = {c: F.col(c) for c in columns}
    funcs = {"count": F.count, "sum": F.sum, "mean": F.avg, "max": F.max, "min": F.min}
    unknown = [a for a in aggs if a not in funcs]
    if unknown:
        raise FeatureError(f"features.windows.aggs: unknown {unknown}; use {list(funcs)}")
    if any(d < 1 for d in days):
        raise FeatureError(f"features.windows.days: {list(days)}; every window must be >= 1 day")
    order = Window.partitionBy(key).orderBy(event_micros(event_time))
    out: dict[str, Column] = {}
    for name, col in columns.items():
        x = col.cast("double")
        for d in days:
            w = order.rangeBetween(-d * MICROS_PER_DAY + 1, Window.currentRow)
            for agg in aggs:
                value = funcs[agg](x).over(w)
                out[f"{name}_{agg}_{d}d"] = value if agg == "count" else value.cast("double")
    return out


def engineered_columns(
    features: FeaturesConfig, key: str | None, event_time: str | None
) -> dict[str, Column]:
    """Every engineered column of ``features``, name -> Column, in output order.

    Window aggregates of an expression inline the expression, so nothing needs a second
    projection.

    Raises:
        FeatureError: a malformed definition, or windows without a key / event time.
    """
    exprs = expression_columns(features.expressions)
    cols: dict[str, Column] = dict(exprs)
    cols.update(log_columns(features.log, features.log_negative))
    cols.update(ratio_columns(features.ratios))
    cols.update(bucket_columns(features.buckets))
    cols.update(date_part_columns(features.date_parts))
    win = features.windows
    if win.columns:
        if key is None or event_time is None:
            raise FeatureError(
                "features.windows.columns: window aggregates need a key and an event_time column "
                "(schema roles key and event_time)"
            )
        sources = {c: exprs.get(c, F.col(c)) for c in win.columns}
        cols.update(window_columns(key, event_time, sources, win.days, win.aggs))
    return cols


# --------------------------------------------------------------------------- DataFrame level


def feature_id_columns(schema: TableSchema) -> list[str]:
    """The columns that identify a feature row: entity key, event time (the schema's
    :attr:`~ml_engine.schemas.TableSchema.time_column`), record id if any.

    Raises:
        FeatureError: the schema lacks a key column.
    """
    if schema.key is None:
        raise FeatureError(
            f"schema '{schema.name}' ({schema.source}) needs a column with role key to build "
            "features (role: [record_id, key] when each record is its own entity)"
        )
    ids = (schema.key, schema.time_column, schema.record_id)
    return list(dict.fromkeys(c for c in ids if c is not None))


def with_features(
    df: DataFrame,
    features: FeaturesConfig,
    schema: TableSchema,
    carry: Sequence[str] = (BATCH_COLUMN,),
) -> DataFrame:
    """Computes the engineered columns of every row of ``df`` in one ``select``.

    Output columns, in order: entity key, event time, record id (when the schema has one),
    label (when it has one), ``carry`` columns present in ``df``, ``features.passthrough``
    columns (default: the schema's numeric and categorical features) and the engineered
    columns (:meth:`FeaturesConfig.output_names` order).

    Window aggregates see exactly the rows of ``df``: pass the history they need (see
    :func:`filter_window_history`) and filter to the wanted events afterwards.

    Args:
        df: silver rows (typed per ``schema``).
        features: the ``features`` config section.
        schema: the input schema (roles key, event_time, record_id, label).
        carry: metadata columns copied when present (``batch_id``).

    Raises:
        FeatureError: a definition does not fit ``df`` (names the config key) or an engineered
            name clashes with an output column.
    """
    ids = feature_id_columns(schema)
    label = [schema.label] if schema.label else []
    kept = [c for c in carry if c in df.columns]
    passthrough = (
        features.passthrough
        if features.passthrough is not None
        else schema.numeric_features + schema.categorical_features
    )
    base = list(dict.fromkeys(ids + label + kept + list(passthrough)))
    missing = [c for c in base if c not in df.columns]
    if missing:
        raise FeatureError(
            f"features: input lacks column(s) {missing} (needed as ids/label/passthrough)"
        )
    cols = engineered_columns(features, schema.key, schema.time_column)
    clash = [n for n in cols if n in base]
    if clash:
        raise FeatureError(
            f"features: engineered column(s) {clash} clash with input columns; rename them"
        )
    _check_resolves(df, features, cols)
    return df.select(*[F.col(c) for c in base], *[col.alias(n) for n, col in cols.items()])


def _check_resolves(df: DataFrame, features: FeaturesConfig, cols: Mapping[str, Column]) -> None:
    """Analyses each engineered column alone (no Spark job) to name the one that fails."""
    try:
        df.select(*[c.alias(n) for n, c in cols.items()]).schema  # noqa: B018
        return
    except AnalysisException:
        pass
    for name, col in cols.items():
        try:
            df.select(col.alias(name)).schema  # noqa: B018
        except AnalysisException as exc:
            raise FeatureError(
                f"features: column '{name}' ({_config_key(features, name)}) cannot be computed "
                f"from the input: {_first_line(exc)}"
            ) from None


def _config_key(features: FeaturesConfig, name: str) -> str:
    if name in features.expressions:
        return f"features.expressions.{name}"
    if name in features.ratios:
        return f"features.ratios.{name}"
    for c in features.log:
        if name == f"log_{c}":
            return "features.log"
    for c in features.buckets:
        if name == f"{c}_bucket":
            return f"features.buckets.{c}"
    for c in features.date_parts:
        if name.startswith(f"{c}_"):
            return f"features.date_parts.{c}"
    return "features.windows"


def filter_window_history(
    df: DataFrame, target: Column, key: str, event_time: str, days: int
) -> DataFrame:
    """The target rows plus the earlier rows of their entities a ``days``-day window reaches.

    Keeps every row of an entity that has target rows, from just after ``days`` days before the
    entity's first target event on; other entities are dropped. With ``days`` 0 only the
    target rows are kept. Runs no job; the earliest target time per entity is a ``groupBy``
    joined back.

    Args:
        df: all candidate rows (all of silver).
        target: boolean Column selecting the events to compute features for.
        key: entity key column.
        event_time: timestamp or date column.
        days: the longest window in days.
    """
    if days <= 0:
        return df.where(target)
    first = df.where(target).groupBy(key).agg(F.min(event_micros(event_time)).alias(_FIRST_TARGET))
    return (
        df.join(first, on=key, how="inner")
        .where(event_micros(event_time) > F.col(_FIRST_TARGET) - F.lit(days * MICROS_PER_DAY))
        .drop(_FIRST_TARGET)
    )


def feature_rows_predicate(features: FeaturesConfig, batch_id: str, event_time: str) -> str:
    """The SQL predicate of the events a run (re)builds, over silver and the features table.

    ``features.start``/``end`` set: ``event_time`` in ``[start, end)``; otherwise
    ``batch_id = '<batch_id>'``. The same predicate selects the silver events and, as
    ``replace_where``, the feature rows a rerun replaces.
    """
    if features.start is None and features.end is None:
        return f"{BATCH_COLUMN} = {sql_literal(batch_id)}"
    parts = []
    if features.start is not None:
        parts.append(f"{event_time} >= {_sql_timestamp(features.start)}")
    if features.end is not None:
        parts.append(f"{event_time} < {_sql_timestamp(features.end)}")
    return " AND ".join(parts)


def _sql_timestamp(value: str) -> str:
    # Validated ISO text (config); normalised so any SQL engine parses it.
    return f"TIMESTAMP '{datetime.fromisoformat(value).isoformat(sep=' ')}'"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- selection


def select_features(
    df: DataFrame,
    feature_columns: Sequence[str],
    label: str | None,
    selection: SelectionConfig,
) -> list[str]:
    """Names of the features MLlib's selectors keep, in ``feature_columns`` order.

    First ``VarianceThresholdSelector`` (when ``selection.variance_threshold`` is set: features
    whose sample variance is not above it are dropped), then ``UnivariateFeatureSelector`` on
    the rest (when ``selection.univariate`` is set). Rows with a null or NaN in any feature
    are skipped (``VectorAssembler(handleInvalid="skip")``). Fitting runs a few Spark jobs
    whose number does not depend on the number of columns; nothing but the fitted selection
    reaches the driver.

    Args:
        df: rows with numeric ``feature_columns`` (and ``label`` for univariate selection).
        feature_columns: candidate numeric columns.
        label: label column; needed when ``selection.univariate`` is set.
        selection: the ``features.selection`` config section.

    Raises:
        FeatureError: no candidates, a non-numeric or missing candidate, or univariate
            selection without a label.
    """
    from pyspark.ml.feature import (
        UnivariateFeatureSelector,
        VarianceThresholdSelector,
        VectorAssembler,
    )

    names = list(feature_columns)
    if not names:
        raise FeatureError("features.selection: no candidate feature columns")
    types = dict(df.dtypes)
    bad = [
        c for c in names if c not in types or not isinstance(df.schema[c].dataType, T.NumericType)
    ]
    if bad:
        raise FeatureError(
            f"features.selection.columns: {bad} missing or not numeric; selection needs numeric "
            f"columns (encode categorical ones first)"
        )
    if selection.univariate is not None and (label is None or label not in types):
        raise FeatureError(
            f"features.selection.univariate: label column {label!r} is not in the data; "
            f"univariate selection needs the label"
        )

    def assembled(cols: list[str]) -> DataFrame:
        keep = [F.col(c).cast("double") for c in cols]
        if label is not None and label in types:
            keep.append(F.col(label).cast("double").alias("__label"))
        data = df.select(*keep)
        if label is not None and label in types:
            data = data.where(F.col("__label").isNotNull())
        return VectorAssembler(
            inputCols=cols, outputCol="__features", handleInvalid="skip"
        ).transform(data)

    if selection.variance_threshold is not None:
        model = VarianceThresholdSelector(
            featuresCol="__features",
            outputCol="__selected",
            varianceThreshold=float(selection.variance_threshold),
        ).fit(assembled(names))
        chosen = set(model.selectedFeatures)
        names = [n for i, n in enumerate(names) if i in chosen]
    if selection.univariate is not None and names:
        uni = selection.univariate
        selector = UnivariateFeatureSelector(
            featuresCol="__features",
            outputCol="__selected",
            labelCol="__label",
            selectionMode=uni.selection_mode,
        )
        selector.setFeatureType(uni.feature_type).setLabelType(uni.label_type)
        if uni.threshold is not None:
            selector.setSelectionThreshold(float(uni.threshold))
        chosen = set(selector.fit(assembled(names)).selectedFeatures)
        names = [n for i, n in enumerate(names) if i in chosen]
    return names


# --------------------------------------------------------------------------- the job


def run_build_features(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """``silver`` -> ``features`` for the run's batch or ``features.start``/``end`` range.

    Window aggregates read their history from all of silver (earlier batches included). The
    outlier detector ``detect_outliers`` saved is applied to those rows in the same select
    (:func:`~ml_engine.outliers.apply_outlier_policy` with ``outliers.policy``): every
    feature row carries ``is_outlier``, ``outlier_score`` and ``outlier_reasons``; ``cap``
    winsorises the checked columns before any feature is computed from them, ``drop`` leaves
    the outliers out (they are in ``quarantine``). Without a saved detector the three columns
    are null. The written rows replace the feature rows of the same batch / event-time range
    (``replace_where``), so a rerun never duplicates them. The table is partitioned by
    ``batch_id``.

    Every row of the table has the columns of one set of feature definitions. When the config
    defines other columns than the table has, the job stops and says so; ``features.rebuild``
    then computes the feature rows of every complete batch of silver and replaces the whole
    table, its columns included, in one commit.

    Raises:
        JobError: silver does not exist, the feature definitions do not fit it, they give
            other columns than the features table has (without ``features.rebuild``), or the
            saved detector checks a column silver lacks.
    """
    schema = cfg.table_schema
    fcfg = cfg.features
    silver_path = cfg.storage.table_path("silver")
    features_path = cfg.storage.table_path("features")
    if not tables.exists(silver_path):
        raise JobError(f"build_features: no silver table at {silver_path}; run clean first")
    try:
        feature_id_columns(schema)
    except FeatureError as exc:
        raise JobError(f"build_features: {exc}") from None
    batch = cfg.effective_batch_id() if fcfg.by_batch else ""
    predicate = None if fcfg.rebuild else feature_rows_predicate(fcfg, batch, schema.time_column)
    if batch:
        tables.require_batch(silver_path, batch)
    # Window history comes from every complete batch of silver.
    silver, silver_version = tables.read_complete(silver_path)
    replaced = predicate or "every batch (features.rebuild)"
    describe(spark, f"build_features: silver v{silver_version} -> features ({replaced})")
    rows = silver
    if predicate is not None:
        days = max(fcfg.windows.days) if fcfg.windows.columns else 0
        rows = filter_window_history(rows, F.expr(predicate), schema.key, schema.time_column, days)
    model_path = outlier_model_path(cfg)
    detector = _detector(spark, cfg, tables, rows, batch)
    rows = apply_outlier_policy(rows, detector, cfg.outliers.policy)
    try:
        carry = (BATCH_COLUMN, *OUTLIER_COLUMNS)
        out = with_features(rows, fcfg, schema, carry=carry)
    except FeatureError as exc:
        raise JobError(f"build_features: {exc} (silver: {silver_path})") from None
    version = _write_features(tables, cfg, out, predicate)
    return JobResult(
        job="build_features",
        outputs={"features": features_path},
        metrics={
            "replaced": replaced,
            "silver_version": silver_version,
            "features_version": version,
            "engineered_columns": fcfg.output_names(),
            "outliers": f"{cfg.outliers.policy}, detector {model_path}"
            if detector is not None
            else "none: outliers.detectors is empty"
            if not cfg.outliers.detectors
            else f"not applied: no detector saved at {model_path} (run detect_outliers)",
        },
    )


def _detector(
    spark: SparkSession, cfg: Config, tables: DeltaTables, rows: DataFrame, batch: str
) -> PipelineModel | None:
    """The detector ``detect_outliers`` saved (None: none saved, or ``outliers.detectors``
    empty), checked against ``rows`` (silver's) and against the policy the batch's features
    were written with."""
    if not cfg.outliers.detectors:
        return None
    model_path = outlier_model_path(cfg)
    try:
        detector = load_outlier_model(spark, model_path)
    except ValueError as exc:
        raise JobError(f"build_features: outliers.model_path: {model_path}: {exc}") from None
    if detector is not None:
        where = [f"the outlier model saved at {model_path}"] * len(detector.stages)
        silver_path = cfg.storage.table_path("silver")
        check_detector_columns(rows, detector_models(detector), silver_path, where)
        _check_policy(tables, cfg, batch)
    return detector


def _write_features(tables: DeltaTables, cfg: Config, out: DataFrame, predicate: str | None) -> int:
    """Writes the feature rows: the whole table (``predicate`` None, ``features.rebuild``)
    or the rows ``predicate`` selects, replacing those; returns the new version."""
    features_path = cfg.storage.table_path("features")
    if predicate is None:
        return tables.overwrite(
            out, features_path, partition_by=[BATCH_COLUMN], replace_schema=True
        )
    _check_same_definitions(tables, features_path, out)
    # With latest_by_key a record is held once across batches: the batch written last has it.
    key = dedup_key(cfg.table_schema) if cfg.clean.dedup == "latest_by_key" else None
    return tables.overwrite(
        out.where(F.expr(predicate)),
        features_path,
        partition_by=[BATCH_COLUMN],
        replace_where=predicate,
        unique_by=[key] if key in out.columns else None,
    )


def _check_policy(tables: DeltaTables, cfg: Config, batch: str) -> None:
    """Stops a run whose ``outliers.policy`` differs from the one ``detect_outliers`` applied
    to the batch (every batch when ``batch`` is empty), or to another batch: the features
    table holds the rows of one policy. Otherwise outliers would be both in ``quarantine``
    and in ``features`` (or in neither), and capped values would sit beside raw ones in the
    rows one model trains on. Reads ``outlier_stats``."""
    stats_path = cfg.storage.table_path("outlier_stats")
    policy = cfg.outliers.policy
    recorded: dict[str, str] = {}
    if tables.exists(stats_path):
        pairs = tables.read(stats_path).select("batch_id", "policy").distinct().collect()
        recorded = {r.batch_id: r.policy for r in pairs}
    if batch and policy == "drop" and batch not in recorded:
        raise JobError(
            f"build_features: outliers.policy is drop but detect_outliers has not run for batch "
            f"'{batch}' (no rows in {stats_path}): run it first, so that the rows left out of "
            "features are in quarantine"
        )
    mine = [batch] if batch else sorted(recorded)
    differ = [b for b in mine if recorded.get(b, policy) != policy]
    if differ:
        shown = ", ".join(f"'{b}' ({recorded[b]})" for b in differ[:5])
        raise JobError(
            f"build_features: outliers.policy is {policy}, but detect_outliers applied another "
            f"policy to batch {shown} ({stats_path}); both jobs must apply the same one (with "
            "drop the outliers go to quarantine instead of features): run detect_outliers for "
            f"the batch with policy {policy}, or build the features with --set "
            f"outliers.policy={recorded[differ[0]]}"
        )
    others = sorted(b for b, p in recorded.items() if p != policy)
    if others:
        shown = ", ".join(f"'{b}' ({recorded[b]})" for b in others[:5])
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        raise JobError(
            f"build_features: outliers.policy is {policy}, but the features of batch {shown}"
            f"{more} were built with another policy ({stats_path}): one features table holds "
            "the rows of one policy, or a model would train on capped and raw values (or on "
            f"kept and dropped outliers) at once. Keep --set outliers.policy={recorded[others[0]]}"
            f", or move every batch to {policy}: run detect_outliers with it for each batch, "
            "then build_features with --set features.rebuild=true"
        )


def _check_same_definitions(tables: DeltaTables, features_path: str, out: DataFrame) -> None:
    """Stops a run whose feature definitions give other columns than the table has (rows of
    different definitions in one table would train one model on two meanings)."""
    if not tables.exists(features_path):
        return
    changed = schema_differences(tables.schema(features_path), out.schema)
    if changed:
        raise JobError(
            f"build_features: the features table {features_path} was built with other feature "
            f"definitions than the config's ({changed}). Rebuild it from silver for every batch "
            "with --set features.rebuild=true (one commit; then build_training_set and train "
            "again), or write these features to another table with "
            "--set storage.tables.features=PATH"
        )
