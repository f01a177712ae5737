"""Delta tables behind one interface, with two backends (see DESIGN.md "Delta backends").

- ``spark``: delta-spark, the standard on clusters (needs its jars and session settings);
- ``rs``: the embedded default, the log kept by delta-rs and all data work done by Spark.

Example::

    tables = open_tables(spark, cfg.delta.backend)
    tables.append(df, cfg.storage.table_path("bronze"), partition_by=["batch_id"])
"""

from __future__ import annotations

from pyspark.sql import SparkSession

from ml_engine.tables.base import (
    BATCH_COLUMN,
    BatchNotFoundError,
    Commit,
    ConcurrentWriteError,
    DeltaTables,
    TableError,
    TableNotFoundError,
    batch_predicate,
    check_unique_keys,
    conform_to_table,
    nullable_schema,
    table_location,
)
from ml_engine.tables.rs import RsDeltaTables
from ml_engine.tables.spark import (
    DELTA_SPARK_PACKAGE,
    SparkDeltaTables,
    delta_spark_available,
    delta_spark_conf,
    missing_delta_spark_error,
)

BACKENDS = ("auto", "spark", "rs")


def open_tables(spark: SparkSession, backend: str = "auto") -> DeltaTables:
    """The Delta backend to use with ``spark``.

    Args:
        spark: the session that does the data work.
        backend: ``auto`` (``spark`` when delta-spark's classes load in the JVM, else ``rs``),
            ``spark`` or ``rs`` (config key ``delta.backend``).

    Raises:
        TableError: ``spark`` was asked for but delta-spark's classes do not load (the message
            says how to add them), or the backend name is unknown.
    """
    if backend not in BACKENDS:
        raise TableError(
            f"unknown Delta backend {backend!r} (config key delta.backend); use one of {BACKENDS}"
        )
    if backend == "auto":
        backend = "spark" if delta_spark_available(spark) else "rs"
    if backend == "spark":
        if not delta_spark_available(spark):
            raise missing_delta_spark_error()
        return SparkDeltaTables(spark)
    return RsDeltaTables(spark)


__all__ = [
    "BACKENDS",
    "BATCH_COLUMN",
    "BatchNotFoundError",
    "ConcurrentWriteError",
    "DELTA_SPARK_PACKAGE",
    "Commit",
    "DeltaTables",
    "RsDeltaTables",
    "SparkDeltaTables",
    "TableError",
    "TableNotFoundError",
    "batch_predicate",
    "check_unique_keys",
    "conform_to_table",
    "delta_spark_available",
    "delta_spark_conf",
    "nullable_schema",
    "open_tables",
    "table_location",
]
