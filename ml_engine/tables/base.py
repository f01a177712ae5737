"""The Delta table interface every backend implements.

Tables are addressed by path (a directory or URI). All data work is done by Spark; a backend
only decides how the Delta transaction log is read and committed.
"""

from __future__ import annotations

import copy
import functools
import operator
import os
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DoubleType,
    FloatType,
    MapType,
    StructField,
    StructType,
)

# The metadata columns ingest adds are schema facts (the config checks names against them
# without importing a Delta backend); the table modules take them from here.
from ml_engine.schemas import (  # noqa: F401 - re-exported
    ARRIVAL_TIME,
    BATCH_COLUMN,
    META_COLUMNS,
    SOURCE_FILE_COLUMN,
)


class TableError(RuntimeError):
    """A table operation cannot be done; the message names the table path and what to do."""


class TableNotFoundError(TableError):
    """No Delta table exists at the path."""


class ConcurrentWriteError(TableError):
    """Another writer committed to the table in a way that conflicts with this write, and
    retrying on the new snapshot did not succeed; nothing of this write was committed."""


class BatchNotFoundError(TableError):
    """The table holds no rows of the batch asked for; the message lists the batches it has."""


INGESTED_AT_COLUMN = ARRIVAL_TIME


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history."""

    version: int
    timestamp: datetime
    operation: str
    parameters: dict[str, Any]
    #: Delta's ``commitInfo.userMetadata`` of the commit (see ``DeltaTables.user_metadata``).
    user_metadata: str | None = None


class DeltaTables(ABC):
    """Read, write, upsert, history and time travel of Delta tables by path."""

    name: str = "abstract"
    #: Recorded as ``commitInfo.userMetadata`` of every commit this object makes (None: none).
    user_metadata: str | None = None

    def __init__(self, spark: SparkSession):
        self.spark = spark

    def tagged(self, user_metadata: str) -> DeltaTables:
        """The same backend, marking each of its commits with ``user_metadata``."""
        marked = copy.copy(self)
        marked.user_metadata = user_metadata
        return marked

    @abstractmethod
    def exists(self, path: str) -> bool:
        """True when a Delta table (a ``_delta_log`` with at least one commit) is at ``path``."""

    @abstractmethod
    def create(self, path: str, schema: StructType, partition_by: list[str] | None = None) -> int:
        """Creates an empty table; returns its version (0). Existing table: TableError."""

    @abstractmethod
    def read(
        self, path: str, version: int | None = None, timestamp: datetime | str | None = None
    ) -> DataFrame:
        """The table's rows, latest or as of a version / timestamp (at most one of them).

        Raises:
            TableNotFoundError: no table at ``path``.
            TableError: the version/timestamp does not exist, or the table uses a reader
                feature this backend cannot read correctly.
        """

    @abstractmethod
    def append(
        self,
        df: DataFrame,
        path: str,
        partition_by: list[str] | None = None,
        app_id: str | None = None,
        app_version: int | None = None,
    ) -> int | None:
        """Appends ``df``; creates the table if missing.

        With ``app_id`` and ``app_version``, the append is idempotent: when the table already
        records ``app_version`` or a later one for ``app_id``, nothing is written and None is
        returned. Otherwise returns the committed version.
        """

    @abstractmethod
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
        """Replaces the table's rows with ``df`` (creates the table if missing).

        With ``replace_where`` (a SQL predicate, e.g. ``"batch_id = 'b1'"`` for a partition
        overwrite or ``"event_time >= '2026-01-01'"``) only rows matching it are replaced: they
        are removed and ``df`` is added in one commit. Every row of ``df`` must match the
        predicate (TableError otherwise). Returns the committed version.

        With ``unique_by`` (columns; needs ``replace_where``), the rows outside the replaced
        ones that have the same non-null ``unique_by`` values as a row of ``df`` are removed
        in the same commit: a record written again in a later batch moves there instead of
        being held twice. ``df`` itself should be unique on them.

        With ``replace_schema`` (not with ``replace_where``) the table takes ``df``'s columns
        in the same commit, for a table rebuilt whole from definitions that changed; without
        it a schema that differs from the table's is refused (TableError). The partitioning
        stays the table's.

        With ``add_columns`` the table's schema may grow with the data, as for tables whose
        columns follow a schema file that gains a column: ``df``'s columns the table lacks are
        added (nullable; the table's other rows read null in them) and the table's columns
        ``df`` lacks are written null. A column whose type differs is still refused
        (TableError, see :func:`added_columns`). Backends that cannot change the schema in the
        commit of the rows (``rs``) commit the new columns first, a commit that changes no row.
        """

    @abstractmethod
    def upsert(
        self, df: DataFrame, path: str, keys: list[str], partition_by: list[str] | None = None
    ) -> int:
        """Merges ``df`` by ``keys``: matching rows are replaced, others inserted, in one commit.

        ``df`` must be unique on ``keys`` (TableError otherwise). Creates the table if missing.
        Returns the committed version.
        """

    @abstractmethod
    def version(self, path: str) -> int:
        """The latest committed version."""

    def schema(self, path: str) -> StructType:
        """The table's columns at its latest version (backends read them from the log, without a
        Spark job)."""
        return self.read(path).schema

    def batches(self, path: str, version: int | None = None) -> list[str]:
        """The batch ids with rows in the table (sorted), latest or as of ``version``.

        Backends answer from the transaction log when the table is partitioned by
        ``batch_id``; this default reads the distinct values.
        """
        df = self.read(path, version=version)
        rows = df.select(BATCH_COLUMN).distinct().collect()
        return sorted(str(r[0]) for r in rows if r[0] is not None)

    def require_batch(self, path: str, batch_id: str, version: int | None = None) -> None:
        """Checks that the table has rows of batch ``batch_id``.

        Raises:
            TableNotFoundError: no table at ``path``.
            BatchNotFoundError: the table has no rows of that batch; the message names the
                batches it has.
        """
        existing = self.batches(path, version=version)
        if batch_id not in existing:
            raise BatchNotFoundError(batch_not_found(path, batch_id, existing))

    def read_batch(self, path: str, batch_id: str, version: int | None = None) -> DataFrame:
        """The rows of batch ``batch_id`` (latest, or as of ``version``).

        Raises:
            TableNotFoundError: no table at ``path``.
            BatchNotFoundError: the table has no rows of that batch (see
                :meth:`require_batch`).
        """
        self.require_batch(path, batch_id, version=version)
        return self.batch_rows(path, batch_id, version=version)

    def batch_rows(self, path: str, batch_id: str, version: int | None = None) -> DataFrame:
        """The rows of batch ``batch_id`` (latest, or as of ``version``), empty when the table
        has none: for counts and lookups where a batch without rows is an answer (no
        quarantined rows, say), not an error.

        Raises:
            TableNotFoundError: no table at ``path``.
        """
        return self.read_batches(path, [batch_id], version=version)

    def read_batches(
        self, path: str, batch_ids: list[str], version: int | None = None
    ) -> DataFrame:
        """The rows of the batches ``batch_ids`` (latest, or as of ``version``); batches
        without rows add none.

        Raises:
            TableNotFoundError: no table at ``path``.
        """
        return self.read(path, version=version).where(F.col(BATCH_COLUMN).isin(list(batch_ids)))

    def read_complete(self, path: str) -> tuple[DataFrame, int]:
        """Every batch of the table, at its latest version: ``(rows, version)``.

        (:class:`ml_engine.catalog.BatchCatalog` narrows this to the batches whose runs
        completed.)
        """
        version = self.version(path)
        return self.read(path, version=version), version

    def append_rows(
        self, rows: list[tuple], schema: StructType, path: str, app_id: str, app_version: int
    ) -> int | None:
        """Appends a few Python ``rows`` of ``schema`` (a run log's entries) as :meth:`append`
        does with the same app id and version."""
        df = self.spark.createDataFrame(rows, schema)
        return self.append(df, path, app_id=app_id, app_version=app_version)

    def log_rows(self, path: str, columns: list[str], where: dict[str, list]) -> list[dict]:
        """The ``columns`` of a small table's rows (a run log) whose column ``c`` is one of
        ``where[c]`` for each ``c``, as Python values; empty when there is no table."""
        if not self.exists(path):
            return []
        kept = [F.col(c).isin(values) for c, values in where.items()]
        rows = self.read(path).where(functools.reduce(operator.and_, kept)).select(*columns)
        return [r.asDict() for r in rows.collect()]

    def replace_batch(
        self,
        df: DataFrame,
        path: str,
        batch_id: str,
        within: Mapping[str, str | int] | None = None,
        unique_by: list[str] | None = None,
        add_columns: bool = False,
    ) -> int:
        """Replaces the rows of batch ``batch_id`` with ``df`` in one commit (the table is
        partitioned by ``batch_id``; created if missing). Returns the committed version.

        ``within`` narrows the replaced rows to those of the batch with these column values
        (``{"stage": "clean"}``: one stage's quarantine rows; ``{"model_version": 3}``): rows
        of the batch with other values stay. Every row of ``df`` must match. ``unique_by``:
        rows of other batches with the same values of these columns as a row of ``df`` are
        removed in the same commit. ``add_columns``: the table takes ``df``'s new columns (see
        :meth:`overwrite`).
        """
        return self.overwrite(
            df,
            path,
            partition_by=[BATCH_COLUMN],
            replace_where=batch_predicate(batch_id, within),
            unique_by=unique_by,
            add_columns=add_columns,
        )

    @abstractmethod
    def history(self, path: str) -> list[Commit]:
        """Commits, newest first."""

    @abstractmethod
    def transaction_version(self, path: str, app_id: str) -> int | None:
        """The latest ``app_version`` committed for ``app_id``, or None."""

    @abstractmethod
    def compact(self, path: str, min_files: int = 2) -> int:
        """Rewrites the small data files of each partition into as few as Delta's target file
        size allows, when the table has at least ``min_files`` data files: one commit whose
        files are all added and removed with ``dataChange: false`` (no row changes; the old
        files stay for time travel until a vacuum), none when no partition has two files to
        merge. Returns the number of files it replaced."""

    @abstractmethod
    def vacuum(
        self, path: str, retain_hours: int = 0, keep_versions: Sequence[int] = ()
    ) -> list[str]:
        """Deletes the files the latest version does not reference (of replaced or removed
        rows, and leftovers of failed writes) once they are ``retain_hours`` old: removed from
        the table that long ago, or written that long ago and never committed. The files of
        ``keep_versions`` stay, so those versions can still be read.

        With ``retain_hours`` shorter than the longest write, a write still running loses its
        files; 0 is for tests and tools that own the table.

        Returns:
            The deleted files, relative to the table directory.
        """


# --- Checks every backend applies before writing (shared so the backends behave the same) ---


def _without_nullability(data_type: DataType) -> DataType:
    """The same type with every field / element / value nullable and no field metadata."""
    if isinstance(data_type, StructType):
        return StructType(
            [StructField(f.name, _without_nullability(f.dataType), True) for f in data_type.fields]
        )
    if isinstance(data_type, ArrayType):
        return ArrayType(_without_nullability(data_type.elementType), True)
    if isinstance(data_type, MapType):
        return MapType(
            _without_nullability(data_type.keyType), _without_nullability(data_type.valueType), True
        )
    return data_type


def table_location(path: str) -> str:
    """A table's path in one spelling, as delta-rs and pyarrow take it: an absolute,
    normalised local path (``file:`` URIs decoded into one), or any other URI without its
    trailing slash. Two spellings of one table compare equal after it."""
    path = str(path)
    if path.startswith("file:"):
        path = urllib.parse.unquote(path.removeprefix("file:").removeprefix("//"))
    elif "://" in path:
        return path.rstrip("/")
    return os.path.abspath(path)


def nullable_schema(schema: StructType) -> StructType:
    """``schema`` with every field nullable (what Parquet readers return)."""
    return _without_nullability(schema)  # type: ignore[return-value]


def check_replace_schema(path: str, replace_where: str | None, replace_schema: bool) -> None:
    """Refuses an overwrite that would replace the schema of part of a table.

    Raises:
        TableError: ``replace_schema`` with a ``replace_where`` predicate.
    """
    if replace_schema and replace_where is not None:
        raise TableError(
            f"overwrite of Delta table {path}: replace_schema replaces the whole table; it "
            f"cannot go with replace_where {replace_where!r}"
        )


def conform_to_table(path: str, table_schema: StructType, df: DataFrame) -> DataFrame:
    """Checks that ``df`` has the table's columns and types and orders them like the table.

    Nullability differences are allowed; anything else (missing, extra or differently typed
    columns) is refused, because the tables never evolve their schema silently.

    Args:
        path: the table (named in the error).
        table_schema: the table's schema.
        df: the rows to write.

    Returns:
        ``df`` with its columns in the table's order.

    Raises:
        TableError: naming the missing, extra and differently typed columns.
    """
    check_columns(path, table_schema, df.schema)
    return df.select(*[df[name] for name in table_schema.names])


def check_columns(path: str, table_schema: StructType, data_schema: StructType) -> None:
    """Refuses rows of ``data_schema`` for the table unless they have its columns and types
    (nullability and column order aside); see :func:`conform_to_table`.

    Raises:
        TableError: naming the missing, extra and differently typed columns.
    """
    problems = schema_differences(table_schema, data_schema)
    if problems:
        raise TableError(
            f"cannot write to Delta table {path}: the data's schema differs from the table's "
            f"({problems}). Select and cast the columns to the table's schema "
            f"({table_schema.simpleString()}), or write to a new table."
        )


def added_columns(
    path: str, table_schema: StructType, data_schema: StructType
) -> list[StructField]:
    """The columns of ``data_schema`` that ``table_schema`` lacks, nullable, in the data's order:
    what an overwrite with ``add_columns`` adds to the table.

    Raises:
        TableError: a column both have is of another type in the data (a column's type never
            changes in place: the table's other rows hold the old type).
    """
    retyped = retyped_columns(table_schema, data_schema)
    if retyped:
        raise TableError(
            f"cannot write to Delta table {path}: column types differ from the table's "
            f"({', '.join(retyped)}); new columns can be added, but a column keeps its type. "
            "Write the column with the table's type, or write to a new table."
        )
    names = set(table_schema.names)
    return [
        StructField(f.name, _without_nullability(f.dataType), True)
        for f in data_schema.fields
        if f.name not in names
    ]


def retyped_columns(
    table_schema: StructType, data_schema: StructType, data_label: str = "data"
) -> list[str]:
    """``name (table: type, <data_label>: type)`` for each column both have with different
    types (nullability does not count), in the table's order."""
    data_fields = {f.name: f for f in data_schema.fields}
    return [
        f"{f.name} (table: {f.dataType.simpleString()}, "
        f"{data_label}: {data_fields[f.name].dataType.simpleString()})"
        for f in table_schema.fields
        if f.name in data_fields
        and _without_nullability(f.dataType) != _without_nullability(data_fields[f.name].dataType)
    ]


def with_columns_of(df: DataFrame, schema: StructType) -> DataFrame:
    """``df`` with ``schema``'s columns first, in its order, a typed null for each one ``df``
    lacks, then ``df``'s other columns: rows of an older table version (or of a batch written
    before a column was added) read in the table's latest schema."""
    if df.columns[: len(schema.names)] == schema.names:
        return df
    present, names = set(df.columns), set(schema.names)
    return df.select(
        *[
            df[quote_name(f.name)]
            if f.name in present
            else F.lit(None).cast(f.dataType).alias(f.name)
            for f in schema.fields
        ],
        *[df[quote_name(n)] for n in df.columns if n not in names],
    )


def schema_differences(table_schema: StructType, data_schema: StructType) -> str:
    """The columns of ``data_schema`` that do not fit ``table_schema``, as one phrase
    (``missing columns [...]; columns not in the table [...]; different types: ...``); empty
    when they fit. Nullability and column order do not count."""
    table_fields = {f.name: f for f in table_schema.fields}
    df_fields = {f.name: f for f in data_schema.fields}
    missing = [name for name in table_fields if name not in df_fields]
    extra = [name for name in df_fields if name not in table_fields]
    retyped = retyped_columns(table_schema, data_schema)
    problems = []
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"columns not in the table {extra}")
    if retyped:
        problems.append(f"different types: {', '.join(retyped)}")
    return "; ".join(problems)


def check_unique_keys(path: str, df: DataFrame, keys: list[str]) -> None:
    """Refuses an upsert whose rows are not unique on ``keys`` (one small Spark job).

    Raises:
        TableError: a key column is missing from ``df``, or a key occurs more than once (the
            message shows one such key and its count).
    """
    if not keys:
        raise TableError(f"upsert into Delta table {path} needs at least one key column")
    absent = [k for k in keys if k not in df.columns]
    if absent:
        raise TableError(
            f"upsert into Delta table {path}: key columns {absent} are not in the data "
            f"(columns: {df.columns})"
        )
    dup = (
        df.groupBy(*keys)
        .agg(F.count(F.lit(1)).alias("__ml_engine_rows"))
        .where(F.col("__ml_engine_rows") > 1)
        .limit(1)
        .collect()
    )
    if dup:
        row = dup[0].asDict()
        n = row.pop("__ml_engine_rows")
        raise TableError(
            f"upsert into Delta table {path}: the data is not unique on keys {keys}: "
            f"{row} occurs {n} times. Deduplicate the rows before upserting."
        )


def batch_not_found(path: str, batch_id: str, existing: list[str]) -> str:
    """The message of a :class:`BatchNotFoundError`: the batches the table has instead."""
    shown = ", ".join(existing[-20:]) if existing else "none"
    more = f" (and {len(existing) - 20} earlier)" if len(existing) > 20 else ""
    return (
        f"batch '{batch_id}' is not in Delta table {path}; batches there: {shown}{more}. Set "
        f"batch_id to one of them or run the job that writes it"
    )


def quote_name(name: str) -> str:
    """``name`` as a Spark SQL identifier (backticks, inner backticks doubled)."""
    return "`" + name.replace("`", "``") + "`"


def sql_literal(value: str) -> str:
    """``value`` as a SQL string literal, for ``replace_where`` predicates."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def batch_predicate(batch_id: str, within: Mapping[str, str | int] | None = None) -> str:
    """The SQL predicate of a batch's rows, narrowed by column values (``within``).

    >>> batch_predicate("b1", {"stage": "clean", "model_version": 3})
    "batch_id = 'b1' AND stage = 'clean' AND model_version = 3"
    """
    terms = [f"{BATCH_COLUMN} = {sql_literal(batch_id)}"]
    for column, value in (within or {}).items():
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise TypeError(f"batch_predicate: {column} must be a str or int, got {value!r}")
        terms.append(f"{column} = {sql_literal(value) if isinstance(value, str) else value}")
    return " AND ".join(terms)


def parquet_options(schema: StructType) -> dict[str, str]:
    """Parquet writer options for rows of ``schema``: no dictionary for floating-point columns.

    Parquet tries a dictionary for every column and falls back to plain encoding once it
    outgrows its page; floating-point features almost never fit, so the attempt is wasted
    work, and writing them plain is faster with files no larger. Strings and integers keep it.

    Args:
        schema: the schema of the rows written.

    Returns:
        ``parquet.enable.dictionary#<column>: false`` for each top-level float/double column
        (columns with a dot in the name are left alone: Parquet paths are dot-separated).
    """
    return {
        f"parquet.enable.dictionary#{f.name}": "false"
        for f in schema.fields
        if isinstance(f.dataType, (DoubleType, FloatType)) and "." not in f.name
    }
