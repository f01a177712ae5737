"""The Delta table interface every backend implements.

Tables are addressed by path (a directory or URI). All data work is done by Spark; a backend
only decides how the Delta transaction log is read and committed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import StructType


class TableError(RuntimeError):
    """A table operation cannot be done; the message names the table path and what to do."""


class TableNotFoundError(TableError):
    """No Delta table exists at the path."""


@dataclass(frozen=True)
class Commit:
    """One entry of a table's history."""

    version: int
    timestamp: datetime
    operation: str
    parameters: dict[str, Any]


class DeltaTables(ABC):
    """Read, write, upsert, history and time travel of Delta tables by path."""

    name: str = "abstract"

    def __init__(self, spark: SparkSession):
        self.spark = spark

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
    ) -> int:
        """Replaces the table's rows with ``df`` (creates the table if missing).

        With ``replace_where`` (a SQL predicate, e.g. ``"batch_id = 'b1'"`` for a partition
        overwrite or ``"event_time >= '2026-01-01'"``) only rows matching it are replaced: they
        are removed and ``df`` is added in one commit. Every row of ``df`` must match the
        predicate (TableError otherwise). Returns the committed version.
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

    @abstractmethod
    def history(self, path: str) -> list[Commit]:
        """Commits, newest first."""

    @abstractmethod
    def transaction_version(self, path: str, app_id: str) -> int | None:
        """The latest ``app_version`` committed for ``app_id``, or None."""

    @abstractmethod
    def vacuum(self, path: str) -> list[str]:
        """Removes files no committed version references (also leftovers of failed writes).

        Returns the removed file paths.
        """
