"""Batches that are complete or invisible: the run log and the tables as jobs see them.

A job writes several tables (ingest: ``bronze`` and ``quarantine``; clean: ``silver``,
``quarantine`` and ``dq_metrics``), each in its own Delta commit. A crash between two commits
leaves the first table with the batch's new rows and the second without them. So a job's
batch becomes visible to other jobs only through the **run log** (the ``job_runs`` table),
written last: one row per (run, table, batch) with the table version the run committed.

:class:`BatchCatalog` wraps a table backend for the jobs of one run:

* every commit made through it is remembered, and :meth:`BatchCatalog.complete_run` appends
  them to the run log when the job has finished; the run's batch and every batch whose
  partition a commit touched (read from the commit itself) are recorded;
* :meth:`BatchCatalog.read_batch` reads a batch at the version its latest completed run
  recorded, :meth:`BatchCatalog.read_complete` reads every complete batch that way, and
  :meth:`BatchCatalog.batches` lists the complete batches. Rows a crashed run committed are
  never seen; a rerun of the batch completes it. A recorded version whose log entries Delta's
  log retention removed is read as the latest version when no commit the log still holds
  changed the batch since (:func:`readable_from`). Which batches a commit touched comes
  from the table's commit files, read as they are (:mod:`ml_engine.tables.log`: a local
  directory, or any file system Spark reads, object stores included).

Every commit made through a :class:`BatchCatalog` is marked (``commitInfo.userMetadata`` is
:data:`CATALOG_MARK`). A table with a marked commit that the run log does not know yet (its
first run stopped before the run log write) has no complete batch. A table none of whose
commits is marked (written before the run log existed, or by another tool) is read as it is.

Example::

    catalog = BatchCatalog(open_tables(spark, "rs"), cfg.storage.table_path("job_runs"))
    bronze = catalog.read_batch(cfg.storage.table_path("bronze"), "2026-11-28")
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.tables.base import (
    BATCH_COLUMN,
    BatchNotFoundError,
    DeltaTables,
    TableError,
    batch_not_found,
    quote_name,
    with_columns_of,
)
from ml_engine.tables.log import DeltaLog, delta_log

RUNS_TABLE = "job_runs"
#: ``userMetadata`` of every commit made through a BatchCatalog.
CATALOG_MARK = "ml-engine: visible through the job_runs run log"

RUNS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("job", T.StringType(), False),
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("table_path", T.StringType(), False),
        T.StructField("table_version", T.LongType(), False),
        T.StructField("completed_at", T.TimestampType(), False),
    ]
)


def touched_batches(log: DeltaLog, version: int) -> set[str] | None:
    """The ``batch_id`` partitions that commit ``version`` of the table added or removed files
    in, read from the commit file in ``log``; None when unknown (the commit file is gone, or
    the table is not partitioned by batch)."""
    found = _file_batches(log.read(_commit_name(version)))
    if found is None or all(b is _NO_BATCH for b in found):
        return None
    return {b for b in found if b is not _NO_BATCH and b is not None}


# A file whose partition values hold no batch_id (a table not partitioned by batch).
_NO_BATCH = object()


def _commit_name(version: int) -> str:
    return f"{version:020d}.json"


def _file_batches(commit: str | None) -> list[Any] | None:
    """The ``batch_id`` partition value of every file the commit file's text ``commit`` adds
    or removes (:data:`_NO_BATCH` for a file without one); None when there is no commit.

    Files added or removed with ``dataChange: false`` are left out: such a commit (a
    compaction, Delta's ``OPTIMIZE``) rewrites files without changing a row, so a batch it
    rewrote reads the same at the versions before and after it."""
    if commit is None:
        return None
    found = []
    for line in commit.splitlines():
        action = json.loads(line) if line.strip() else {}
        for kind in ("add", "remove"):
            if kind in action and action[kind].get("dataChange", True) is not False:
                values = action[kind].get("partitionValues") or {}
                found.append(values.get(BATCH_COLUMN, _NO_BATCH))
    return found


def rewritten_after(
    log: DeltaLog, recorded: dict[str, int], latest: int, oldest: int | None
) -> set[str] | None:
    """The batches of ``recorded`` (batch -> version) whose files a commit after that version,
    up to ``latest``, added or removed (a run that has not completed: a completed one records
    the batches it touched), read from the commit files in ``log``; None when a commit in
    between cannot be read or touched a file outside the batch partitions. Commits up to
    ``oldest``, the log's oldest readable version (:func:`readable_from`), whose entries
    Delta's log retention removed are not counted."""
    if max(recorded.values(), default=latest) > latest:  # the table was made anew
        return None
    versions = range(min(recorded.values(), default=latest) + 1, latest + 1)
    commits = log.read_all([_commit_name(v) for v in versions])
    last_touched: dict[Any, int] = {}
    for version, commit in zip(versions, commits, strict=True):
        found = _file_batches(commit)
        if found is None and oldest is not None and version <= oldest:
            continue  # removed by the log retention: its batches are unknown
        if found is None or any(b is _NO_BATCH for b in found):
            return None
        last_touched.update(dict.fromkeys(found, version))
    return {b for b, v in recorded.items() if last_touched.get(b, -1) > v}


def readable_from(log: DeltaLog) -> int | None:
    """The oldest version of the table the Delta log can still give: 0 while the first commit
    is kept, else its oldest checkpoint (Delta's log retention, ``delta.logRetentionDuration``,
    removes the entries before a checkpoint once they are old enough, and with them every
    version before it); None when there is no log to list."""
    if log.exists(_commit_name(0)):  # the whole log is kept: no need to list it
        return 0
    names = log.names()
    if names is None:
        return None
    commits, checkpoints = [], []
    for name in names:
        stem, _, rest = name.partition(".")
        if len(stem) == 20 and stem.isdigit():
            if rest == "json":
                commits.append(int(stem))
            elif rest.startswith("checkpoint"):
                checkpoints.append(int(stem))
    return min(checkpoints, default=min(commits, default=0))


def _version_to_read(
    path: str,
    batch_id: str,
    version: int,
    latest: int,
    rewritten: set[str] | None,
    oldest: int | None,
) -> int:
    """The version to read batch ``batch_id``, recorded at ``version``, at: ``latest`` when no
    commit since changed it (``rewritten``: :func:`rewritten_after`), else ``version``.

    Raises:
        BatchNotFoundError: ``version`` is older than ``oldest``, the log's oldest readable
            version, and a commit since changed the batch (a run that did not complete) or
            the commits cannot show whether one did.
    """
    if rewritten is not None and batch_id not in rewritten:
        return latest
    if oldest is not None and version < oldest:
        later = (
            "a later run of it did not complete"
            if rewritten is not None
            else "its commits since cannot show whether another run changed it"
        )
        raise BatchNotFoundError(
            f"batch '{batch_id}' of Delta table {path}: its last complete run recorded version "
            f"{version}, which the Delta log no longer holds (the entries before version "
            f"{oldest} were removed by the table's log retention, delta.logRetentionDuration), "
            f"and {later}. Rerun the jobs of batch '{batch_id}'"
        )
    return version


class BatchCatalog:
    """A table backend seen through the run log (see the module docstring).

    Args:
        tables: the backend doing the reads and writes.
        runs_path: where the run log table lives (``storage.table_path("job_runs")``).

    Every method of the backend not defined here is passed through.
    """

    def __init__(self, tables: DeltaTables, runs_path: str):
        self.tables = tables.tagged(CATALOG_MARK)
        self.runs_path = runs_path
        self.committed: dict[str, int] = {}

    #: The number of run log files at which :meth:`complete_run` compacts the run log.
    compact_run_log_at = 64

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tables, name)

    @property
    def spark(self):
        return self.tables.spark

    @property
    def name(self) -> str:
        return self.tables.name

    # ------------------------------------------------------------------------------ writes

    def _remember(self, path: str, version: int | None) -> int | None:
        if version is not None:
            self.committed[path] = max(version, self.committed.get(path, version))
        return version

    def create(self, path: str, schema: T.StructType, partition_by: list[str] | None = None):
        return self._remember(path, self.tables.create(path, schema, partition_by))

    def append(self, df: DataFrame, path: str, partition_by=None, app_id=None, app_version=None):
        return self._remember(path, self.tables.append(df, path, partition_by, app_id, app_version))

    def overwrite(
        self,
        df: DataFrame,
        path: str,
        partition_by=None,
        replace_where=None,
        unique_by=None,
        replace_schema=False,
        add_columns=False,
    ):
        return self._remember(
            path,
            self.tables.overwrite(
                df,
                path,
                partition_by,
                replace_where,
                unique_by,
                replace_schema=replace_schema,
                add_columns=add_columns,
            ),
        )

    def upsert(self, df: DataFrame, path: str, keys: list[str], partition_by=None):
        return self._remember(path, self.tables.upsert(df, path, keys, partition_by))

    def replace_batch(
        self,
        df: DataFrame,
        path: str,
        batch_id: str,
        within=None,
        unique_by=None,
        add_columns=False,
    ) -> int:
        return self._remember(
            path, self.tables.replace_batch(df, path, batch_id, within, unique_by, add_columns)
        )

    def complete_run(self, job: str, batch_id: str) -> list[tuple]:
        """Records the commits of the run that just finished (the run log's last write).

        Returns:
            The run log rows written (empty when the job committed nothing).
        """
        if not self.committed:
            return []
        run_id = uuid.uuid4().hex
        now = datetime.now(timezone.utc)
        rows = []
        for path, version in sorted(self.committed.items()):
            touched = touched_batches(delta_log(path, self.spark), version)
            batches = {batch_id} | (touched or set())
            logged = self.logged_path(path)
            rows += [(run_id, job, b, logged, int(version), now) for b in sorted(batches)]
        self.tables.append_rows(rows, RUNS_SCHEMA, self.runs_path, f"ml-engine-run-{run_id}", 1)
        self.committed = {}
        self._compact_run_log()
        return rows

    def _compact_run_log(self) -> None:
        """Compacts the run log once it has :attr:`compact_run_log_at` files: every job reads
        it whole, and each run appends a file, so a year of daily runs would leave thousands
        of tiny files to open on every read. The run is complete before this; a compaction
        that fails (one another process made at the same moment) changes nothing and is left
        to the next run."""
        try:
            self.tables.compact(self.runs_path, min_files=self.compact_run_log_at)
        except TableError:
            pass

    def logged_path(self, path: str) -> str:
        """How the run log names the table at ``path``: by its name when it lies beside the
        run log (``bronze``), so a storage root keeps its batches when it is moved or copied;
        else by its path."""
        return _logged_path(path, self.runs_path)

    # ------------------------------------------------------------------------------- reads

    def visible(self, path: str) -> dict[str, int] | None:
        """Batch -> the table version its latest completed run recorded; None when the table
        is read as it is (no record in the run log and no commit made through a catalog)."""
        runs = []
        for log in dict.fromkeys([self.runs_path, _run_log_beside(path, self.runs_path)]):
            # This root's run log, else the one beside a table of another root (the bronze
            # table of a project that loads the labels).
            names = [_logged_path(path, log), path]
            runs = self.tables.log_rows(
                log, ["batch_id", "table_version", "completed_at"], {"table_path": names}
            )
            if runs:
                break
        if not runs:
            return {} if self._marked(path) else None
        latest: dict[str, int] = {}
        for run in sorted(runs, key=lambda r: (r["completed_at"], r["table_version"])):
            latest[run["batch_id"]] = int(run["table_version"])
        return latest

    def _marked(self, path: str) -> bool:
        """True when a commit of the table was made through a catalog."""
        if not self.tables.exists(path):
            return False
        return any(c.user_metadata == CATALOG_MARK for c in self.tables.history(path))

    def batches(self, path: str, version: int | None = None) -> list[str]:
        """The complete batches of the table (all batches when the run log does not know it)."""
        visible = None if version is not None else self.visible(path)
        if visible is None:
            return self.tables.batches(path, version=version)
        return sorted(visible)

    def require_batch(self, path: str, batch_id: str, version: int | None = None) -> None:
        """Checks that batch ``batch_id`` of the table is complete.

        Raises:
            BatchNotFoundError: the batch has no completed run; the message names the complete
                batches, and says when rows of a run that stopped midway are there.
        """
        visible = None if version is not None else self.visible(path)
        if visible is None:
            self.tables.require_batch(path, batch_id, version=version)
            return
        if batch_id not in visible:
            raise BatchNotFoundError(_not_complete(self.tables, path, batch_id, visible))

    def read_batch(self, path: str, batch_id: str, version: int | None = None) -> DataFrame:
        """The rows of a complete batch, at the version its latest completed run recorded.

        Raises:
            BatchNotFoundError: the batch has no completed run (see :meth:`require_batch`).
        """
        visible = None if version is not None else self.visible(path)
        if visible is None:
            return self.tables.read_batch(path, batch_id, version=version)
        if batch_id not in visible:
            raise BatchNotFoundError(_not_complete(self.tables, path, batch_id, visible))
        return self._recorded_rows(path, batch_id, visible[batch_id])

    def batch_rows(self, path: str, batch_id: str, version: int | None = None) -> DataFrame:
        """The rows of batch ``batch_id`` as its latest completed run left them; empty when no
        completed run wrote rows of it (rows of a run that stopped midway are not counted)."""
        visible = None if version is not None else self.visible(path)
        if visible is None:
            return self.tables.batch_rows(path, batch_id, version=version)
        if batch_id not in visible:
            return self.tables.read_batches(path, [])
        return self._recorded_rows(path, batch_id, visible[batch_id])

    def read_complete(self, path: str) -> tuple[DataFrame, int]:
        """Every complete batch of the table, each as its recorded version holds it (read from
        the latest version when no commit has touched the batch since; see
        :func:`rewritten_after`).

        Returns:
            ``(rows, version)``: ``version`` is the newest version a complete run recorded
            (the table's latest version when the run log does not know the table).
        """
        visible = self.visible(path)
        if visible is None:
            version = self.tables.version(path)
            return self.tables.read(path, version=version), version
        if not visible:
            raise BatchNotFoundError(
                f"Delta table {path} has rows but no completed run: the job writing it stopped "
                "before it finished. Rerun that job; complete batches: none"
            )
        # A batch no commit has touched since its recorded version has the same files at the
        # latest version: all such batches are one read of the latest version, instead of a
        # read (a snapshot and a scan) per recorded version.
        latest, oldest, rewritten = self._history(path, visible)
        by_version: dict[int, list[str]] = defaultdict(list)
        for batch, version in visible.items():
            at = _version_to_read(path, batch, version, latest, rewritten, oldest)
            by_version[at].append(batch)
        parts = [
            self._as_latest(
                path,
                self.tables.read_batches(path, sorted(batches), version=v),
            )
            for v, batches in sorted(by_version.items())
        ]
        rows = parts[0]
        for part in parts[1:]:
            rows = rows.unionByName(part)
        return rows, max(visible.values())

    def pinned_versions(self, path: str) -> dict[int, list[str]]:
        """Version -> the complete batches jobs read at that version rather than the latest
        one (a later run of them did not complete, or the commits since cannot show that none
        did; see :func:`rewritten_after`): the versions a vacuum must keep readable. Versions
        the log no longer holds are left out (nothing can read them)."""
        visible = self.visible(path)
        if not visible:
            return {}
        latest, oldest, rewritten = self._history(path, visible)
        pinned: dict[int, list[str]] = defaultdict(list)
        for batch, version in sorted(visible.items()):
            readable = version < latest and (oldest is None or version >= oldest)
            if readable and (rewritten is None or batch in rewritten):
                pinned[version].append(batch)
        return dict(pinned)

    def _recorded_rows(self, path: str, batch_id: str, version: int) -> DataFrame:
        """The batch's rows as ``version``, recorded by its latest complete run, holds them:
        read at the latest version when no commit since has changed the batch (a compaction
        may have replaced its files there, and a vacuum then deleted those of ``version``),
        else at ``version``.

        Raises:
            BatchNotFoundError: the log no longer holds ``version`` and a later commit it holds
                changed the batch (a run that did not complete), or cannot be read.
        """
        latest, oldest, rewritten = self._history(path, {batch_id: version})
        version = _version_to_read(path, batch_id, version, latest, rewritten, oldest)
        return self._as_latest(path, self.tables.batch_rows(path, batch_id, version))

    def _history(
        self, path: str, recorded: dict[str, int]
    ) -> tuple[int, int | None, set[str] | None]:
        """``(latest, oldest, rewritten)`` of the table at ``path`` for batches ``recorded``
        at their versions: its latest version, the oldest version its log still holds
        (:func:`readable_from`) and the batches a commit since their version changed
        (:func:`rewritten_after`)."""
        latest = self.tables.version(path)
        log = delta_log(path, self.spark)
        oldest = readable_from(log)
        return latest, oldest, rewritten_after(log, recorded, latest, oldest)

    def _as_latest(self, path: str, rows: DataFrame) -> DataFrame:
        """``rows`` of a recorded version in the table's latest columns: a batch recorded
        before a column was added (``add_columns``) reads null in it."""
        latest = self.tables.schema(path)
        if rows.columns == latest.names:
            return rows
        return with_columns_of(rows, latest).select(*[F.col(quote_name(n)) for n in latest.names])


def _not_complete(tables: DeltaTables, path: str, batch_id: str, visible: dict[str, int]) -> str:
    complete = sorted(visible)
    shown = ", ".join(complete[-20:]) or "none"
    try:
        present = batch_id in tables.batches(path)
    except TableError:
        present = False
    if present:
        return (
            f"batch '{batch_id}' of Delta table {path} has rows but no completed run: the job "
            f"writing it stopped before it finished. Rerun that job for this batch; complete "
            f"batches: {shown}"
        )
    return batch_not_found(path, batch_id, complete)


def _folder_and_name(path: str) -> tuple[str, str]:
    """A path's (or URI's) folder and last name."""
    path = path.rstrip("/")
    folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
    return folder, name


def _run_log_beside(path: str, runs_path: str) -> str:
    """Where the run log of the storage root holding the table at ``path`` would be: named as
    ``runs_path``, in the table's folder."""
    return f"{_folder_and_name(path)[0]}/{_folder_and_name(runs_path)[1]}"


def _logged_path(path: str, runs_path: str) -> str:
    """See :meth:`BatchCatalog.logged_path`."""
    folder, name = _folder_and_name(path)
    return name if folder == _folder_and_name(runs_path)[0] else path


def logged_runs_of_batch(runs_path: str, path: str, batch_id: str) -> list[tuple[str, datetime]]:
    """``(job, completed_at)`` of each completed run that wrote batch ``batch_id`` of the table
    at ``path``, oldest first, read from the run log at ``runs_path`` by delta-rs (no Spark:
    the checks before a job starts use it); empty when there is no run log."""
    from ml_engine.tables.rs import log_rows

    runs = log_rows(
        runs_path,
        ["job", "completed_at"],
        {"batch_id": [batch_id], "table_path": [_logged_path(path, runs_path), path]},
    )
    return sorted(((r["job"], r["completed_at"]) for r in runs), key=lambda r: r[1])
