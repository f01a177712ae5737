"""The ``quarantine`` table: every row a job rejected, with the reason.

Contract (DESIGN.md): ``raw_record`` (original text or JSON of the row), ``reason`` (non-null,
names the column and rule), ``source_file``, ``batch_id``, ``ingested_at``; plus ``stage`` (the
job that rejected the row: ``ingest``, ``clean``, ``outliers``) and ``record_key`` (the
row's record id or entity key when known). Each stage replaces its own rows of a batch, so a
rerun never duplicates them (``DeltaTables.replace_batch(..., within={"stage": stage})``).
"""

from __future__ import annotations

from collections.abc import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.tables.base import META_COLUMNS

QUARANTINE_SCHEMA = T.StructType(
    [
        T.StructField("raw_record", T.StringType(), True),
        T.StructField("reason", T.StringType(), False),
        T.StructField("stage", T.StringType(), False),
        T.StructField("record_key", T.StringType(), True),
        T.StructField("source_file", T.StringType(), True),
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("ingested_at", T.TimestampType(), True),
    ]
)
QUARANTINE_COLUMNS = [f.name for f in QUARANTINE_SCHEMA.fields]


def no_reasons() -> Column:
    """An empty ``array<string>``: the reasons of a row that nothing rejected or flagged."""
    return F.array().cast("array<string>")


def reasons(candidates: Sequence[Column]) -> Column:
    """The non-null values of ``candidates`` (string Columns, each null where its check
    passed), in order, as an ``array<string>``; empty when there are none."""
    return F.array_compact(F.array(*candidates)) if candidates else no_reasons()


def quarantine_rows(
    df: DataFrame,
    reason: Column,
    stage: str,
    record_key: Column | None = None,
    raw_record: Column | None = None,
) -> DataFrame:
    """Turns rejected rows of a typed table (bronze/silver) into quarantine rows.

    Args:
        df: rejected rows; must carry ``batch_id``, ``source_file`` and ``ingested_at``.
        reason: non-null string column saying which column and rule rejected the row.
        stage: the job that rejects (``clean``, ``outliers``...).
        record_key: identifies the row (default null).
        raw_record: the row's original form (default: JSON of every data column).

    Returns:
        A DataFrame with exactly ``QUARANTINE_COLUMNS``.
    """
    meta = set(META_COLUMNS)
    data_cols = [c for c in df.columns if c not in meta]
    raw = raw_record if raw_record is not None else F.to_json(F.struct(*data_cols))
    return df.select(
        raw.cast("string").alias("raw_record"),
        reason.cast("string").alias("reason"),
        F.lit(stage).alias("stage"),
        (record_key.cast("string") if record_key is not None else F.lit(None).cast("string")).alias(
            "record_key"
        ),
        F.col("source_file").cast("string").alias("source_file"),
        F.col("batch_id").cast("string").alias("batch_id"),
        F.col("ingested_at").cast("timestamp").alias("ingested_at"),
    )
