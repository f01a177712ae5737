"""The ``spark`` Delta backend: delta-spark (the Delta Lake JVM connector), the standard on
clusters. A thin layer over ``format("delta")`` and ``delta.tables.DeltaTable``.

It needs delta-spark's jars in the JVM (``--packages`` :data:`DELTA_SPARK_PACKAGE`, or the jars
on the classpath) and the session settings of :func:`delta_spark_conf`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from importlib import metadata

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from ml_engine.tables.base import (
    Commit,
    DeltaTables,
    TableError,
    TableNotFoundError,
    added_columns,
    check_replace_schema,
    check_unique_keys,
    conform_to_table,
    quote_name,
    with_columns_of,
)

DELTA_EXTENSION_CLASS = "io.delta.sql.DeltaSparkSessionExtension"
DELTA_CATALOG_CLASS = "org.apache.spark.sql.delta.catalog.DeltaCatalog"


def retention_keeping(retain_hours: int, kept: Iterable[datetime], now: datetime) -> int:
    """The hours a ``VACUUM`` must retain removed files for so that the versions committed at
    the times ``kept`` stay readable: at least ``retain_hours``, and more than the age of the
    oldest of them (a file such a version reads was removed by a later commit, so it was
    removed for less time than that version exists), rounded up, plus an hour for the clocks
    of the writers that stamped the removals."""
    ages = [math.ceil((now - t).total_seconds() / 3600) + 1 for t in kept]
    return max([int(retain_hours), *ages])


def _delta_spark_package() -> str:
    """The Maven coordinate matching the installed pyspark and delta-spark (delta-spark 4.x
    publishes one artifact per Spark minor version, e.g. ``delta-spark_4.2_2.13``)."""
    try:
        spark_version = ".".join(metadata.version("pyspark").split(".")[:2])
        delta_version = metadata.version("delta-spark")
    except metadata.PackageNotFoundError:
        spark_version, delta_version = "4.2", "4.4.1"
    return f"io.delta:delta-spark_{spark_version}_2.13:{delta_version}"


DELTA_SPARK_PACKAGE = _delta_spark_package()


def delta_spark_conf(with_package: bool = False) -> dict[str, str]:
    """Session settings the ``spark`` backend needs (add them when building the session).

    Only add them when delta-spark's jars are available (``--packages`` / classpath): the
    catalog class must load.

    Args:
        with_package: also ask Spark to fetch the jars from Maven (``spark.jars.packages``),
            for machines that can reach it.
    """
    conf = {
        "spark.sql.extensions": DELTA_EXTENSION_CLASS,
        "spark.sql.catalog.spark_catalog": DELTA_CATALOG_CLASS,
    }
    if with_package:
        conf["spark.jars.packages"] = DELTA_SPARK_PACKAGE
    return conf


def delta_classes_load(jvm) -> bool:
    """True when delta-spark's session extension class loads in ``jvm`` (a Py4J JVM view)."""
    try:
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName(DELTA_EXTENSION_CLASS, False, loader)
        return True
    except Exception:
        return False


def delta_spark_available(spark: SparkSession) -> bool:
    """True when delta-spark's session extension class loads in the session's JVM."""
    return delta_classes_load(spark._jvm)  # type: ignore[attr-defined]


def missing_delta_spark_error() -> TableError:
    return TableError(
        "the spark Delta backend needs delta-spark's jars, which this Spark session does not "
        f"have (class {DELTA_EXTENSION_CLASS} does not load). Start Spark with "
        f"'--packages {DELTA_SPARK_PACKAGE}' (or put the jars on the classpath) and the "
        "settings of ml_engine.tables.delta_spark_conf(), or use delta.backend: rs"
    )


class SparkDeltaTables(DeltaTables):
    """Delta tables through delta-spark.

    Raises:
        TableError: (constructor) delta-spark's classes do not load, or the session lacks the
            Delta extension / catalog settings.
    """

    name = "spark"

    def __init__(self, spark: SparkSession):
        super().__init__(spark)
        if not delta_spark_available(spark):
            raise missing_delta_spark_error()
        extensions = spark.conf.get("spark.sql.extensions", "") or ""
        if DELTA_EXTENSION_CLASS not in extensions:
            raise TableError(
                "delta-spark's jars are loaded but the session lacks the Delta extension; "
                f"build the session with {delta_spark_conf()}"
            )
        from delta.tables import DeltaTable

        self._delta_table = DeltaTable

    def exists(self, path: str) -> bool:
        return bool(self._delta_table.isDeltaTable(self.spark, path))

    def create(self, path: str, schema: StructType, partition_by: list[str] | None = None) -> int:
        if self.exists(path):
            raise TableError(f"cannot create Delta table {path}: a table already exists there")
        builder = self._delta_table.create(self.spark).location(path).addColumns(schema)
        if partition_by:
            builder = builder.partitionedBy(*partition_by)
        with self._commit_settings():
            builder.execute()
        return self.version(path)

    def read(
        self, path: str, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        if version is not None and timestamp is not None:
            raise TableError(f"read of Delta table {path}: give a version or a timestamp, not both")
        self._require(path)
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        elif timestamp is not None:
            reader = reader.option("timestampAsOf", _timestamp_text(timestamp))
        try:
            return reader.load(path)
        except Exception as exc:
            raise TableError(f"cannot read Delta table {path}: {_first_line(exc)}") from exc

    def append(
        self,
        df: DataFrame,
        path: str,
        partition_by: list[str] | None = None,
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> int | None:
        if (app_id is None) != (app_version is None):
            raise TableError(
                f"append to Delta table {path}: give both app_id and app_version or neither"
            )
        exists = self.exists(path)
        if exists and app_id is not None:
            done = self.transaction_version(path, app_id)
            if done is not None and done >= int(app_version):  # type: ignore[arg-type]
                return None
        if exists:
            self._check_partitioning(path, partition_by)
            df = conform_to_table(path, self.schema(path), df)
        writer = df.write.format("delta").mode("append")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if app_id is not None:
            writer = writer.option("txnAppId", app_id).option("txnVersion", int(app_version))  # type: ignore[arg-type]
        self._save(writer, path)
        return self.version(path)

    def overwrite(
        self,
        df: DataFrame,
        path: str,
        partition_by: list[str] | None = None,
        replace_where: str | None = None,
        unique_by: list[str] | None = None,
        replace_schema: bool = False,
        add_columns: bool = False,
    ) -> int:
        check_replace_schema(path, replace_where, replace_schema)
        if unique_by and replace_where is None:
            raise TableError(
                f"overwrite of Delta table {path}: unique_by {list(unique_by)} needs "
                "replace_where (an overwrite of the whole table leaves no rows elsewhere)"
            )
        if self.exists(path):
            self._check_partitioning(path, partition_by)
            if add_columns:  # Delta's mergeSchema adds them in the commit of the rows
                table_schema = self.schema(path)
                added_columns(path, table_schema, df.schema)  # refuses changed types
                df = with_columns_of(df, table_schema)
            elif not replace_schema:
                df = conform_to_table(path, self.schema(path), df)
            if unique_by:
                return self._replace_unique(
                    df, path, replace_where, list(unique_by), merge_schema=add_columns
                )
        writer = df.write.format("delta").mode("overwrite")
        if replace_schema:
            writer = writer.option("overwriteSchema", "true")
        if add_columns:
            writer = writer.option("mergeSchema", "true")
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        if replace_where is not None:
            writer = writer.option("replaceWhere", replace_where)
        self._save(writer, path)
        return self.version(path)

    def upsert(
        self, df: DataFrame, path: str, keys: list[str], partition_by: list[str] | None = None
    ) -> int:
        check_unique_keys(path, df, list(keys))
        if not self.exists(path):
            self._save(self._new_table_writer(df, partition_by), path)
            return self.version(path)
        self._check_partitioning(path, partition_by)
        df = conform_to_table(path, self.schema(path), df)
        return self._merge(df, path, list(keys), None, "upsert into")

    def _merge(
        self,
        df: DataFrame,
        path: str,
        keys: list[str],
        delete_unmatched: str | None,
        what: str,
        merge_schema: bool = False,
    ) -> int:
        """One MERGE by ``keys``: matched rows take the new row, new rows are inserted, and
        with ``delete_unmatched`` the rows matching it that no new row matched are deleted.
        ``merge_schema``: the table takes ``df``'s new columns (Delta's schema auto-merge)."""
        condition = " AND ".join(f"t.{quote_name(k)} = s.{quote_name(k)}" for k in keys)
        try:
            merge = (
                self._delta_table.forPath(self.spark, path)
                .alias("t")
                .merge(df.alias("s"), condition)
                .whenMatchedUpdateAll()
                .whenNotMatchedInsertAll()
            )
            if delete_unmatched is not None:
                merge = merge.whenNotMatchedBySourceDelete(delete_unmatched)
            with self._commit_settings(merge_schema):
                merge.execute()
        except Exception as exc:
            raise TableError(f"{what} Delta table {path} failed: {_first_line(exc)}") from exc
        return self.version(path)

    def _replace_unique(
        self,
        df: DataFrame,
        path: str,
        replace_where: str,
        unique: list[str],
        merge_schema: bool = False,
    ) -> int:
        """``replace_where`` overwrite that also removes ``df``'s ``unique`` values elsewhere,
        as one MERGE: matched rows (wherever they are) take the new row, new rows are
        inserted, and the replaced rows no new row matched are deleted."""
        outside = df.where(~F.coalesce(F.expr(replace_where), F.lit(False))).limit(1).collect()
        if outside:
            raise TableError(
                f"overwrite of Delta table {path}: a row does not match replace_where "
                f"{replace_where!r}: {outside[0].asDict()}"
            )
        what = f"overwrite where {replace_where!r} unique by {unique} of"
        return self._merge(df, path, unique, replace_where, what, merge_schema)

    def version(self, path: str) -> int:
        self._require(path)
        row = self._delta_table.forPath(self.spark, path).history(1).select("version").head()
        return int(row[0])

    def history(self, path: str) -> list[Commit]:
        self._require(path)
        rows = (
            self._delta_table.forPath(self.spark, path)
            .history()
            .select(
                "version",
                F.unix_millis("timestamp").alias("millis"),
                "operation",
                "operationParameters",
                "userMetadata",
            )
            .collect()
        )
        return [
            Commit(
                version=int(r["version"]),
                timestamp=datetime.fromtimestamp(r["millis"] / 1000, tz=timezone.utc),
                operation=r["operation"],
                parameters=dict(r["operationParameters"] or {}),
                user_metadata=r["userMetadata"],
            )
            for r in sorted(rows, key=lambda r: -r["version"])
        ]

    def transaction_version(self, path: str, app_id: str) -> int | None:
        # delta-spark has no public API for the log's txn actions; delta-rs reads them from
        # the same standard log.
        import deltalake

        self._require(path)
        return deltalake.DeltaTable(path).transaction_version(app_id)

    def compact(self, path: str, min_files: int = 2) -> int:
        self._require(path)
        table = self._delta_table.forPath(self.spark, path)
        if table.detail().head()["numFiles"] < min_files:
            return 0
        done = table.optimize().executeCompaction().select("metrics.numFilesRemoved").head()
        return int(done[0])

    def vacuum(
        self, path: str, retain_hours: int = 0, keep_versions: Sequence[int] = ()
    ) -> list[str]:
        """Delta's ``VACUUM``, which keeps no chosen version: the retention is lengthened to
        cover the oldest of ``keep_versions`` (:func:`retention_keeping`)."""
        self._require(path)
        kept = set(keep_versions)
        hours = retention_keeping(
            retain_hours,
            [c.timestamp for c in self.history(path) if c.version in kept],
            datetime.now(timezone.utc),
        )
        root = self._delta_table.forPath(self.spark, path).detail().head()["location"]
        quoted = "delta.`" + path.replace("`", "``") + "`"
        check = "spark.databricks.delta.retentionDurationCheck.enabled"
        previous = self.spark.conf.get(check, "true")
        self.spark.conf.set(check, "false")
        try:
            doomed = [
                r[0]
                for r in self.spark.sql(f"VACUUM {quoted} RETAIN {hours} HOURS DRY RUN").collect()
            ]
            self.spark.sql(f"VACUUM {quoted} RETAIN {hours} HOURS").collect()
        finally:
            self.spark.conf.set(check, previous)
        prefix = root.rstrip("/") + "/"
        return [p[len(prefix) :] if p.startswith(prefix) else p for p in doomed]

    # ------------------------------------------------------------------------------ helpers

    def _require(self, path: str) -> None:
        if not self.exists(path):
            raise TableNotFoundError(
                f"no Delta table at {path}; check the path or write the table first"
            )

    def _check_partitioning(self, path: str, partition_by: list[str] | None) -> None:
        if partition_by is None:
            return
        detail = self._delta_table.forPath(self.spark, path).detail().head()
        current = list(detail["partitionColumns"] or [])
        if list(partition_by) != current:
            raise TableError(
                f"Delta table {path} is partitioned by {current}, not {list(partition_by)}; "
                "write with the table's partitioning (or partition_by=None)"
            )

    def schema(self, path: str) -> StructType:
        return self.spark.read.format("delta").load(path).schema

    def _new_table_writer(self, df: DataFrame, partition_by: list[str] | None):
        writer = df.write.format("delta").mode("append")
        return writer.partitionBy(*partition_by) if partition_by else writer

    def _save(self, writer, path: str) -> None:
        try:
            with self._commit_settings():
                writer.save(path)
        except Exception as exc:
            raise TableError(
                f"writing Delta table {path} failed, nothing was committed: {_first_line(exc)}"
            ) from exc

    @contextlib.contextmanager
    def _commit_settings(self, merge_schema: bool = False) -> Iterator[None]:
        """Timestamps written as microseconds, the commit's ``userMetadata``, and with
        ``merge_schema`` a MERGE that adds the source's new columns."""
        settings = {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}
        if merge_schema:
            settings["spark.databricks.delta.schema.autoMerge.enabled"] = "true"
        if self.user_metadata is not None:
            settings["spark.databricks.delta.commitInfo.userMetadata"] = self.user_metadata
        previous = {key: self.spark.conf.get(key, None) for key in settings}
        for key, value in settings.items():
            self.spark.conf.set(key, value)
        try:
            yield
        finally:
            for key, value in previous.items():
                if value is None:
                    self.spark.conf.unset(key)
                else:
                    self.spark.conf.set(key, value)


def _timestamp_text(moment: datetime | str) -> str:
    """A timestamp for ``timestampAsOf``: aware datetimes in UTC with an explicit zone; naive
    ones and strings are read by Spark in the session time zone."""
    if isinstance(moment, str):
        return moment
    if moment.tzinfo is not None:
        return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


__all__ = [
    "DELTA_SPARK_PACKAGE",
    "SparkDeltaTables",
    "delta_spark_available",
    "delta_spark_conf",
    "missing_delta_spark_error",
]
