"""The ``rs`` Delta backend: delta-rs keeps the transaction log, Spark does all data work.

Reading asks delta-rs (the ``deltalake`` package) for a snapshot's data files and their
partition values and lets Spark read exactly those Parquet files: files in plain ``col=value/``
directories as one scan whose partition columns Spark takes from the directories (so that a
filter on them prunes files), any others with a scan per distinct partition value that adds the
partition columns as typed literals from the log. All in one Spark job, never one job per file.

Writing lets Spark write Parquet files into a fresh directory ``<table>/<write id>/`` (Hive-style
``col=value/`` directories below it for partitioned tables), so concurrent or failed writes never
touch each other's files. The driver then lists the written files, reads their footers (metadata
only) for size, record count and min/max/null-count statistics, and commits all added and removed
files in ONE delta-rs transaction. Until that commit nothing is visible to readers; files of a
write that failed are removed by :meth:`RsDeltaTables.vacuum`.

Overwrites with a predicate and upserts rewrite only the files that hold affected rows: one Spark
job finds those files (rows carry their file's identity through ``_metadata.file_name``), the
write job rewrites their surviving rows together with the new rows, and one commit removes the
old files and adds the new ones.

Table paths are local paths or URIs that both Spark (Hadoop file systems) and pyarrow / delta-rs
understand with the same name (e.g. ``hdfs://``); on object stores use the ``spark`` backend.

Concurrent writers. A write plans against one version v of the table, writes its files, then
commits with optimistic concurrency: the commit goes to delta-rs with ``max_commit_retries=0``,
so it lands as exactly the version after the one it was checked against, or not at all (the
log entry is created only if absent). When commits landed after v, the write first checks
whether they touched its scope, reading only the files they added:

- plain append: no scope, racing appends all land; with an app id, the write becomes a no-op
  when a commit recorded its app version (of racing idempotent appends, one commits);
- overwrite without predicate: the whole table, any commit;
- ``replace_where`` on partition columns: files added to a matching partition;
- ``replace_where`` on other columns: files added that hold a matching row;
- upsert: files added that hold one of its keys;
- every write: the files it removes must still be there; schema, partitioning, table
  properties and protocol must be unchanged; a table it was about to create must not exist.

Left alone: the write commits on top of the newer version as it is. Touched: it plans again
(re-reads the table, recomputes removed and kept rows, writes new files), at most
``max_write_attempts`` plans in all, then raises ConcurrentWriteError; the files of a superseded
plan are never committed and vacuum removes them.

delta-rs's own conflict checker (run when it retries a commit on a later version) catches two
commits removing the same file, the same app id committed twice, and metadata or protocol
changes. It cannot see two writers adding rows to the same new partition or the same new keys:
``create_write_transaction`` records no read predicate, so to it such commits are unrelated
appends, and both land; two racing ``create_table_with_add_actions`` can both commit, the
second as version 1. Hence no delta-rs retries, and the checks above for every case.

On local and mounted POSIX paths the final probe for a newer version and the commit run under
an exclusive ``flock`` of ``<table>/_ml_engine_commit.lock`` (not data to Delta readers; vacuum
keeps it): rs writers of a table commit one at a time, also where the file system's create-if-
absent is not atomic. The lock is held for milliseconds, never while Spark writes; the OS
releases it when its process dies. On URIs and on file systems without flock there is no lock:
there the exact-version commit of delta-rs alone keeps writers correct, as it does against
writers of other engines (delta-spark, plain delta-rs), which never take the lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import math
import operator
import os
import re
import time
import urllib.parse
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import reduce
from typing import Any
from zoneinfo import ZoneInfo

try:
    import fcntl
except ImportError:  # Windows: no flock, commits rely on the exact-version commit alone
    fcntl = None  # type: ignore[assignment]

import deltalake
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError
from deltalake.exceptions import TableNotFoundError as DeltaTableNotFoundError
from deltalake.transaction import (
    AddAction,
    CommitProperties,
    RemoveAction,
    Transaction,
    create_table_with_add_actions,
)
from pyspark.errors import AnalysisException
from pyspark.logger import PySparkLogger
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from ml_engine.tables.base import (
    BATCH_COLUMN,
    BatchNotFoundError,
    Commit,
    ConcurrentWriteError,
    DeltaTables,
    TableError,
    TableNotFoundError,
    added_columns,
    batch_not_found,
    check_columns,
    check_replace_schema,
    check_unique_keys,
    conform_to_table,
    nullable_schema,
    parquet_options,
    quote_name,
    table_location,
    with_columns_of,
)

# Hidden columns that carry a row's file identity during overwrite-with-predicate and upsert.
_GROUP = "__ml_engine_scan_group"
_FILE = "__ml_engine_file_name"
# Prefix of the messages of row checks raised inside Spark jobs (see _with_row_checks).
_CHECK_MARK = "ml-engine check failed: "
# commitInfo keys holding the engine's own operation name and parameters: delta-rs names every
# commit it is handed "WRITE", and its own operationParameters win over custom ones.
_OPERATION_KEY = "mlEngineOperation"
_PARAMETERS_KEY = "mlEngineParameters"
_COMMIT_ID_KEY = "mlEngineCommitId"
# Taken around the final check and the commit (files starting with "_" are not data to Delta
# readers, and vacuum keeps them).
_LOCK_FILE = "_ml_engine_commit.lock"
# flock errors of file systems that cannot lock (some FUSE and SMB mounts).
_NO_FLOCK = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}
# Checks of newer commits (that left the write's scope alone) before a write gives up.
_MAX_REBASES = 50

# Written into a private directory, so the (faster) v2 algorithm is safe: task outputs land
# there directly, and a job that fails leaves its files uncommitted for vacuum. Since
# SPARK-39195 a failed authorised task commit aborts the stage, so no duplicate files remain
# in a successful job's directory. No _SUCCESS marker: the Delta commit is the marker.
_WRITE_OPTIONS = {
    "mapreduce.fileoutputcommitter.algorithm.version": "2",
    "mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "compression": "snappy",
}
_NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"
_LISTING_THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"
_SKIP_BASE_PATH_CHECK = "spark.sql.files.ignoreInvalidPartitionPaths"
# Delta writers keep string statistics short; a prefix is still a valid lower bound.
_STRING_STATS_PREFIX = 32
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_DAY_US = 86_400_000_000

# Reader features whose tables plain Parquet reading returns correctly (deletion vectors and
# column mapping are checked per table: harmless while unused).
_READABLE_FEATURES = {
    "timestampNtz",
    "v2Checkpoint",
    "vacuumProtocolCheck",
    "deletionVectors",
    "columnMapping",
    "variantType",
    "variantType-preview",
}
_PARTITION_TYPES = (
    T.StringType,
    T.BooleanType,
    T.ByteType,
    T.ShortType,
    T.IntegerType,
    T.LongType,
    T.FloatType,
    T.DoubleType,
    T.DecimalType,
    T.DateType,
    T.TimestampType,
    T.TimestampNTZType,
)


@dataclass(frozen=True)
class _DataFile:
    """One data file of a snapshot."""

    log_path: str  # as written in the log: URI-encoded, relative to the table (usually)
    uri: str  # absolute location, decoded (a local path or a URI)
    size: int
    partition_values: tuple[Any, ...]  # typed, in partition-column order

    @property
    def name(self) -> str:
        return self.uri.rstrip("/").rsplit("/", 1)[-1]


@dataclass
class _Snapshot:
    """A loaded table version with its Spark schema and data files."""

    path: str
    table: DeltaTable
    schema: T.StructType
    partition_by: list[str]
    files: list[_DataFile]

    @property
    def data_schema(self) -> T.StructType:
        return T.StructType([f for f in self.schema.fields if f.name not in self.partition_by])

    @property
    def partition_fields(self) -> list[T.StructField]:
        by_name = {f.name: f for f in self.schema.fields}
        return [by_name[c] for c in self.partition_by]


@dataclass(frozen=True)
class _Scope:
    """What a write replaces, so what a concurrent commit must not have touched.

    ``kind``: ``none`` (a plain append), ``table`` (an overwrite without predicate: any
    commit), ``partitions`` (files added to partitions matching ``predicate``), ``rows``
    (files added holding a row matching ``predicate``), ``keys`` (files added holding one of
    the rows of ``keys``, on ``key_columns``). ``partitions`` and ``rows`` with ``keys``: an
    overwrite that also removes its ``unique_by`` values elsewhere (files added matching
    either).
    """

    kind: str
    predicate: str | None = None
    keys: DataFrame | None = None
    key_columns: list[str] | None = None

    @property
    def needs_files(self) -> bool:
        return self.kind in ("partitions", "rows", "keys")


@dataclass
class _Plan:
    """One attempt of a write: its written files, the files it removes, and the snapshot it
    was planned from (None: the table did not exist; ``create`` then gives schema and
    partitioning of the new table)."""

    base: _Snapshot | None
    adds: list[AddAction]
    removed: list[_DataFile]
    operation: str
    parameters: dict[str, str]
    scope: _Scope
    overwrite: bool = False  # remove every file of the snapshot (delta-rs mode "overwrite")
    app: tuple[str, int] | None = None
    create: tuple[T.StructType, list[str]] | None = None
    schema: T.StructType | None = None  # the table's new schema (an overwrite replacing it)

    @property
    def version(self) -> int:
        return -1 if self.base is None else self.base.table.version()


class _Conflict(Exception):
    """Commits made after a write's version touched its scope: plan again or give up."""

    def __init__(self, planned: int, first: int, last: int, why: str):
        start = "planned before the table existed" if planned < 0 else (
            f"planned at version {planned}")  # fmt: skip
        commits = f"commit of version {first}" if first == last else (
            f"commits of versions {first}..{last}")  # fmt: skip
        super().__init__(f"{start}, the {commits} {why}")


class RsDeltaTables(DeltaTables):
    """Delta tables with the log handled by delta-rs and all data work done by Spark.

    Args:
        spark: the session that reads and writes the data.

    Example::

        tables = RsDeltaTables(spark)
        tables.append(df, "/data/tables/bronze", partition_by=["batch_id"])
        bronze = tables.read("/data/tables/bronze", version=3)
    """

    name = "rs"
    #: Plans a write may make (the first and re-plans) when commits of other writers keep
    #: touching what it replaces; then it raises ConcurrentWriteError.
    max_write_attempts = 4
    #: Seconds a commit waits for another process's commit lock of the same table.
    commit_lock_timeout_s = 600.0

    # ----------------------------------------------------------------------------- log only

    def exists(self, path: str) -> bool:
        return DeltaTable.is_deltatable(table_location(path))

    def create(self, path: str, schema: T.StructType, partition_by: list[str] | None = None) -> int:
        """Creates an empty table (version 0) with ``schema``; its non-nullable columns are
        enforced on every later write.

        Raises:
            TableError: a table already exists at ``path``, a partition column is missing or
                has a type that cannot partition, or a type has no Delta equivalent.
        """
        exists = f"cannot create Delta table {path}: a table already exists there"
        if self.exists(path):
            raise TableError(exists)
        parts = list(partition_by or [])
        _check_partition_columns(path, schema, parts)
        plan = _Plan(None, [], [], "CREATE TABLE", {}, _Scope("none"), create=(schema, parts))
        try:
            return int(self._commit_plan(path, "create", plan))  # type: ignore[arg-type]
        except _Conflict as exc:
            raise TableError(f"{exists} (another writer created it meanwhile)") from exc

    def version(self, path: str) -> int:
        return self._open(path).version()

    def schema(self, path: str) -> T.StructType:
        return _spark_schema(self._open(path))

    def batches(self, path: str, version: int | None = None) -> list[str]:
        """Batch ids with data files in the table, from the log alone (no Spark job) when the
        table is partitioned by ``batch_id``."""
        table = self._open(path)
        if version is not None:
            self._load_version(table, path, version)
        found = _logged_batches(path, table)
        return super().batches(path, version=version) if found is None else found

    def log_rows(self, path: str, columns: list[str], where: dict[str, list]) -> list[dict]:
        return log_rows(path, columns, where)

    def history(self, path: str) -> list[Commit]:
        commits = []
        for info in self._open(path).history():
            # The engine's own parameters when it made the commit (delta-rs adds its internal
            # view, e.g. mode "Append" for an upsert), else whatever the writer recorded.
            parameters = dict(
                info[_PARAMETERS_KEY]
                if isinstance(info.get(_PARAMETERS_KEY), dict)
                else info.get("operationParameters") or {}
            )
            commits.append(
                Commit(
                    version=int(info["version"]),
                    timestamp=datetime.fromtimestamp(info["timestamp"] / 1000, tz=timezone.utc),
                    operation=info.get(_OPERATION_KEY) or info.get("operation", ""),
                    parameters=parameters,
                    user_metadata=info.get("userMetadata"),
                )
            )
        return commits

    def transaction_version(self, path: str, app_id: str) -> int | None:
        return self._open(path).transaction_version(app_id)

    def compact(self, path: str, min_files: int = 2) -> int:
        """delta-rs's ``optimize.compact``, under the commit lock."""
        location = table_location(path)
        try:
            if len(self._open(path).file_uris()) < min_files:
                return 0
            with _commit_lock(location, path, self.commit_lock_timeout_s):
                done = self._open(path).optimize.compact()
        except DeltaError as exc:
            raise TableError(f"compaction of Delta table {path} failed: {exc}") from exc
        return int(done["numFilesRemoved"])

    def vacuum(
        self, path: str, retain_hours: int = 0, keep_versions: Sequence[int] = ()
    ) -> list[str]:
        """delta-rs's full vacuum: the files no version of the log references count from
        their write time, the removed ones from their removal. Under the commit lock, so its
        own log entries (``VACUUM START`` and ``END``) never race a commit of this backend.

        delta-rs also names removed files an earlier vacuum already deleted (by their path in
        the log); on a local table only the files that were there are returned."""
        table, location = self._open(path), table_location(path)
        options: dict[str, Any] = {
            "retention_hours": int(retain_hours),
            "enforce_retention_duration": False,
            "full": True,
            "keep_versions": sorted(set(keep_versions)) or None,
        }
        try:
            with _commit_lock(location, path, self.commit_lock_timeout_s):
                planned = table.vacuum(dry_run=True, **options)
                if "://" not in location:
                    relative = (
                        os.path.relpath(f, location) if os.path.isabs(f) else f for f in planned
                    )
                    planned = list(
                        dict.fromkeys(
                            f for f in relative if os.path.lexists(os.path.join(location, f))
                        )
                    )
                table.vacuum(dry_run=False, **options)
        except DeltaError as exc:
            raise TableError(f"vacuum of Delta table {path} failed: {exc}") from exc
        if "://" not in location:
            _remove_empty_directories(location, planned)
        return planned

    # --------------------------------------------------------------------------------- read

    def read(
        self, path: str, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        """The table's rows (latest, or as of ``version`` / ``timestamp``), read by Spark.

        A timestamp selects the latest version committed at or before it; a string or a
        datetime without zone is taken in the session time zone.

        Raises:
            TableNotFoundError: no table at ``path``.
            TableError: both ``version`` and ``timestamp`` given, the version does not exist,
                the timestamp is before the first commit, or the table uses deletion vectors or
                column mapping (read it with the ``spark`` backend).
        """
        snapshot = self._read_snapshot(path, version, timestamp)
        return self._scan(snapshot, snapshot.files)

    def read_batch(self, path: str, batch_id: str, version: int | None = None) -> DataFrame:
        """As :meth:`DeltaTables.read_batch`; Spark plans a scan of the batch's files only."""
        snapshot = self._read_snapshot(path, version)
        existing = _snapshot_batches(snapshot)
        if existing is None:  # not partitioned by batch: the rows say
            self.require_batch(path, batch_id, version=version)
        elif batch_id not in existing:
            raise BatchNotFoundError(batch_not_found(path, batch_id, existing))
        return self._scan_batches(snapshot, [batch_id])

    def read_batches(
        self, path: str, batch_ids: list[str], version: int | None = None
    ) -> DataFrame:
        """As :meth:`DeltaTables.read_batches`; Spark plans a scan of those batches' files."""
        return self._scan_batches(self._read_snapshot(path, version), batch_ids)

    def _read_snapshot(
        self, path: str, version: int | None = None, timestamp: datetime | str | None = None
    ) -> _Snapshot:
        """The readable snapshot :meth:`read` scans (its errors are :meth:`read`'s)."""
        if version is not None and timestamp is not None:
            raise TableError(f"read of Delta table {path}: give a version or a timestamp, not both")
        table = self._open(path)
        if version is not None:
            self._load_version(table, path, version)
        elif timestamp is not None:
            self._load_timestamp(table, path, timestamp)
        snapshot = _snapshot(path, table)
        _check_readable(snapshot)
        return snapshot

    def _scan_batches(self, snapshot: _Snapshot, batch_ids: list[str]) -> DataFrame:
        """The rows of batches ``batch_ids``: when the table is partitioned by batch, a scan of
        their partitions' files alone (planning a scan of every batch's files costs the driver
        time in proportion to the number of batches)."""
        files = _batch_files(snapshot, batch_ids)
        return self._scan(snapshot, files).where(F.col(BATCH_COLUMN).isin(list(batch_ids)))

    # -------------------------------------------------------------------------------- write

    def append(
        self,
        df: DataFrame,
        path: str,
        partition_by: list[str] | None = None,
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> int | None:
        """Appends ``df`` in one commit; creates the table if missing (all columns nullable).

        Appends of different data never conflict with each other: racing appends all land.
        Of writers racing with the same ``app_id`` and ``app_version``, one commits and the
        others return None.

        Raises:
            TableError: only one of ``app_id`` / ``app_version`` given, schema or partitioning
                differ from the table's, a NOT NULL column receives a null, or the Spark job
                writing the files failed (nothing is committed then).
            ConcurrentWriteError: other writers kept creating the table or changing its schema
                while this append planned (see :attr:`max_write_attempts`).
        """
        if (app_id is None) != (app_version is None):
            raise TableError(
                f"append to Delta table {path}: give both app_id and app_version or neither"
            )
        app = (app_id, int(app_version)) if app_id is not None else None  # type: ignore[arg-type]
        parameters = {"mode": "Append"}

        def plan(table: DeltaTable | None) -> _Plan | None:
            if table is None:
                return self._plan_create(df, path, partition_by, "WRITE", parameters, app=app)
            if _app_done(table, app):
                return None
            snapshot = _snapshot(path, table, with_files=False)
            _check_writable(snapshot, partition_by)
            data = _with_row_checks(conform_to_table(path, snapshot.schema, df), snapshot)
            adds = self._write_files(data, snapshot)
            return _Plan(snapshot, adds, [], "WRITE", parameters, _Scope("none"), app=app)

        return self._write(path, "append", plan)

    def append_rows(
        self, rows: list[tuple], schema: T.StructType, path: str, app_id: str, app_version: int
    ) -> int | None:
        """:meth:`DeltaTables.append_rows` with the file written by pyarrow: no Spark job.

        Raises:
            TableError: a row holds a null in a NOT NULL column of ``schema``, or ``schema``
                does not fit the table's columns (see ``conform_to_table``).
        """
        for row in rows:
            for field, value in zip(schema.fields, row, strict=True):
                if value is None and not field.nullable:
                    raise TableError(
                        f"append to Delta table {path}: column {field.name} is NOT NULL and "
                        f"a row holds null: {row}"
                    )
        arrow_schema = to_arrow_schema(nullable_schema(schema), timezone="UTC")
        named = [dict(zip(schema.names, r, strict=True)) for r in rows]
        data = pa.Table.from_pylist(named, arrow_schema)
        app = (app_id, int(app_version))
        parameters = {"mode": "Append"}

        def plan(table: DeltaTable | None) -> _Plan | None:
            if table is not None and _app_done(table, app):
                return None
            if table is None:
                snapshot = _Snapshot(path, None, nullable_schema(schema), [], [])  # type: ignore[arg-type]
            else:
                snapshot = _snapshot(path, table, with_files=False)
                _check_writable(snapshot, None)
                check_columns(path, snapshot.schema, schema)
            write_id = _new_write_id()
            target = _join(table_location(path), write_id)
            fs, base = _filesystem(target)
            fs.create_dir(base)
            in_table_order = data.select(snapshot.schema.names)
            pq.write_table(in_table_order, f"{base}/part-00000.snappy.parquet", filesystem=fs)
            adds = _add_actions(snapshot, target, write_id)
            create = (snapshot.schema, []) if table is None else None
            base_snapshot = None if table is None else snapshot
            return _Plan(base_snapshot, adds, [], "WRITE", parameters, _Scope("none"), app=app,
                         create=create)  # fmt: skip

        return self._write(path, "append", plan)

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
        """Replaces all rows, or with ``replace_where`` the rows matching it, by ``df``.

        With a predicate on partition columns only, whole partitions are replaced. Otherwise
        the files holding matching rows are rewritten without them. Rows for which the
        predicate is NULL do not match. With ``unique_by`` (and a predicate), the files
        outside the replaced rows that hold one of ``df``'s non-null ``unique_by`` values are
        rewritten without those rows, in the same commit. When another writer commits rows in
        that scope (any commit, without a predicate) while this write runs, it is planned
        again on the new version, so its rows replace theirs. With ``replace_schema`` (no
        predicate) the commit also sets the table's schema to ``df``'s (columns nullable).
        With ``add_columns``, ``df``'s columns the table lacks are first added to the table by
        a commit of their own (delta-rs cannot change the schema in a commit that removes
        files): should the write then fail, the table has the new columns, null in every
        row, and the rows of the version before.

        Raises:
            TableError: the predicate does not resolve against the table's columns, a row of
                ``df`` does not match it, schema (without ``replace_schema``) or partitioning
                differ from the table's, the
                table uses deletion vectors or column mapping, or the Spark job failed (nothing
                is committed then).
            ConcurrentWriteError: every plan (:attr:`max_write_attempts`) was overtaken by a
                commit in its scope; nothing was committed.
        """
        check_replace_schema(path, replace_where, replace_schema)
        if add_columns:
            self._add_columns(path, df.schema)
        parameters = {"mode": "Overwrite"}
        if replace_where is not None:
            parameters["predicate"] = replace_where
        unique = _unique_columns(path, df, replace_where, unique_by)
        if unique:
            parameters["uniqueBy"] = json.dumps(unique)

        def plan(table: DeltaTable | None) -> _Plan:
            if table is None:
                return self._plan_create(
                    df, path, partition_by, "WRITE", parameters, predicate=replace_where
                )
            snapshot = _snapshot(path, table, with_files=replace_where is not None)
            _check_writable(snapshot, partition_by)
            if replace_schema:
                schema, adds = self._write_in_own_schema(df, path, table, snapshot.partition_by)
                return _Plan(snapshot, adds, [], "WRITE", parameters, _Scope("table"),
                             overwrite=True, schema=schema)  # fmt: skip
            source = with_columns_of(df, snapshot.schema) if add_columns else df
            rows = conform_to_table(path, snapshot.schema, source)
            if replace_where is None:
                adds = self._write_files(_with_row_checks(rows, snapshot), snapshot)
                return _Plan(
                    snapshot, adds, [], "WRITE", parameters, _Scope("table"), overwrite=True
                )

            # Equality terms on partition columns resolve by construction: no check needed.
            on_partitions = _partition_equalities(snapshot, replace_where) is not None
            if not on_partitions:
                _check_predicate(self.spark, path, snapshot.schema, replace_where)
            _check_readable(snapshot)
            new_rows = _with_row_checks(rows, snapshot, predicate=replace_where)
            matches = F.coalesce(F.expr(replace_where), F.lit(False))
            if on_partitions or _only_partition_columns(self.spark, snapshot, replace_where):
                removed = self._files_in_matching_partitions(snapshot, replace_where)
                data = new_rows
                scope = _Scope("partitions", predicate=replace_where)
            else:
                # Only files of the partitions the predicate names can hold its rows.
                terms = _partition_terms(snapshot, replace_where)
                candidates = (
                    snapshot
                    if terms is None
                    else dataclasses.replace(
                        snapshot, files=_in_partitions(snapshot.files, terms[0])
                    )
                )
                removed = self._files_with_rows(
                    candidates, lambda rows: rows.where(matches), f"rows matching {replace_where!r}"
                )
                kept = self._scan(snapshot, removed).where(~matches)
                data = new_rows.unionByName(kept)
                scope = _Scope("rows", predicate=replace_where)
            if unique:
                keys = _non_null_keys(rows, unique)
                outside = [f for f in snapshot.files if f not in removed]
                holding = self._files_with_rows(
                    dataclasses.replace(snapshot, files=outside),
                    lambda scanned: scanned.join(keys, on=unique, how="left_semi"),
                    f"values of {unique} written elsewhere",
                )
                data = data.unionByName(
                    self._scan(snapshot, holding).join(keys, on=unique, how="left_anti")
                )
                removed = [*removed, *holding]
                scope = dataclasses.replace(scope, keys=keys, key_columns=unique)
            adds = self._write_files(data, snapshot)
            return _Plan(snapshot, adds, removed, "WRITE", parameters, scope)

        what = "overwrite" if replace_where is None else f"overwrite where {replace_where!r}"
        return int(self._write(path, what, plan))  # type: ignore[arg-type]

    def upsert(
        self, df: DataFrame, path: str, keys: list[str], partition_by: list[str] | None = None
    ) -> int:
        """Merges ``df`` by ``keys`` in one commit: rows with a matching key are replaced,
        the others inserted. Null keys never match. Only files holding matched keys are
        rewritten. ``df`` is evaluated several times (checks, matching, writing, and again
        when a concurrent commit of one of its keys makes it plan anew): cache it when it is
        expensive to compute.

        Raises:
            TableError: ``df`` is not unique on ``keys`` or lacks one, schema or partitioning
                differ from the table's, the table uses deletion vectors or column mapping, or
                the Spark job failed (nothing is committed then).
            ConcurrentWriteError: every plan (:attr:`max_write_attempts`) was overtaken by a
                commit of rows with its keys; nothing was committed.
        """
        keys = list(keys)
        check_unique_keys(path, df, keys)
        parameters = {"keys": json.dumps(keys)}

        def plan(table: DeltaTable | None) -> _Plan:
            if table is None:
                return self._plan_create(df, path, partition_by, "MERGE", parameters)
            snapshot = _snapshot(path, table)
            _check_writable(snapshot, partition_by)
            _check_readable(snapshot)
            rows = conform_to_table(path, snapshot.schema, df)
            incoming_keys = rows.select(*keys)
            removed = self._files_with_rows(
                snapshot,
                lambda scanned: scanned.join(incoming_keys, on=keys, how="left_semi"),
                f"keys {keys} to upsert",
            )
            kept = self._scan(snapshot, removed).join(incoming_keys, on=keys, how="left_anti")
            data = _with_row_checks(rows, snapshot).unionByName(kept)
            adds = self._write_files(data, snapshot)
            scope = _Scope("keys", keys=incoming_keys, key_columns=keys)
            return _Plan(snapshot, adds, removed, "MERGE", parameters, scope)

        return int(self._write(path, f"upsert by keys {keys}", plan))  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------ helpers

    def _add_columns(self, path: str, data_schema: T.StructType) -> None:
        """Adds the columns of ``data_schema`` the table lacks (if it exists) in one commit
        that changes no row, under the commit lock; refuses differently typed columns."""
        table = self._open_or_none(path)
        if table is None or not added_columns(path, _spark_schema(table), data_schema):
            return
        with _commit_lock(table_location(path), path, self.commit_lock_timeout_s):
            table = self._open(path)
            new = added_columns(path, _spark_schema(table), data_schema)
            if not new:
                return  # another writer added them meanwhile
            metadata: dict[str, Any] = {
                _OPERATION_KEY: "ADD COLUMNS",
                _PARAMETERS_KEY: {"columns": json.dumps([f.name for f in new])},
            }
            if self.user_metadata is not None:
                metadata["userMetadata"] = self.user_metadata
            try:
                table.alter.add_columns(
                    list(_delta_schema(path, T.StructType(new)).fields),
                    commit_properties=CommitProperties(custom_metadata=metadata),
                )
            except DeltaError as exc:
                raise TableError(
                    f"adding columns {[f.name for f in new]} to Delta table {path} failed, "
                    f"nothing was written: {_first_line(exc)}"
                ) from exc

    def _open(self, path: str) -> DeltaTable:
        location = table_location(path)
        try:
            return DeltaTable(location)
        except DeltaTableNotFoundError as exc:
            raise TableNotFoundError(
                f"no Delta table at {path} (no _delta_log with a commit in {location}); "
                "check the path or write the table first"
            ) from exc
        except DeltaError as exc:
            raise TableError(f"cannot open Delta table {path}: {exc}") from exc

    def _open_or_none(self, path: str) -> DeltaTable | None:
        return self._open(path) if self.exists(path) else None

    def _load_version(self, table: DeltaTable, path: str, version: int) -> None:
        latest = table.version()
        if version < 0 or version > latest:
            raise TableError(
                f"Delta table {path} has no version {version} (versions 0..{latest} were "
                "committed; vacuumed or cleaned-up versions may be unreadable)"
            )
        try:
            table.load_as_version(int(version))
        except DeltaError as exc:
            raise TableError(f"cannot load version {version} of Delta table {path}: {exc}") from exc

    def _load_timestamp(self, table: DeltaTable, path: str, timestamp: datetime | str) -> None:
        moment = _as_aware(timestamp, self.spark.conf.get("spark.sql.session.timeZone") or "UTC")
        first = min(info["timestamp"] for info in table.history())
        moment_ms = (moment - _EPOCH) / timedelta(milliseconds=1)
        if moment_ms < first:
            first_at = datetime.fromtimestamp(first / 1000, tz=timezone.utc)
            raise TableError(
                f"Delta table {path} has no version at {moment.isoformat()}: its first commit "
                f"is at {first_at.isoformat()}"
            )
        try:
            table.load_as_version(moment)
        except DeltaError as exc:
            raise TableError(
                f"cannot load Delta table {path} as of {moment.isoformat()}: {exc}"
            ) from exc

    def _scan(
        self, snapshot: _Snapshot, files: list[_DataFile], with_file_ids: bool = False
    ) -> DataFrame:
        """Spark reads ``files``, with the partition columns of the table (see
        :func:`_plan_scans`): one DataFrame, read in one Spark job whatever the number of
        files. With ``with_file_ids`` every row also carries ``_GROUP`` (its scan) and
        ``_FILE`` (its file's name), which with its partition values identify its file: see
        :meth:`_files_with_rows`.
        """
        return self._read_scans(
            snapshot, _plan_scans(snapshot, files, with_file_ids), with_file_ids
        )

    def _read_scans(
        self, snapshot: _Snapshot, scans: list[tuple[bool, list[_DataFile]]], with_file_ids: bool
    ) -> DataFrame:
        """The union of ``scans``: (plain, files) pairs from :func:`_plan_scans`."""
        extra = [T.StructField(_GROUP, T.IntegerType()), T.StructField(_FILE, T.StringType())]
        schema = nullable_schema(snapshot.schema)
        # An empty branch with every column nullable: the union's columns are then nullable
        # like Parquet columns, whatever literals the partition columns are (the optimizer
        # drops the branch, and still prunes branches whose partition values a filter rules out).
        frame_schema = T.StructType(schema.fields + (extra if with_file_ids else []))
        if not scans:  # a frame of its own: one a caller joins with another read of the table
            return _new_empty(self.spark, frame_schema)
        location = table_location(snapshot.path)
        # The files are known: Spark only checks them, on the driver, instead of running a
        # listing job for every scan of more than 32 files. Files of several writes sit in
        # several <write id>/ directories below the table: to Spark's partition discovery
        # these are base paths of their own, which it refuses unless told to skip that check
        # (it still reads each file's partition values from its own directories).
        conf = {_LISTING_THRESHOLD: str(2**31 - 1), _SKIP_BASE_PATH_CHECK: "true"}
        with _runtime_conf(self.spark, conf):
            reads = [
                self.spark.read.schema(schema if plain else snapshot.data_schema)
                .options(**({"basePath": _spark_uri(location)} if plain else {}))
                .parquet(*[_spark_uri(f.uri) for f in files])
                for plain, files in scans
            ]
        parts = []
        for group_id, ((plain, files), scan) in enumerate(zip(scans, reads, strict=True)):
            values = (
                {}
                if plain
                else dict(zip(snapshot.partition_by, files[0].partition_values, strict=True))
            )
            columns = [
                _typed_literal(values[f.name], f.dataType).alias(f.name)
                if f.name in values
                else scan[quote_name(f.name)]
                for f in snapshot.schema.fields
            ]
            if with_file_ids:
                columns += [
                    F.lit(group_id).alias(_GROUP),
                    scan.metadataColumn("_metadata").getField("file_name").alias(_FILE),
                ]
            parts.append(scan.select(*columns))
        return reduce(DataFrame.union, [*parts, _empty(self.spark, frame_schema)])

    def _files_with_rows(self, snapshot: _Snapshot, select_rows, what: str) -> list[_DataFile]:
        """The snapshot's files holding at least one row that ``select_rows`` keeps.

        One Spark job; collects one (scan, file name, partition values) row per such file.
        """
        scans = _plan_scans(snapshot, snapshot.files, with_file_ids=True)
        by_id = {
            (g, f.name, f.partition_values if plain else None): f
            for g, (plain, group) in enumerate(scans)
            for f in group
        }
        rows = self._read_scans(snapshot, scans, with_file_ids=True)
        partition_columns = [quote_name(c) for c in snapshot.partition_by]
        with _job_description(self.spark, f"ml-engine: find files of {snapshot.path} with {what}"):
            hits = select_rows(rows).select(_GROUP, _FILE, *partition_columns).distinct().collect()
        found = []
        for hit in hits:
            plain = scans[hit[_GROUP]][0]
            values = tuple(hit[c] for c in snapshot.partition_by) if plain else None
            found.append(by_id[(hit[_GROUP], hit[_FILE], values)])
        return found

    def _files_in_matching_partitions(self, snapshot: _Snapshot, predicate: str) -> list[_DataFile]:
        """The files whose partition values match ``predicate`` (partition columns only).

        The predicate is evaluated by Spark on the distinct partition values (a small local
        relation), so it has Spark SQL semantics exactly like the check on the new rows; a
        predicate of ``column = literal`` terms (:func:`_partition_equalities`, what
        ``replace_batch`` writes) is matched here instead, with the same result and no job.
        """
        equalities = _partition_equalities(snapshot, predicate)
        if equalities is not None:
            return _in_partitions(snapshot.files, equalities)
        distinct = sorted({f.partition_values for f in snapshot.files}, key=repr)
        if not distinct:
            return []
        index = "__ml_engine_partition_index"
        fields = [T.StructField(index, T.IntegerType(), False)] + [
            T.StructField(f.name, f.dataType, True) for f in snapshot.partition_fields
        ]
        values = self.spark.createDataFrame(
            [(i, *_python_partition_values(v)) for i, v in enumerate(distinct)],
            T.StructType(fields),
        )
        with _job_description(self.spark, f"ml-engine: partitions of {snapshot.path} to replace"):
            hits = values.where(F.coalesce(F.expr(predicate), F.lit(False))).select(index).collect()
        matched = {distinct[row[index]] for row in hits}
        return [f for f in snapshot.files if f.partition_values in matched]

    def _plan_create(
        self,
        df: DataFrame,
        path: str,
        partition_by: list[str] | None,
        operation: str,
        parameters: dict[str, str],
        predicate: str | None = None,
        app: tuple[str, int] | None = None,
    ) -> _Plan:
        """Writes ``df`` as the first version of a new table."""
        parts = list(partition_by or [])
        schema, adds = self._write_in_own_schema(df, path, None, parts, predicate)
        return _Plan(
            None, adds, [], operation, parameters, _Scope("none"), app=app, create=(schema, parts)
        )

    def _write_in_own_schema(
        self,
        df: DataFrame,
        path: str,
        table: DeltaTable | None,
        parts: list[str],
        predicate: str | None = None,
    ) -> tuple[T.StructType, list[AddAction]]:
        """Writes ``df``'s files for a table that takes ``df``'s schema (columns nullable, as
        Delta does for tables created by writing a DataFrame): a new table, or ``table``
        replaced whole with its partitioning kept. Returns the schema and the add actions."""
        schema = nullable_schema(df.schema)
        _check_partition_columns(path, schema, parts)
        _delta_schema(path, schema)  # unsupported types fail before any Spark job
        if predicate is not None:
            _check_predicate(self.spark, path, schema, predicate)
        snapshot = _Snapshot(path, table, schema, parts, [])  # type: ignore[arg-type]
        data = _with_row_checks(df.select(*[F.col(quote_name(n)) for n in schema.names]),
                                snapshot, predicate=predicate)  # fmt: skip
        return schema, self._write_files(data, snapshot)

    def _write_files(self, df: DataFrame, snapshot: _Snapshot) -> list[AddAction]:
        """Spark writes ``df`` (table columns, in order) as Parquet into a new directory of the
        table; returns one add action per non-empty file, with partition values and stats."""
        location = table_location(snapshot.path)
        write_id = _new_write_id()
        target = _join(location, write_id)
        fields = {f.name: f for f in snapshot.schema.fields}
        out = df.select(
            *[
                _partition_string(c, fields[c].dataType).alias(c)
                if c in snapshot.partition_by
                else F.col(quote_name(c))
                for c in snapshot.schema.names
            ]
        )
        writer = (
            out.write.mode("errorifexists")
            .options(**_WRITE_OPTIONS)
            .options(**parquet_options(out.schema))
        )
        if snapshot.partition_by:
            writer = writer.partitionBy(*snapshot.partition_by)
        description = f"ml-engine: write Parquet files of Delta table {snapshot.path}"
        try:
            with (
                _job_description(self.spark, description),
                _runtime_conf(
                    self.spark, {"spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS"}
                ),
            ):
                writer.parquet(_spark_uri(target))
        except Exception as exc:  # the Spark job failed: nothing is committed
            raise _write_error(snapshot, exc) from exc
        return _add_actions(snapshot, target, write_id)

    # -------------------------------------------------------------------------- concurrency

    def _write(
        self, path: str, what: str, plan_once: Callable[[DeltaTable | None], _Plan | None]
    ) -> int | None:
        """Plans, writes and commits one write; plans it anew on the latest version when
        commits made meanwhile touched its scope (see the module docstring).

        Args:
            path: the table.
            what: the write as errors name it, e.g. ``upsert by keys ['id']``.
            plan_once: given the latest table (None: there is none yet), checks, writes the
                files and returns what to commit, or None when there is nothing to do (an
                idempotent append already recorded).

        Returns:
            The committed version, or None when nothing was committed (see ``plan_once``).

        Raises:
            ConcurrentWriteError: each of :attr:`max_write_attempts` plans was overtaken.
        """
        conflicts: list[_Conflict] = []
        for _ in range(max(1, self.max_write_attempts)):
            plan = plan_once(self._open_or_none(path))
            if plan is None:
                return None
            try:
                return self._commit_plan(path, what, plan)
            except _Conflict as conflict:
                conflicts.append(conflict)
        attempts = "; ".join(f"attempt {i}: {c}" for i, c in enumerate(conflicts, 1))
        raise ConcurrentWriteError(
            f"{what} of Delta table {path} was not committed: other writers committed to what "
            f"it replaces while it ran, {len(conflicts)} time(s) in a row ({attempts}). Nothing "
            "of it is in the table (vacuum removes its files). Rerun it once the other writers "
            "have finished, and let one job at a time write the same batch or keys"
        )

    def _commit_plan(self, path: str, what: str, plan: _Plan) -> int | None:
        """Commits ``plan`` as the version right after the latest one, once the commits made
        after the version it was planned from are known not to touch its scope.

        The commit goes through delta-rs with no retries, so it lands exactly as the version
        after the one checked, or not at all; under the table's commit lock (POSIX paths).

        Returns:
            The committed version, or None when a commit made meanwhile recorded the plan's
            app version (the idempotent append was done by another writer).

        Raises:
            _Conflict: a commit made after the plan's version touched its scope.
            ConcurrentWriteError: the table changed on every one of ``_MAX_REBASES`` checks.
            TableError: the commit failed for another reason, or the lock timed out.
        """
        location = table_location(path)
        checked = plan.base
        for _ in range(_MAX_REBASES):
            version = -1 if checked is None else checked.table.version()
            if _version_taken(location, version):
                latest = self._open(path)
                if _app_done(latest, plan.app):
                    return None
                newer = _snapshot(path, latest, with_files=plan.scope.needs_files)
                why = self._conflict(plan, checked, newer)
                if why is not None:
                    raise _Conflict(plan.version, version + 1, latest.version(), why)
                checked = newer  # nothing of ours changed: commit on top of it
                continue
            with _commit_lock(location, path, self.commit_lock_timeout_s):
                if _version_taken(location, version):
                    continue  # committed by a writer that held the lock before us
                commit_id = uuid.uuid4().hex
                try:
                    self._commit_at(path, plan, checked, commit_id)
                except DeltaError as exc:
                    if not _version_taken(location, version):
                        raise TableError(
                            f"commit of {what} to Delta table {path} failed, nothing was "
                            f"committed: {_first_line(exc)}"
                        ) from exc
                    if _commit_id(location, version + 1) != commit_id:
                        continue  # another writer took the version: check what it did
                    # else the storage reported a failure but the commit landed
            committed = version + 1
            if plan.removed:
                _check_removed(path, DeltaTable(location, version=committed), plan.removed)
            return committed
        raise ConcurrentWriteError(
            f"{what} of Delta table {path} was not committed: other writers committed "
            f"{_MAX_REBASES} times while it checked their commits. Nothing of it is in the "
            "table (vacuum removes its files); rerun it when fewer writers are active"
        )

    def _conflict(self, plan: _Plan, checked: _Snapshot | None, newer: _Snapshot) -> str | None:
        """How the commits between ``checked`` and ``newer`` touched the scope of ``plan``, or
        None when they left it alone. Reads only files added by those commits."""
        if checked is None:
            return "created the table"
        if _table_identity(checked.table) != _table_identity(newer.table):
            return "changed the table's schema, partitioning, properties or protocol"
        scope = plan.scope
        if scope.kind == "none":
            return None
        if scope.kind == "table":
            return "changed the table it overwrites"
        present = {_file_key(f) for f in newer.files}
        gone = [f for f in plan.removed if _file_key(f) not in present]
        if gone:
            return f"removed or rewrote {len(gone)} of the files it replaces"
        before = {_file_key(f) for f in checked.files}
        added = [f for f in newer.files if _file_key(f) not in before]
        if not added:
            return None
        probe = dataclasses.replace(newer, files=added)
        if scope.kind == "partitions":
            if self._files_in_matching_partitions(probe, scope.predicate):  # type: ignore[arg-type]
                return f"added rows to the partitions matching {scope.predicate!r}"
        elif scope.kind == "rows":
            matches = F.coalesce(F.expr(scope.predicate), F.lit(False))  # type: ignore[arg-type]
            what = f"rows matching {scope.predicate!r} added concurrently"
            if self._files_with_rows(probe, lambda rows: rows.where(matches), what):
                return f"added rows matching {scope.predicate!r}"
        if scope.keys is not None:
            keys, columns = scope.keys, scope.key_columns
            found = self._files_with_rows(
                probe,
                lambda rows: rows.join(keys, on=columns, how="left_semi"),  # type: ignore[arg-type]
                f"keys {columns} added concurrently",
            )
            if found:
                return f"added rows with keys {columns} it upserts"
        return None

    def _commit_at(self, path: str, plan: _Plan, checked: _Snapshot | None, commit_id: str) -> None:
        """Commits ``plan`` as the version after ``checked`` (version 0 when None); delta-rs
        fails, never retries on a later version, when that version exists already."""
        location = table_location(path)
        if checked is None:
            schema, parts = plan.create  # type: ignore[misc]
            create_table_with_add_actions(
                location,
                _delta_schema(path, schema),
                plan.adds,
                mode="error",
                partition_by=parts or None,
                commit_properties=_commit_properties(plan, parts, commit_id, self.user_metadata),
            )
            return
        now_ms = int(time.time() * 1000)
        removes = [
            RemoveAction(
                path=urllib.parse.unquote(f.log_path),  # delta-rs encodes it again
                data_change=True,
                deletion_timestamp=now_ms,
                size=f.size,
                partition_values={
                    field.name: _partition_text(value, field.dataType)
                    for field, value in zip(
                        checked.partition_fields, f.partition_values, strict=True
                    )
                },
            )
            for f in plan.removed
        ]
        # "overwrite" makes delta-rs remove every file of ``checked``: the plan's table scope
        # guarantees these are the files it planned against.
        checked.table.create_write_transaction(
            [*removes, *plan.adds],
            mode="overwrite" if plan.overwrite else "append",
            schema=checked.table.schema()
            if plan.schema is None
            else _delta_schema(path, plan.schema),
            partition_by=checked.partition_by or None,
            commit_properties=_commit_properties(
                plan, checked.partition_by, commit_id, self.user_metadata
            ),
        )


# ---------------------------------------------------------------------------------- locations


def _unique_columns(
    path: str, df: DataFrame, replace_where: str | None, unique_by: list[str] | None
) -> list[str]:
    """The checked ``unique_by`` columns of an overwrite (empty: none)."""
    unique = list(unique_by or [])
    if not unique:
        return []
    if replace_where is None:
        raise TableError(
            f"overwrite of Delta table {path}: unique_by {unique} needs replace_where (an "
            "overwrite of the whole table leaves no rows elsewhere)"
        )
    absent = [c for c in unique if c not in df.columns]
    if absent:
        raise TableError(
            f"overwrite of Delta table {path}: unique_by columns {absent} are not in the data "
            f"(columns: {df.columns})"
        )
    return unique


def _non_null_keys(rows: DataFrame, columns: list[str]) -> DataFrame:
    """The distinct ``columns`` values of ``rows`` with no null (a null never matches)."""
    present = reduce(operator.and_, [F.col(c).isNotNull() for c in columns])
    return rows.select(*columns).where(present).distinct()


def _spark_uri(location: str) -> str:
    """The same location for Spark. Local paths get an explicit ``file://`` so that a default
    file system other than the local one (HDFS on a cluster) is never assumed."""
    return "file://" + location if location.startswith("/") else location


def _new_write_id() -> str:
    """The directory, unique to one write, that its files go into."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:16]}"


def _join(location: str, relative: str) -> str:
    return location.rstrip("/") + "/" + relative


def _file_location(location: str, log_path: str) -> str:
    """Absolute, decoded location of a file from its (URI-encoded) path in the log of the
    table at ``location``."""
    if log_path.startswith("file:"):
        return table_location(log_path)  # decodes
    if "://" in log_path:  # an absolute URI (shallow clones)
        return urllib.parse.unquote(log_path)
    return _join(location, urllib.parse.unquote(log_path))


def _filesystem(location: str) -> tuple[pafs.FileSystem, str]:
    if location.startswith("/"):
        return pafs.LocalFileSystem(), location
    return pafs.FileSystem.from_uri(location)


# ------------------------------------------------------------------------------------ schemas


def _spark_schema(table: DeltaTable) -> T.StructType:
    """The Delta schema as a Spark StructType (Delta stores schemas in Spark's JSON form)."""
    return T.StructType.fromJson(json.loads(table.schema().to_json()))


def _delta_schema(path: str, schema: T.StructType) -> deltalake.Schema:
    try:
        return deltalake.Schema.from_json(schema.json())
    except Exception as exc:
        unsupported = [
            f.name
            for f in schema.fields
            if isinstance(f.dataType, T.UserDefinedType)
            or f.dataType.typeName() in ("variant", "null", "calendarinterval")
        ]
        hint = (
            f" Columns {unsupported} have no Delta type; convert ML vectors with "
            "pyspark.ml.functions.vector_to_array."
            if unsupported
            else ""
        )
        raise TableError(
            f"the schema of Delta table {path} cannot be stored in Delta: {exc}.{hint}"
        ) from exc


def _check_partition_columns(path: str, schema: T.StructType, partition_by: list[str]) -> None:
    fields = {f.name: f for f in schema.fields}
    missing = [c for c in partition_by if c not in fields]
    if missing:
        raise TableError(
            f"Delta table {path}: partition columns {missing} are not columns of the data "
            f"({schema.names})"
        )
    bad = [
        f"{c} ({fields[c].dataType.simpleString()})"
        for c in partition_by
        if not isinstance(fields[c].dataType, _PARTITION_TYPES)
    ]
    if bad:
        raise TableError(
            f"Delta table {path}: cannot partition by {bad}; partition by string, integer, "
            "boolean, decimal, date or timestamp columns"
        )
    if len(set(partition_by)) != len(partition_by) or len(partition_by) == len(schema.fields):
        raise TableError(
            f"Delta table {path}: partition columns {partition_by} must be distinct and leave "
            "at least one data column"
        )


def _check_predicate(spark: SparkSession, path: str, schema: T.StructType, predicate: str) -> None:
    """Analyses ``predicate`` against the table's columns (no Spark job)."""
    try:
        _empty(spark, schema).where(predicate).schema  # noqa: B018
    except Exception as exc:
        raise TableError(
            f"replace_where predicate {predicate!r} is not a valid SQL predicate over the "
            f"columns of Delta table {path} ({schema.names}): {_first_line(exc)}"
        ) from exc


def _only_partition_columns(spark: SparkSession, snapshot: _Snapshot, predicate: str) -> bool:
    """True when ``predicate`` resolves against the partition columns alone."""
    if not snapshot.partition_by:
        return False
    only_partitions = T.StructType([f for f in snapshot.schema.fields
                                    if f.name in snapshot.partition_by])  # fmt: skip
    try:
        with _quiet_analysis_errors():
            _empty(spark, only_partitions).where(predicate).schema  # noqa: B018
    except AnalysisException:
        return False
    return True


@contextlib.contextmanager
def _quiet_analysis_errors() -> Iterator[None]:
    """Silences PySpark's ERROR log of analysis exceptions for a block that expects them."""
    # PySpark's own logger class: a plain logging.Logger registered under these names would
    # break PySpark's later calls with extra keyword arguments.
    names = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")
    loggers = [PySparkLogger.getLogger(name) for name in names]
    previous = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, previous, strict=True):
            logger.disabled = disabled


# ---------------------------------------------------------------------------- table features


def _snapshot(path: str, table: DeltaTable, with_files: bool = True) -> _Snapshot:
    schema = _spark_schema(table)
    partition_by = list(table.metadata().partition_columns)
    files = []
    if with_files:
        location = table_location(path)
        actions = pa.table(table.get_add_actions(flatten=True))
        wanted = {"path", "size_bytes", *(f"partition.{c}" for c in partition_by)}
        names = set(actions.column_names) & wanted
        columns = {name: actions.column(name).to_pylist() for name in names}
        for i, log_path in enumerate(columns.get("path", [])):
            values = tuple(
                columns[f"partition.{c}"][i] if f"partition.{c}" in names else None
                for c in partition_by
            )
            files.append(
                _DataFile(
                    log_path=log_path,
                    uri=_file_location(location, log_path),
                    size=int(columns["size_bytes"][i]),
                    partition_values=values,
                )
            )
    return _Snapshot(path, table, schema, partition_by, files)


def _logged_batches(path: str, table: DeltaTable) -> list[str] | None:
    """Batch ids of the table's data files, or None when it is not partitioned by batch."""
    return _snapshot_batches(_snapshot(path, table))


def _snapshot_batches(snapshot: _Snapshot) -> list[str] | None:
    """Batch ids of the snapshot's data files, or None when it is not partitioned by batch."""
    if BATCH_COLUMN not in snapshot.partition_by:
        return None
    i = snapshot.partition_by.index(BATCH_COLUMN)
    values = {f.partition_values[i] for f in snapshot.files}
    return sorted(str(v) for v in values if v is not None)


def logged_batches(path: str) -> list[str] | None:
    """Batch ids of the Delta table at ``path`` read from its log alone (no Spark needed).

    Returns:
        The sorted batch ids, or None when there is no table or it is not partitioned by
        ``batch_id``.
    """
    try:
        table = DeltaTable(table_location(path))
    except (DeltaTableNotFoundError, DeltaError):
        return None
    return _logged_batches(path, table)


def log_rows(path: str, columns: list[str], where: dict[str, list]) -> list[dict]:
    """:meth:`DeltaTables.log_rows` read by delta-rs and pyarrow (no Spark needed)."""
    try:
        table = DeltaTable(table_location(path))
    except (DeltaTableNotFoundError, DeltaError):
        return []
    kept = reduce(operator.and_, [pads.field(c).isin(values) for c, values in where.items()])
    return table.to_pyarrow_dataset().to_table(columns=columns, filter=kept).to_pylist()


def logged_schema(path: str) -> T.StructType | None:
    """The latest schema of the Delta table at ``path`` from its log (no Spark needed); None
    when there is no table."""
    try:
        return _spark_schema(DeltaTable(table_location(path)))
    except (DeltaTableNotFoundError, DeltaError):
        return None


def _check_readable(snapshot: _Snapshot) -> None:
    """Refuses tables whose rows plain Parquet reading would get wrong.

    Raises:
        TableError: naming the table and the feature.
    """
    table, path = snapshot.table, snapshot.path
    mode = table.metadata().configuration.get("delta.columnMapping.mode") or "none"
    advice = "read it with the spark backend (delta.backend: spark, delta-spark on the classpath)"
    if mode != "none":
        raise TableError(
            f"Delta table {path} uses column mapping (delta.columnMapping.mode={mode}): its "
            f"Parquet column names differ from the table's; {advice}"
        )
    features = set(table.protocol().reader_features or [])
    unknown = sorted(features - _READABLE_FEATURES)
    if unknown:
        raise TableError(
            f"Delta table {path} uses reader features {unknown} that the rs backend cannot "
            f"read correctly; {advice}"
        )
    if "deletionVectors" in features and _has_deletion_vectors(table):
        raise TableError(
            f"Delta table {path} has deletion vectors (rows deleted without rewriting files); "
            f"{advice}, or purge them there with REORG TABLE ... APPLY (PURGE)"
        )


def _check_removed(path: str, committed: DeltaTable, removed: list[_DataFile]) -> None:
    """Verifies that files meant to be removed are gone: a log written by another engine may
    encode paths differently from delta-rs, and a remove that misses its add keeps rows twice.
    """
    remaining = {
        urllib.parse.unquote(p)
        for p in pa.table(committed.get_add_actions()).column("path").to_pylist()
    }
    still = sorted({urllib.parse.unquote(f.log_path) for f in removed} & remaining)
    if still:
        raise TableError(
            f"Delta table {path}, version {committed.version()}: files meant to be removed are "
            f"still in the table ({still[:3]}...), probably because another writer encoded "
            "their paths differently; restore the previous version with the spark backend and "
            "write this table with it"
        )


def _has_deletion_vectors(table: DeltaTable) -> bool:
    reader = pa.RecordBatchReader.from_stream(table.deletion_vectors())
    return any(batch.num_rows for batch in reader)


def _check_writable(snapshot: _Snapshot, partition_by: list[str] | None) -> None:
    """Refuses writes the rs backend cannot do correctly, and repartitioning.

    Raises:
        TableError: naming the table and what stands in the way.
    """
    path = snapshot.path
    if partition_by is not None and list(partition_by) != snapshot.partition_by:
        raise TableError(
            f"Delta table {path} is partitioned by {snapshot.partition_by}, not "
            f"{list(partition_by)}; write with the table's partitioning (or partition_by=None)"
        )
    configuration = snapshot.table.metadata().configuration
    reasons = []
    if (configuration.get("delta.columnMapping.mode") or "none") != "none":
        reasons.append("column mapping")
    if any(key.startswith("delta.constraints.") for key in configuration):
        reasons.append("CHECK constraints")
    for field in snapshot.schema.fields:
        keys = set(field.metadata or {})
        if "delta.generationExpression" in keys:
            reasons.append(f"generated column {field.name}")
        if any(key.startswith("delta.identity.") for key in keys):
            reasons.append(f"identity column {field.name}")
        if "delta.invariants" in keys:
            reasons.append(f"invariant on {field.name}")
    if reasons:
        raise TableError(
            f"Delta table {path} uses {', '.join(reasons)}, which the rs backend cannot "
            "enforce when writing; write it with the spark backend (delta-spark)"
        )


# ------------------------------------------------------------------------------- row checks


def _with_row_checks(df: DataFrame, snapshot: _Snapshot, predicate: str | None = None) -> DataFrame:
    """``df`` with the table's row rules checked inside the Spark job that writes it.

    NOT NULL columns must not receive nulls, and with ``predicate`` (replace_where) every row
    must match it. A violating row fails the job with an error naming the rule and showing the
    row; nothing is committed then. Checking while writing costs no extra pass over ``df``.
    """
    checks: list[tuple[Column, str]] = [
        (
            F.col(quote_name(f.name)).isNull(),
            f"column {f.name} of Delta table {snapshot.path} is NOT NULL but a row has a null",
        )
        for f in snapshot.schema.fields
        if not f.nullable
    ]
    if predicate is not None:
        checks.append(
            (
                ~F.coalesce(F.expr(predicate), F.lit(False)),
                f"a row to write into Delta table {snapshot.path} does not match the "
                f"replace_where predicate {predicate!r}; every written row must match it",
            )
        )
    if not checks:
        return df
    row_json = F.to_json(F.struct(*[F.col(quote_name(c)) for c in df.columns]))
    rule: Column | None = None
    for violated, message in checks:
        error = F.raise_error(F.concat(F.lit(f"{_CHECK_MARK}{message}. Row: "), row_json))
        rule = F.when(violated, error) if rule is None else rule.when(violated, error)
    return df.where(rule.otherwise(F.lit(True)))  # type: ignore[union-attr]


def _write_error(snapshot: _Snapshot, exc: Exception) -> TableError:
    text = str(exc)
    found = re.search(re.escape(_CHECK_MARK) + r"(.*?)(?: SQLSTATE: |\n|$)", text)
    version = "does not exist yet" if snapshot.table is None else (
        f"stays at version {snapshot.table.version()}")  # fmt: skip
    if found:
        return TableError(f"{found.group(1)} (nothing was committed; the table {version})")
    return TableError(
        f"the Spark job writing Delta table {snapshot.path} failed, nothing was committed "
        f"(the table {version}; its leftover files are removed by vacuum): {_first_line(exc)}"
    )


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# -------------------------------------------------------------------------- partition values


def _plan_scans(
    snapshot: _Snapshot, files: list[_DataFile], with_file_ids: bool
) -> list[tuple[bool, list[_DataFile]]]:
    """The Parquet scans that read ``files``, as (plain, files) pairs.

    Files in plain Hive-style directories (:func:`_in_plain_directories`) are one scan whose
    partition columns Spark reads from those directories, so a filter on them prunes files.
    Every other file is read by a scan per distinct partition value whose partition columns
    are typed literals. With file ids, scans are also split so that no two files of one scan
    share their name and partition values (Spark writers reuse a name in every partition
    directory, other writers in every write).
    """
    plain, others = _in_plain_directories(snapshot, files)
    return [(True, g) for g in _scan_groups(plain, with_file_ids, lambda f: ())] + [
        (False, g) for g in _scan_groups(others, with_file_ids, lambda f: f.partition_values)
    ]


def _scan_groups(
    files: list[_DataFile], with_file_ids: bool, key: Callable[[_DataFile], tuple]
) -> list[list[_DataFile]]:
    """Files grouped by ``key``; with file ids also split so that no two files of a group
    have the same name and partition values."""
    # per key, its groups as (files, their (name, partition values)): a file joins the first
    # group without its pair, a set lookup per group rather than a pass over its files
    by_key: dict[tuple[Any, ...], list[tuple[list[_DataFile], set]]] = {}
    for f in files:
        groups = by_key.setdefault(key(f), [])
        pair = (f.name, f.partition_values)
        target = None
        if with_file_ids:
            target = next((g for g in groups if pair not in g[1]), None)
        elif groups:
            target = groups[0]
        if target is None:
            groups.append(([f], {pair}))
        else:
            target[0].append(f)
            target[1].add(pair)
    return [group for groups in by_key.values() for group, _ in groups]


# A string literal as sql_literal writes it (only \\ and \' escaped), or a whole number.
_EQUALITY_TERM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*) = ('(?:[^'\\]|\\[\\'])*'|-?[0-9]+)")
_INTEGRAL_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


# Partition column types whose value Spark reads back from a ``col=text`` directory exactly as
# the log has it, when the text needs no escaping.
_PLAIN_DIRECTORY_TYPES = (T.StringType, T.DateType, T.IntegerType, T.LongType)
# Characters Spark's writers escape in partition directory names (and ``=``, ``%``, ``/``).
_ESCAPED = re.compile(r"[\x00-\x1f\x7f\"#%'*/:=?\\{\[\]^]")


def _in_plain_directories(
    snapshot: _Snapshot, files: list[_DataFile]
) -> tuple[list[_DataFile], list[_DataFile]]:
    """``files`` split in two: those whose partition values Spark's partition discovery (base
    path: the table) reads from their directories exactly as the log records them, and the
    others.

    That is a file ``<location>/[dir/...]c1=v1/.../cn=vn/name`` (no ``=`` in the table's
    directory name and the directories above ``c1=``, none named ``_temporary``) of a table
    partitioned by ``c1..cn`` (text, date, int or bigint columns), where each ``vi`` is the
    value's text as the log writes it and needs no escaping (``__HIVE_DEFAULT_PARTITION__``
    for null). Others (escaped or odd values, other layouts) are read by a scan per
    partition, with their values from the log.
    """
    types = {f.name: f.dataType for f in snapshot.schema.fields}
    if not snapshot.partition_by or not all(
        isinstance(types[c], _PLAIN_DIRECTORY_TYPES) and not _ESCAPED.search(c)
        for c in snapshot.partition_by
    ):
        return [], files
    location = table_location(snapshot.path).rstrip("/")
    if "=" in location.rsplit("/", 1)[-1]:
        return [], files
    prefix = location + "/"
    plain, others = [], []
    for f in files:
        if _in_plain_directory(f, prefix, snapshot.partition_by, types):
            plain.append(f)
        else:
            others.append(f)
    return plain, others


def _in_plain_directory(
    f: _DataFile, prefix: str, partition_by: list[str], types: dict[str, T.DataType]
) -> bool:
    """Whether file ``f`` lies in ``<prefix>[dir/...]c1=v1/.../cn=vn/`` as
    :func:`_in_plain_directories` describes."""
    if not f.uri.startswith(prefix):
        return False
    directories = f.uri[len(prefix) :].split("/")[:-1]
    above, own = directories[: -len(partition_by)], directories[-len(partition_by) :]
    if len(own) != len(partition_by) or any("=" in d for d in above):
        return False
    if any(d.lower() == "_temporary" for d in directories):  # Spark skips those
        return False
    expected = []
    for c, value in zip(partition_by, f.partition_values, strict=True):
        text = _partition_text(value, types[c])
        if text is None:
            text = _NULL_PARTITION
        elif not text or text == _NULL_PARTITION or _ESCAPED.search(text):
            return False
        expected.append(f"{c}={text}")
    return own == expected


def _partition_terms(
    snapshot: _Snapshot, predicate: str
) -> tuple[list[tuple[int, Any]], bool] | None:
    """When ``predicate`` is ``c = v AND ...`` (``batch_predicate``'s form): the (partition
    column index, value) pairs of its terms that compare a partition column, a string one with
    a string literal or a whole-number one with a number, and whether those are all its terms.
    None for any other predicate, which Spark then evaluates.

    For these terms Spark's ``=`` is Python's ``==`` on the typed partition values (a null
    value matches nothing in both), so they choose files without a Spark job.
    """
    fields = {f.name: f.dataType for f in snapshot.schema.fields}
    terms: list[tuple[int, Any]] = []
    every, position = True, 0
    while True:
        term = _EQUALITY_TERM.match(predicate, position)
        if term is None:
            return None
        column, literal = term.groups()
        data_type = fields.get(column) if column in snapshot.partition_by else None
        if literal.startswith("'") and isinstance(data_type, T.StringType):
            terms.append(
                (snapshot.partition_by.index(column), re.sub(r"\\(.)", r"\1", literal[1:-1]))
            )
        elif not literal.startswith("'") and isinstance(data_type, _INTEGRAL_TYPES):
            terms.append((snapshot.partition_by.index(column), int(literal)))
        else:
            every = False
        position = term.end()
        if position == len(predicate):
            return terms, every
        if not predicate.startswith(" AND ", position):
            return None
        position += len(" AND ")


def _partition_equalities(snapshot: _Snapshot, predicate: str) -> list[tuple[int, Any]] | None:
    """The terms of ``predicate`` when all of them are partition terms (see
    :func:`_partition_terms`), else None."""
    parsed = _partition_terms(snapshot, predicate)
    return parsed[0] if parsed is not None and parsed[1] else None


def _batch_files(snapshot: _Snapshot, batch_ids: list[str]) -> list[_DataFile]:
    """The snapshot's files that can hold rows of ``batch_ids``: those of their partitions
    when the table is partitioned by its text ``batch_id`` column, else all."""
    fields = {f.name: f.dataType for f in snapshot.schema.fields}
    if BATCH_COLUMN not in snapshot.partition_by or not isinstance(
        fields[BATCH_COLUMN], T.StringType
    ):
        return snapshot.files
    i, wanted = snapshot.partition_by.index(BATCH_COLUMN), set(batch_ids)
    return [f for f in snapshot.files if f.partition_values[i] in wanted]


def _in_partitions(files: list[_DataFile], terms: list[tuple[int, Any]]) -> list[_DataFile]:
    """The files whose partition values equal every (index, value) of ``terms``."""
    return [f for f in files if all(f.partition_values[i] == value for i, value in terms)]


# Empty frames by session and schema: building one costs a few analyses in the JVM, and every
# read and predicate check needs one (DataFrames are immutable, so one can serve them all).
_EMPTY_FRAMES: weakref.WeakKeyDictionary[SparkSession, dict[str, DataFrame]] = (
    weakref.WeakKeyDictionary()
)


def _empty(spark: SparkSession, schema: T.StructType) -> DataFrame:
    """The session's empty DataFrame with ``schema`` (see :func:`_new_empty`), built once."""
    frames = _EMPTY_FRAMES.setdefault(spark, {})
    key = schema.json()
    if key not in frames:
        frames[key] = _new_empty(spark, schema)
    return frames[key]


def _new_empty(spark: SparkSession, schema: T.StructType) -> DataFrame:
    """An empty DataFrame with ``schema`` that the optimizer turns into an empty local relation
    (``createDataFrame([])`` would become an RDD scan that still runs a task)."""
    # one null struct cast to the schema: a few calls to the JVM, not a few per column
    fields = T.StructType([T.StructField(f.name, f.dataType) for f in schema.fields])
    nulls = F.lit(None).cast(fields).alias("nulls")
    return spark.range(1).select(nulls).select("nulls.*").where(F.lit(False))


def _typed_literal(value: Any, data_type: T.DataType) -> Column:
    """A partition value from delta-rs as a Spark literal of the column's type."""
    if value is None:
        return F.lit(None).cast(data_type)
    if isinstance(data_type, T.TimestampType):
        return F.timestamp_micros(F.lit(_epoch_micros(value)))
    if isinstance(data_type, T.TimestampNTZType):
        return F.lit(value.strftime("%Y-%m-%d %H:%M:%S.%f")).cast(data_type)
    if isinstance(data_type, T.DecimalType):
        return F.lit(format(value, "f")).cast(data_type)
    if isinstance(data_type, T.DateType):
        return F.lit(value.isoformat()).cast(data_type)
    return F.lit(value).cast(data_type)


def _python_partition_values(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """Partition values as Python objects createDataFrame takes (UTC datetimes stay aware)."""
    return tuple(
        v.astimezone(timezone.utc) if isinstance(v, datetime) and v.tzinfo else v for v in values
    )


def _epoch_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _partition_text(value: Any, data_type: T.DataType) -> str | None:
    """A typed partition value in the Delta protocol's string form."""
    if value is None:
        return None
    if isinstance(data_type, T.TimestampType):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(data_type, T.TimestampNTZType):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(data_type, T.BooleanType):
        return "true" if value else "false"
    if isinstance(data_type, T.DecimalType):
        return format(value, "f")
    return str(value)


def _partition_string(name: str, data_type: T.DataType) -> Column:
    """Spark expression giving a partition column's value in the Delta protocol's string form.

    Spark writes it as the ``name=value`` directory, from which the driver reads it back; the
    data files never hold partition columns. Timestamps are rendered in UTC by integer
    arithmetic, independent of the session time zone.
    """
    c = F.col(quote_name(name))
    if isinstance(data_type, T.TimestampType):
        return _micros_text(c, F.unix_micros(c), "%sT%02d:%02d:%02d.%06dZ")
    if isinstance(data_type, T.TimestampNTZType):
        # Only the cast to string is free of the session time zone (date_format and
        # timestamp_diff shift wall-clock times in a DST gap); it drops trailing zeros.
        text = c.cast("string")
        fraction = F.rpad(F.regexp_extract(text, r"\.(\d+)$", 1), 6, "0")
        return F.concat(F.substring_index(text, ".", 1), F.lit("."), fraction)
    if isinstance(data_type, T.StringType):
        return c
    return c.cast("string")


def _micros_text(value: Column, micros: Column, template: str) -> Column:
    """``value`` (micros since the epoch, UTC wall clock) as date-time text, by integer
    arithmetic; null stays null (format_string would render "null")."""
    of_day = F.pmod(micros, F.lit(_DAY_US))
    days = ((micros - of_day) / F.lit(_DAY_US)).cast("int")
    text = F.format_string(
        template,
        F.date_from_unix_date(days).cast("string"),
        F.floor(of_day / F.lit(3_600_000_000)),
        F.floor(F.pmod(of_day, F.lit(3_600_000_000)) / F.lit(60_000_000)),
        F.floor(F.pmod(of_day, F.lit(60_000_000)) / F.lit(1_000_000)),
        F.pmod(of_day, F.lit(1_000_000)),
    )
    return F.when(value.isNotNull(), text)


def _directory_partition_values(
    path: str, relative: str, partition_by: list[str]
) -> dict[str, str | None]:
    """Partition values from a written file's ``col=value/`` directories (Spark escapes
    special characters as ``%XX``; null is ``__HIVE_DEFAULT_PARTITION__``)."""
    directories = relative.split("/")[:-1]
    values: dict[str, str | None] = {}
    for directory in directories:
        name, sep, value = directory.partition("=")
        if not sep:
            continue
        value = urllib.parse.unquote(value)
        values[urllib.parse.unquote(name)] = None if value == _NULL_PARTITION else value
    if list(values) != partition_by:
        raise TableError(
            f"unexpected directory layout {relative!r} written for Delta table {path}; "
            f"expected partition directories {partition_by}"
        )
    return values


# ------------------------------------------------------------------------------------ commits


def _commit_properties(
    plan: _Plan, partition_by: list[str], commit_id: str, user_metadata: str | None
) -> CommitProperties:
    """Commit info naming the operation like delta-spark does (CREATE TABLE, WRITE with mode
    Append / Overwrite and predicate, MERGE), plus the app transaction of idempotent appends.

    ``readVersion`` is the version the write planned from; ``isBlindAppend`` is true only for
    plain appends, so other engines' conflict checks look at the rows the other writes add.
    No retries: delta-rs would retry on a later version with checks that miss conflicting
    blind appends; the caller checks and retries itself.
    """
    parameters = {**plan.parameters, "partitionBy": json.dumps(list(partition_by))}
    metadata: dict[str, Any] = {
        _OPERATION_KEY: plan.operation,
        _PARAMETERS_KEY: parameters,
        _COMMIT_ID_KEY: commit_id,
        "isBlindAppend": plan.parameters.get("mode") == "Append",
    }
    if plan.base is not None:
        metadata["readVersion"] = plan.version
    if user_metadata is not None:
        metadata["userMetadata"] = user_metadata
    return CommitProperties(
        custom_metadata=metadata,
        max_commit_retries=0,
        app_transactions=[Transaction(plan.app[0], plan.app[1])] if plan.app else None,
    )


def _commit_id(location: str, version: int) -> str | None:
    """The engine's commit id recorded in ``version`` (None when it has none or is gone)."""
    table = DeltaTable(location)
    for info in table.history(max(1, table.version() - version + 1)):
        if int(info["version"]) == version:
            return info.get(_COMMIT_ID_KEY)
    return None


def _version_taken(location: str, version: int) -> bool:
    """True when a version after ``version`` is committed (``version`` -1: when a table
    exists). One file probe: the next version's commit file ``_delta_log/<n>.json``."""
    if version < 0:
        return DeltaTable.is_deltatable(location)
    fs, base = _filesystem(location)
    info = fs.get_file_info(_join(base, f"_delta_log/{version + 1:020d}.json"))
    return info.type != pafs.FileType.NotFound


def _table_identity(table: DeltaTable) -> tuple[Any, ...]:
    """What a plan depends on besides the data files: the table's id, schema, partitioning,
    properties and protocol."""
    metadata, protocol = table.metadata(), table.protocol()
    return (
        metadata.id,
        table.schema().to_json(),
        tuple(metadata.partition_columns),
        sorted(metadata.configuration.items()),
        protocol.min_reader_version,
        protocol.min_writer_version,
        sorted(protocol.reader_features or []),
        sorted(protocol.writer_features or []),
    )


def _app_done(table: DeltaTable, app: tuple[str, int] | None) -> bool:
    """True when ``table`` records ``app``'s version (or a later one) for its app id."""
    if app is None:
        return False
    done = table.transaction_version(app[0])
    return done is not None and done >= app[1]


def _file_key(f: _DataFile) -> str:
    return urllib.parse.unquote(f.log_path)


def _remove_empty_directories(location: str, deleted: Sequence[str]) -> None:
    """Removes the directories below the table at ``location`` that deleting the files
    ``deleted`` (relative paths) left empty: each write's own directory, its partitions."""
    for parent in sorted({os.path.dirname(f) for f in deleted}, key=len, reverse=True):
        while parent:
            try:
                os.rmdir(os.path.join(location, parent))
            except OSError:  # not empty (or gone): its parents are not empty either
                break
            parent = os.path.dirname(parent)


@contextlib.contextmanager
def _commit_lock(location: str, path: str, timeout_s: float) -> Iterator[None]:
    """Holds the table's commit lock: an exclusive ``flock`` of ``<table>/_ml_engine_commit.lock``
    on local and mounted POSIX paths. On URIs, and on file systems that cannot lock, it holds
    nothing: the exact-version commit alone then keeps concurrent writes correct.

    The OS releases the lock when its holder's process dies, so a crash never leaves a stale
    lock. The file stays: deleting it while a process waits on it would split the lock.

    Raises:
        TableError: the lock file cannot be opened, or another process held the lock for
            ``timeout_s`` seconds.
    """
    if "://" in location or fcntl is None:
        yield
        return
    lock_path = os.path.join(location, _LOCK_FILE)
    try:
        os.makedirs(location, exist_ok=True)
        # Read-write: NFS emulates flock with a POSIX write lock, which needs it.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise TableError(
            f"cannot open the commit lock {lock_path} of Delta table {path}: {exc}; the table "
            "directory must be writable by every writer"
        ) from exc
    try:
        deadline = time.monotonic() + timeout_s
        pause = 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise TableError(
                        f"Delta table {path}: waited {timeout_s:g} s for the commit lock "
                        f"{lock_path}, held by another process that is still running (a dead "
                        "process releases it); find it with `fuser -v` on the file. Nothing "
                        "was committed"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
            except OSError as exc:
                if exc.errno in _NO_FLOCK:
                    break  # the file system cannot lock: rely on the exact-version commit
                raise TableError(
                    f"cannot lock {lock_path} of Delta table {path}: {exc}. Nothing was committed"
                ) from exc
        yield
    finally:
        os.close(fd)  # releases the lock


def _add_actions(snapshot: _Snapshot, target: str, write_id: str) -> list[AddAction]:
    """Lists the files Spark wrote under ``target`` and describes each for the log."""
    fs, base = _filesystem(target)
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    files = []
    for info in infos:
        relative = info.path[len(base) :].lstrip("/")
        hidden = any(part.startswith((".", "_")) for part in relative.split("/"))
        if info.type == pafs.FileType.File and not hidden:
            files.append((info, relative))
    if not files:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
        footers = list(pool.map(lambda f: pq.read_metadata(f[0].path, filesystem=fs), files))
    leaves = _stat_leaves(snapshot.data_schema)
    now_ms = int(time.time() * 1000)
    actions = []
    for (info, relative), footer in zip(files, footers, strict=True):
        if footer.num_rows == 0:
            continue  # Spark writes an empty file for an empty partition; vacuum removes it
        mtime = info.mtime_ns // 1_000_000 if info.mtime_ns else now_ms
        actions.append(
            AddAction(
                # delta-rs takes the plain relative path and URI-encodes it for the log
                path=f"{write_id}/{relative}",
                size=int(info.size),
                partition_values=_directory_partition_values(
                    snapshot.path, relative, snapshot.partition_by
                ),
                modification_time=int(mtime),
                data_change=True,
                stats=_stats_json(footer, leaves),
            )
        )
    return actions


# ------------------------------------------------------------------------------------- stats


def _stat_leaves(schema: T.StructType) -> dict[str, tuple[tuple[str, ...], T.DataType]]:
    """Parquet column paths (``a`` or ``s.x``) of the primitive columns that get statistics:
    top-level and inside structs, not inside arrays or maps (as Delta writers do)."""
    leaves: dict[str, tuple[tuple[str, ...], T.DataType]] = {}

    def walk(fields: list[T.StructField], prefix: tuple[str, ...]) -> None:
        for f in fields:
            if "." in f.name:
                continue  # ambiguous in Parquet's dotted paths: no statistics
            names = (*prefix, f.name)
            if isinstance(f.dataType, T.StructType):
                walk(f.dataType.fields, names)
            elif not isinstance(f.dataType, T.ArrayType | T.MapType):
                leaves[".".join(names)] = (names, f.dataType)

    walk(schema.fields, ())
    return leaves


def _stats_json(
    footer: pq.FileMetaData, leaves: dict[str, tuple[tuple[str, ...], T.DataType]]
) -> str:
    """Delta per-file statistics (numRecords, minValues, maxValues, nullCount) from a footer.

    A bound is only written when every row group has it; timestamps are written at the
    millisecond precision Delta uses, the minimum rounded down and the maximum up, so both stay
    valid bounds; long strings keep a 32-character prefix as minimum and no maximum.
    """
    acc: dict[str, dict[str, Any]] = {}
    for r in range(footer.num_row_groups):
        group = footer.row_group(r)
        for i in range(group.num_columns):
            column = group.column(i)
            leaf = leaves.get(column.path_in_schema)
            if leaf is None:
                continue
            a = acc.setdefault(
                column.path_in_schema, {"min": None, "max": None, "nulls": 0, "bounds": True}
            )
            st = column.statistics
            if st is None or not st.has_null_count:
                a["nulls"] = None
            elif a["nulls"] is not None:
                a["nulls"] += st.null_count
            if st is not None and st.has_min_max:
                low, high = _stat_value(st.min, leaf[1]), _stat_value(st.max, leaf[1])
                if low is None or high is None:
                    a["bounds"] = False
                else:
                    a["min"] = low if a["min"] is None else min(a["min"], low)
                    a["max"] = high if a["max"] is None else max(a["max"], high)
            elif not (st is not None and st.has_null_count and st.null_count == group.num_rows):
                a["bounds"] = False  # values without bounds (an all-null group needs none)
    stats: dict[str, Any] = {"numRecords": footer.num_rows}
    minimum: dict[str, Any] = {}
    maximum: dict[str, Any] = {}
    nulls: dict[str, Any] = {}
    for dotted, a in acc.items():
        names, data_type = leaves[dotted]
        if a["nulls"] is not None:
            _put(nulls, names, a["nulls"])
        if a["bounds"] and a["min"] is not None:
            low = _json_bound(a["min"], data_type, upper=False)
            high = _json_bound(a["max"], data_type, upper=True)
            if low is not None:
                _put(minimum, names, low)
            if high is not None:
                _put(maximum, names, high)
    stats.update(minValues=minimum, maxValues=maximum, nullCount=nulls)
    return _dumps_with_decimals(stats)


def _stat_value(value: Any, data_type: T.DataType) -> Any:
    """A footer statistic as a comparable Python value, or None when it is not usable."""
    if isinstance(data_type, T.BooleanType | T.BinaryType):
        return None  # Delta keeps no bounds for them
    if isinstance(data_type, T.ByteType | T.ShortType | T.IntegerType | T.LongType):
        return value if isinstance(value, int) else None
    if isinstance(data_type, T.FloatType | T.DoubleType):
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
    if isinstance(data_type, T.DecimalType):
        return value if isinstance(value, Decimal) else None
    if isinstance(data_type, T.StringType):
        return value if isinstance(value, str) else None
    if isinstance(data_type, T.TimestampType):
        ok = isinstance(value, datetime) and value.tzinfo is not None
        return value.astimezone(timezone.utc) if ok else None
    if isinstance(data_type, T.TimestampNTZType):
        return value if isinstance(value, datetime) and value.tzinfo is None else None
    if isinstance(data_type, T.DateType):
        ok = isinstance(value, date) and not isinstance(value, datetime)
        return value if ok else None
    return None


def _json_bound(value: Any, data_type: T.DataType, upper: bool) -> Any:
    if isinstance(data_type, T.StringType):
        if len(value) <= _STRING_STATS_PREFIX:
            return value
        return None if upper else value[:_STRING_STATS_PREFIX]
    if isinstance(data_type, T.TimestampType | T.TimestampNTZType):
        naive = value.replace(tzinfo=None)
        micros = (naive - _EPOCH_NAIVE) // timedelta(microseconds=1)
        millis = -(-micros // 1000) if upper else micros // 1000
        rounded = _EPOCH_NAIVE + timedelta(milliseconds=millis)
        text = rounded.strftime("%Y-%m-%dT%H:%M:%S.") + f"{rounded.microsecond // 1000:03d}"
        return text + ("Z" if isinstance(data_type, T.TimestampType) else "")
    if isinstance(data_type, T.DateType):
        return value.isoformat()
    return value


def _put(target: dict[str, Any], names: tuple[str, ...], value: Any) -> None:
    for name in names[:-1]:
        target = target.setdefault(name, {})
    target[names[-1]] = value


def _dumps_with_decimals(value: dict[str, Any]) -> str:
    """JSON with Decimals written as exact numbers (as Delta writers do), not floats."""
    marker = "\u0000decimal:"

    def encode(o: Any) -> str:
        if isinstance(o, Decimal):
            return f"{marker}{format(o, 'f')}\u0000"
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    text = json.dumps(value, default=encode, separators=(",", ":"))
    return re.sub(r'"\\u0000decimal:([-0-9.]+)\\u0000"', r"\1", text)


# -------------------------------------------------------------------------------------- misc


def _as_aware(moment: datetime | str, session_zone: str) -> datetime:
    """A read timestamp as an aware datetime; naive values are in the session time zone."""
    if isinstance(moment, str):
        text = moment.strip()
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise TableError(
                f"timestamp {text!r} is not an ISO-8601 date or date-time "
                "(e.g. '2026-01-31 12:00:00' or '2026-01-31T12:00:00+00:00')"
            ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone(session_zone))
    return moment.astimezone(timezone.utc)


def _zone(name: str) -> timezone | ZoneInfo:
    offset = re.fullmatch(r"(?:UTC|GMT)?([+-])(\d{1,2}):?(\d{2})?", name.strip())
    if offset:
        sign = 1 if offset.group(1) == "+" else -1
        delta = timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3) or 0))
        return timezone(sign * delta)
    return ZoneInfo(name)


@contextlib.contextmanager
def _job_description(spark: SparkSession, text: str) -> Iterator[None]:
    """Names the Spark jobs of the block in the UI, restoring the caller's description."""
    sc = spark.sparkContext
    previous = sc.getLocalProperty("spark.job.description")
    sc.setJobDescription(text)
    try:
        yield
    finally:
        sc.setLocalProperty("spark.job.description", previous)  # type: ignore[arg-type]


@contextlib.contextmanager
def _runtime_conf(spark: SparkSession, settings: dict[str, str]) -> Iterator[None]:
    """Sets runtime SQL settings for the block, restoring the previous values."""
    previous = {key: spark.conf.get(key) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            spark.conf.set(key, value)
