"""Point-in-time correct training sets: label events joined to the features known at their time.

For each label event (entity, label time, label) the training set takes the feature row of the
same entity with the latest feature event time ``<=`` the label time, never a later one, so a
model is trained only on what was known when the label's event happened. Labels of records
(the label table has the record id the features have) are matched the same way within their
own record: a label takes its record's feature row, never another record's of the same entity,
and a label whose record has no feature row at or before its time (quarantined, dropped as an
outlier, not built yet) is left out and counted.

The join is native and linear in the number of rows: labels and feature rows are unioned,
sorted per entity by time (a feature row before a label row at the same instant) and each label
row takes the last feature row before it (``last(struct, ignorenulls=True)`` over a running
window). The whole feature row is carried as one struct, so a null in the latest feature row
stays null instead of being filled from an older row.

The ``training_set`` table records which versions of its inputs it was built from, in the
columns ``features_version`` and ``labels_version`` (and in the job result), so a training run
can log them and anyone can rebuild the same set by time travel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import Config
from ml_engine.features import BATCH_COLUMN, event_micros, select_features
from ml_engine.outliers import OUTLIER_COLUMNS
from ml_engine.results import JobError, JobResult
from ml_engine.session import describe
from ml_engine.tables.base import DeltaTables

LABEL_TIME = "label_time"
FEATURE_TIME = "feature_time"
FEATURES_VERSION = "features_version"
LABELS_VERSION = "labels_version"

_K, _T, _TB, _KIND, _FEAT, _LAB = "__k", "__t", "__tb", "__kind", "__feat", "__lab"
_FEATURE_ROW, _LABEL_ROW = 0, 1


class TrainingSetError(ValueError):
    """Labels or features do not fit together; the message names the column and table."""


def point_in_time_join(
    labels: DataFrame,
    features: DataFrame,
    key: str,
    label_time: str,
    feature_time: str,
    feature_columns: Sequence[str],
    order_by: str | None = None,
    as_of_column: str = FEATURE_TIME,
) -> DataFrame:
    """Each label row with the entity's latest feature row at or before its label time.

    A label with no feature row at or before its time keeps null features (and a null
    ``as_of_column``). Among feature rows at exactly the same time, the last by ``order_by``
    is taken, so the same rows always give the same pairs. Labels or feature rows with a null
    key match nothing.

    Args:
        labels: label events; all of their columns are kept, in order.
        features: feature rows with ``key``, ``feature_time`` and ``feature_columns``.
        key: entity key column, in both frames.
        label_time: timestamp/date column of ``labels``.
        feature_time: timestamp/date column of ``features``.
        feature_columns: feature columns to attach (must not be columns of ``labels``).
        order_by: optional column of ``features`` (a record id) ordering same-instant rows.
        as_of_column: output column with the event time of the feature row used.

    Returns:
        ``labels`` columns, then ``as_of_column``, then ``feature_columns``.

    Raises:
        TrainingSetError: a column is missing or a feature column clashes with a label column.
    """
    _require(labels, [key, label_time], "labels")
    _require(
        features,
        [key, feature_time, *feature_columns] + ([order_by] if order_by else []),
        "features",
    )
    clash = [c for c in [as_of_column, *feature_columns] if c in labels.columns]
    if clash:
        raise TrainingSetError(
            f"feature column(s) {clash} also exist in the labels; drop or rename them "
            f"(training_set.feature_columns)"
        )

    feat = F.struct(
        F.col(feature_time).cast("timestamp").alias(as_of_column),
        *[F.col(c) for c in feature_columns],
    )
    lab = F.struct(*[F.col(c) for c in labels.columns])
    feat_type = features.select(feat.alias(_FEAT)).schema[_FEAT].dataType
    lab_type = labels.select(lab.alias(_LAB)).schema[_LAB].dataType

    feature_rows = features.where(F.col(key).isNotNull()).select(
        F.col(key).alias(_K),
        event_micros(feature_time).alias(_T),
        (F.col(order_by) if order_by else F.lit(None)).cast("string").alias(_TB),
        F.lit(_FEATURE_ROW).alias(_KIND),
        feat.alias(_FEAT),
        F.lit(None).cast(lab_type).alias(_LAB),
    )
    label_rows = labels.select(
        F.col(key).alias(_K),
        event_micros(label_time).alias(_T),
        F.lit(None).cast("string").alias(_TB),
        F.lit(_LABEL_ROW).alias(_KIND),
        F.lit(None).cast(feat_type).alias(_FEAT),
        lab.alias(_LAB),
    )
    # Same instant: feature rows in order_by's order, then the label (its null sorts last).
    w = (
        Window.partitionBy(_K)
        .orderBy(F.col(_T).asc(), F.col(_TB).asc_nulls_last(), F.col(_KIND).asc())
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    joined = (
        feature_rows.unionByName(label_rows)
        .select(_KIND, _LAB, F.last(_FEAT, ignorenulls=True).over(w).alias(_FEAT))
        .where(F.col(_KIND) == _LABEL_ROW)
    )
    return joined.select(
        *[F.col(f"{_LAB}.{c}").alias(c) for c in labels.columns],
        F.col(f"{_FEAT}.{as_of_column}").alias(as_of_column),
        *[F.col(f"{_FEAT}.{c}").alias(c) for c in feature_columns],
    )


@dataclass(frozen=True)
class LabelColumns:
    """The label table's column for each part of a label event.

    ``label_id``: the record id, when the label table has one; ``per_record``: it is also a
    column of the features, so each label is matched within its own record (``key`` then
    comes from the feature row and the label table need not have it).
    """

    key: str
    label_time: str
    label: str
    label_id: str | None
    per_record: bool


def label_roles(cfg: Config) -> dict[str, str | None]:
    """``training_set.key``, ``label_time`` and ``label``, each defaulting to the schema's
    column of that role (None: neither is set)."""
    schema, ts = cfg.table_schema, cfg.training_set
    return {
        "key": ts.key or schema.key,
        "label_time": ts.label_time or schema.time_column,
        "label": ts.label or schema.label,
    }


def label_columns(
    cfg: Config, labels_path: str, label_table: Sequence[str], feature_table: Sequence[str]
) -> tuple[LabelColumns | None, list[str]]:
    """The label table's columns (``training_set.*``, defaulting to the schema's roles), and
    the problems that keep them from being used, each naming the config key and the table.

    Args:
        labels_path: the label table's location, for the messages.
        label_table: its column names.
        feature_table: the features table's column names.
    """
    schema, ts = cfg.table_schema, cfg.training_set
    label_id = ts.label_id or (schema.record_id if schema.record_id in label_table else None)
    per_record = label_id is not None and label_id in feature_table
    wanted = label_roles(cfg)
    problems = [
        f"build_training_set: training_set.{name} is not set and schema '{schema.name}' "
        f"({schema.source}) has no column with that role; set it"
        for name, value in wanted.items()
        if value is None
    ]
    if problems:
        return None, problems
    for name, value in {**wanted, "label_id": label_id}.items():
        if value is None or value in label_table or (name == "key" and per_record):
            continue
        hint = ""
        if name == "key" and schema.record_id and schema.record_id in feature_table:
            hint = (
                f" (labels of single records need only the record id '{schema.record_id}', "
                "the label and its time)"
            )
        problems.append(
            f"build_training_set: training_set.{name}: column '{value}' is not in the label "
            f"table {labels_path}; its columns: {list(label_table)}{hint}"
        )
    if problems:
        return None, problems
    return LabelColumns(label_id=label_id, per_record=per_record, **wanted), []


def _require(df: DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise TrainingSetError(f"{what} lack column(s) {missing}; they have {df.columns}")


def default_feature_columns(features: DataFrame, exclude: Sequence[str]) -> list[str]:
    """The feature table's columns except ids, times, label, ``batch_id`` and the outlier
    flags (per-row diagnostics; a model gets them from its own detector stage with
    ``train.outlier_features``, so scoring computes them the same way)."""
    skip = set(exclude) | {BATCH_COLUMN, *OUTLIER_COLUMNS}
    return [c for c in features.columns if c not in skip]


def training_rows(
    spark: SparkSession,
    cfg: Config,
    tables: DeltaTables,
    features_version: int | None = None,
    labels_version: int | None = None,
) -> tuple[DataFrame, dict]:
    """Every labelled event with its point-in-time features, from the given input versions.

    Labels come from ``training_set.labels_path`` or ``silver`` (rows with a null label are not
    label events); the column names default to the schema roles (record_id as ``label_id``,
    key, event_time as label time, label). Inputs are read at the given Delta versions (time
    travel; default: the latest), and those versions are carried in the ``features_version``
    / ``labels_version`` columns. Output columns: label id (when known and not the key), key,
    ``label_time``, label, ``feature_time``, the feature columns, ``features_version``,
    ``labels_version``.

    Returns:
        ``(rows, info)``; ``info`` holds the versions, paths and feature columns.

    Raises:
        JobError: a missing input table or version, or columns that do not fit (names the
            config key).
    """
    schema = cfg.table_schema
    ts_cfg = cfg.training_set
    features_path = cfg.storage.table_path("features")
    labels_path = ts_cfg.labels_path or cfg.storage.table_path("silver")
    if not tables.exists(features_path):
        raise JobError(
            f"build_training_set: no features table at {features_path}; run build_features first"
        )
    if not tables.exists(labels_path):
        raise JobError(
            f"build_training_set: no label table at {labels_path} (training_set.labels_path, "
            f"default silver); run clean first or fix the path"
        )

    feature_time = schema.time_column
    # Latest: every complete batch (the versions recorded are the newest read); given
    # versions: time travel to exactly those versions.
    if features_version is None:
        features, features_version = tables.read_complete(features_path)
    else:
        features = tables.read(features_path, version=features_version)
    if labels_version is None:
        label_src, labels_version = tables.read_complete(labels_path)
    else:
        label_src = tables.read(labels_path, version=labels_version)
    describe(
        spark,
        f"build_training_set: labels v{labels_version} x features v{features_version} -> training_set",
    )

    cols, problems = label_columns(cfg, labels_path, label_src.columns, features.columns)
    if problems:
        raise JobError("; ".join(problems))
    key, label, label_id = cols.key, cols.label, cols.label_id
    if key not in features.columns or feature_time not in features.columns:
        raise JobError(
            f"build_training_set: the features table {features_path} lacks '{key}' or "
            f"'{feature_time}'; rebuild it with build_features"
        )

    # A column that is both record id and key is selected once; a record's label takes the
    # key of its feature row.
    id_cols = [label_id] if label_id and label_id != key else []
    key_cols = [] if cols.per_record and label_id != key else [key]
    labels = label_src.where(F.col(label).isNotNull()).select(
        *[F.col(c) for c in id_cols],
        *[F.col(c) for c in key_cols],
        F.col(cols.label_time).cast("timestamp").alias(LABEL_TIME),
        F.col(label),
    )
    # The features table's own label column is never a feature (it would leak the label).
    exclude = {key, feature_time, LABEL_TIME, label}
    exclude |= {c for c in (schema.record_id, schema.label, label_id) if c}
    if ts_cfg.feature_columns is not None:
        feature_columns = list(ts_cfg.feature_columns)
        missing = [c for c in feature_columns if c not in features.columns]
        if missing:
            raise JobError(
                f"build_training_set: training_set.feature_columns: {missing} are not in the "
                f"features table {features_path}; its columns: {features.columns}"
            )
    else:
        feature_columns = default_feature_columns(features, sorted(exclude))
    try:
        if cols.per_record:
            joined = point_in_time_join(
                labels,
                features,
                label_id,
                LABEL_TIME,
                feature_time,
                [c for c in [key] if c not in key_cols] + feature_columns,
            ).where(F.col(FEATURE_TIME).isNotNull())
        else:
            order_by = schema.record_id if schema.record_id in features.columns else None
            joined = point_in_time_join(
                labels, features, key, LABEL_TIME, feature_time, feature_columns, order_by
            )
    except TrainingSetError as exc:
        raise JobError(f"build_training_set: {exc}") from None
    rows = joined.select(
        *id_cols,
        key,
        LABEL_TIME,
        label,
        FEATURE_TIME,
        *feature_columns,
        F.lit(features_version).cast("long").alias(FEATURES_VERSION),
        F.lit(labels_version).cast("long").alias(LABELS_VERSION),
    )
    info = {
        FEATURES_VERSION: features_version,
        LABELS_VERSION: labels_version,
        "features_path": features_path,
        "labels_path": labels_path,
        "feature_columns": feature_columns,
        "label": label,
        "label_id": label_id if id_cols else key,
        "labels": labels,
        "per_record": cols.per_record,
    }
    return rows, info


def build_training_set(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """Writes ``training_set`` (:func:`training_rows` at the inputs' latest versions).

    The table is replaced as a whole, its columns too (a rebuild never duplicates; changed
    feature definitions give it their columns). With
    ``features.selection`` set, the metrics also list ``selected_features``.

    Raises:
        JobError: a missing input table, or columns that do not fit (names the config key).
    """
    out_path = cfg.storage.table_path("training_set")
    rows, info = training_rows(spark, cfg, tables)
    # Its columns follow the feature definitions: a changed definition changes them.
    version = tables.overwrite(rows, out_path, replace_schema=True)
    describe(spark, "build_training_set: rows written and label events read")
    written = tables.read(out_path, version=version).count()
    events = info["labels"].count()
    metrics = {
        FEATURES_VERSION: info[FEATURES_VERSION],
        LABELS_VERSION: info[LABELS_VERSION],
        "training_set_version": version,
        "rows": written,
        "label_events": events,
        "features_path": info["features_path"],
        "labels_path": info["labels_path"],
        "feature_columns": info["feature_columns"],
    }
    notes = []
    if info["per_record"]:
        metrics["labels_without_their_record"] = events - written
        if events > written:
            notes.append(
                f"{events - written:,} of {events:,} labels were left out: their record "
                f"({info['label_id']}) has no feature row at or before the label's time "
                "(quarantined, dropped as an outlier, or its batch not built yet)"
            )
    if cfg.features.selection.enabled:
        written = tables.read(out_path, version=version)
        candidates = cfg.features.selection.columns or [
            c
            for c in info["feature_columns"]
            if isinstance(written.schema[c].dataType, T.NumericType)
        ]
        describe(spark, "build_training_set: feature selection")
        metrics["selected_features"] = select_features(
            written, candidates, info["label"], cfg.features.selection
        )
    return JobResult(
        job="build_training_set",
        outputs={"training_set": out_path},
        metrics=metrics,
        notes=notes,
    )


run_build_training_set = build_training_set
