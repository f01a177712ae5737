"""Concurrent writers of one ``rs`` Delta table never duplicate or lose rows.

- In-process tests (default suite): another writer commits through delta-rs directly between a
  write's plan and its commit (a subclass whose file writing makes that commit once), which
  shows the conflict logic itself: the write plans again, or raises ConcurrentWriteError, and
  never commits blindly.
- Races (slow): 4 Python processes, each with its own Spark session, start the same kind of
  write on one table at the same moment (a barrier file). The table is then read at every
  version and compared with the state the writers' own reported commits imply.

Run as a script, this file is one racing writer:
``python tests/test_tables_concurrency.py CASE TABLE WRITER BARRIER_DIR``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.transaction import CommitProperties, Transaction
from pyspark.sql import types as T

from ml_engine.tables import ConcurrentWriteError, RsDeltaTables, TableError

ROOT = Path(__file__).resolve().parents[1]
WRITERS = 4

SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType(), True),
        T.StructField("batch_id", T.StringType(), True),
        T.StructField("writer", T.LongType(), True),
    ]
)
SEED = -1  # the ``writer`` of rows written before a race
WRITE_DIR = re.compile(r"\d{8}T\d{6}-[0-9a-f]{16}")  # where the rs backend writes one plan's files

# Rows each case starts from (None: no table, the writers race to create it) and whether the
# table is partitioned by batch_id.
SEEDS: dict[str, list[tuple] | None] = {
    "append": None,
    "idempotent-append": [(1, "a", SEED), (2, "a", SEED)],
    "replace-new-batch": [(1, "a", SEED), (2, "a", SEED)],
    "replace-existing-batch": [(1, "a", SEED), (1, "b", SEED), (2, "b", SEED)],
    "upsert-new-keys": [(1, "s", SEED), (2, "s", SEED), (3, "s", SEED)],
    "upsert-existing-keys": [(1, "s", SEED), (2, "s", SEED), (3, "s", SEED)],
}
PARTITIONED = {"append", "idempotent-append", "replace-new-batch", "replace-existing-batch"}


def writer_rows(case: str, writer: int) -> list[tuple]:
    """The rows writer ``writer`` writes in ``case``: each writer's are distinguishable."""
    if case == "append":
        return [(writer * 10 + j, f"w{writer}", writer) for j in range(2)]
    if case == "idempotent-append":
        return [(100 + j, "i", writer) for j in range(writer + 1)]
    if case.startswith("replace"):
        return [(j, "b", writer) for j in range(writer + 1)]
    if case == "upsert-new-keys":
        return [(k, "u", writer) for k in (10, 11, 12)]
    return [(k, "u", writer) for k in (2, 3)]  # upsert-existing-keys


def after_write(state: list[tuple], case: str, writer: int) -> list[tuple]:
    """The table's rows after ``writer``'s write in ``case`` committed on top of ``state``."""
    rows = writer_rows(case, writer)
    if case.startswith("replace"):
        return [r for r in state if r[1] != "b"] + rows
    if case.startswith("upsert"):
        keys = {r[0] for r in rows}
        return [r for r in state if r[0] not in keys] + rows
    return state + rows


def race_write(tables: RsDeltaTables, case: str, df, path: str) -> int | None:
    if case == "append":
        return tables.append(df, path, partition_by=["batch_id"])
    if case == "idempotent-append":
        return tables.append(df, path, app_id="nightly", app_version=7)
    if case.startswith("replace"):
        return tables.replace_batch(df, path, "b")
    return tables.upsert(df, path, keys=["id"])


class CountingTables(RsDeltaTables):
    """The rs backend, counting the plans it writes files for."""

    plans = 0

    def _write_files(self, df, snapshot):
        self.plans += 1
        return super()._write_files(df, snapshot)


class Interleaved(CountingTables):
    """The rs backend; ``interleave`` (another writer's commit) runs once, right after the
    first plan has written its files and before that plan commits."""

    def __init__(self, spark, interleave):
        super().__init__(spark)
        self.interleave = interleave

    def _write_files(self, df, snapshot):
        adds = super()._write_files(df, snapshot)
        if self.plans == 1:
            self.interleave()
        return adds


def sorted_rows(rows) -> list[tuple]:
    return sorted((tuple(r) for r in rows), key=lambda r: tuple((v is not None, v) for v in r))


def rows_at(tables: RsDeltaTables, path, version: int | None = None) -> list[tuple]:
    return sorted_rows(tables.read(str(path), version=version).collect())


def delta_rs_rows(path) -> list[tuple]:
    """The latest rows as delta-rs itself reads them."""
    table = DeltaTable(str(path)).to_pyarrow_table()
    return sorted_rows(tuple(r[c] for c in SCHEMA.names) for r in table.to_pylist())


def arrow_rows(rows: list[tuple]) -> pa.Table:
    """``rows`` as an Arrow table of SCHEMA, for writing with delta-rs directly."""
    columns = list(zip(*rows, strict=True))
    return pa.table(
        {
            "id": pa.array(columns[0], pa.int64()),
            "batch_id": pa.array(columns[1], pa.string()),
            "writer": pa.array(columns[2], pa.int64()),
        }
    )


def committed_files(path) -> set[str]:
    return set(DeltaTable(str(path)).file_uris())


def seeded(spark, tmp_path, rows, partitioned=True) -> str:
    path = str(tmp_path / "table")
    RsDeltaTables(spark).append(
        spark.createDataFrame(rows, SCHEMA),
        path,
        partition_by=["batch_id"] if partitioned else None,
    )
    return path


# ------------------------------------------------------------------ the conflict logic, in-process


def test_a_replace_overtaken_by_rows_of_its_new_batch_plans_again_and_keeps_only_its_rows(
    spark, tmp_path
):
    path = seeded(spark, tmp_path, [(1, "a", SEED)])
    theirs = [(7, "b", 9)]
    tables = Interleaved(
        spark,
        lambda: write_deltalake(path, arrow_rows(theirs), mode="append", partition_by=["batch_id"]),
    )
    ours = [(1, "b", 1), (2, "b", 1)]

    version = tables.replace_batch(spark.createDataFrame(ours, SCHEMA), path, "b")

    assert (version, tables.plans) == (2, 2)
    assert rows_at(tables, path, 1) == sorted_rows([(1, "a", SEED), *theirs])
    assert rows_at(tables, path) == sorted_rows([(1, "a", SEED), *ours])
    assert delta_rs_rows(path) == sorted_rows([(1, "a", SEED), *ours])


def test_a_replace_overtaken_on_its_only_attempt_raises_and_commits_nothing(spark, tmp_path):
    path = seeded(spark, tmp_path, [(1, "a", SEED)])
    theirs = [(7, "b", 9)]
    tables = Interleaved(
        spark,
        lambda: write_deltalake(path, arrow_rows(theirs), mode="append", partition_by=["batch_id"]),
    )
    tables.max_write_attempts = 1
    files_before = set(os.listdir(path))

    with pytest.raises(ConcurrentWriteError) as raised:
        tables.replace_batch(spark.createDataFrame([(1, "b", 1)], SCHEMA), path, "b")

    assert str(raised.value).startswith(
        f"overwrite where \"batch_id = 'b'\" of Delta table {path} was not committed: other "
        "writers committed to what it replaces while it ran, 1 time(s) in a row (attempt 1: "
        "planned at version 0, the commit of version 1 added rows to the partitions matching "
        "\"batch_id = 'b'\"). Nothing of it is in the table (vacuum removes its files). Rerun"
    )
    assert tables.version(path) == 1
    assert rows_at(tables, path) == sorted_rows([(1, "a", SEED), *theirs])
    (ours,) = [d for d in set(os.listdir(path)) - files_before if WRITE_DIR.fullmatch(d)]
    assert not any(f"/{ours}/" in uri for uri in committed_files(path))
    assert any(f.startswith(ours + "/") for f in tables.vacuum(path))


def test_a_unique_replace_overtaken_by_one_of_its_keys_in_another_batch_plans_again(
    spark, tmp_path
):
    path = seeded(spark, tmp_path, [(1, "a", SEED), (2, "a", SEED)])
    theirs = [(3, "c", 9), (4, "c", 9)]  # key 3 is one of ours, written to another batch
    tables = Interleaved(
        spark,
        lambda: write_deltalake(path, arrow_rows(theirs), mode="append", partition_by=["batch_id"]),
    )
    ours = [(2, "b", 1), (3, "b", 1)]

    version = tables.replace_batch(spark.createDataFrame(ours, SCHEMA), path, "b", unique_by=["id"])

    assert (version, tables.plans) == (2, 2)
    assert rows_at(tables, path) == sorted_rows([(1, "a", SEED), (4, "c", 9), *ours])
    assert delta_rs_rows(path) == sorted_rows([(1, "a", SEED), (4, "c", 9), *ours])


def test_an_upsert_overtaken_by_rows_with_its_new_keys_plans_again_and_keeps_each_key_once(
    spark, tmp_path
):
    path = seeded(spark, tmp_path, [(1, "s", SEED)], partitioned=False)
    theirs = [(5, "t", 9), (6, "t", 9)]
    tables = Interleaved(spark, lambda: write_deltalake(path, arrow_rows(theirs), mode="append"))
    ours = [(5, "u", 1), (6, "u", 1)]

    version = tables.upsert(spark.createDataFrame(ours, SCHEMA), path, keys=["id"])

    assert (version, tables.plans) == (2, 2)
    assert rows_at(tables, path) == sorted_rows([(1, "s", SEED), *ours])


def test_a_replace_where_on_data_columns_plans_again_when_matching_rows_are_added(spark, tmp_path):
    path = seeded(spark, tmp_path, [(1, "s", SEED), (2, "s", SEED)], partitioned=False)
    theirs = [(15, "t", 9)]
    tables = Interleaved(spark, lambda: write_deltalake(path, arrow_rows(theirs), mode="append"))
    ours = [(11, "u", 1)]

    version = tables.overwrite(spark.createDataFrame(ours, SCHEMA), path, replace_where="id > 10")

    assert (version, tables.plans) == (2, 2)
    assert rows_at(tables, path) == sorted_rows([(1, "s", SEED), (2, "s", SEED), *ours])


def test_a_commit_outside_a_writes_scope_lets_it_commit_on_top_without_planning_again(
    spark, tmp_path
):
    path = seeded(spark, tmp_path, [(1, "a", SEED), (1, "b", SEED)])
    theirs = [(7, "c", 9)]
    tables = Interleaved(
        spark,
        lambda: write_deltalake(path, arrow_rows(theirs), mode="append", partition_by=["batch_id"]),
    )
    ours = [(2, "b", 1)]

    version = tables.replace_batch(spark.createDataFrame(ours, SCHEMA), path, "b")

    assert (version, tables.plans) == (2, 1)
    assert rows_at(tables, path) == sorted_rows([(1, "a", SEED), *theirs, *ours])
    assert DeltaTable(path).history(1)[0]["readVersion"] == 0


def test_an_idempotent_append_overtaken_by_the_same_app_version_commits_nothing(spark, tmp_path):
    path = seeded(spark, tmp_path, [(1, "a", SEED)])
    theirs = [(7, "i", 9)]
    tables = Interleaved(
        spark,
        lambda: write_deltalake(
            path,
            arrow_rows(theirs),
            mode="append",
            partition_by=["batch_id"],
            commit_properties=CommitProperties(app_transactions=[Transaction("nightly", 7)]),
        ),
    )

    result = tables.append(
        spark.createDataFrame([(8, "i", 1)], SCHEMA), path, app_id="nightly", app_version=7
    )

    assert (result, tables.version(path)) == (None, 1)
    assert rows_at(tables, path) == sorted_rows([(1, "a", SEED), *theirs])


def test_an_append_that_loses_the_creation_of_the_table_appends_to_it(spark, tmp_path):
    path = str(tmp_path / "table")
    theirs = [(7, "a", 9)]
    tables = Interleaved(
        spark,
        lambda: write_deltalake(path, arrow_rows(theirs), mode="error", partition_by=["batch_id"]),
    )
    ours = [(1, "b", 1)]

    version = tables.append(spark.createDataFrame(ours, SCHEMA), path, partition_by=["batch_id"])

    assert (version, tables.plans) == (1, 2)
    assert rows_at(tables, path, 0) == sorted_rows(theirs)
    assert rows_at(tables, path) == sorted_rows([*theirs, *ours])


def test_a_commit_waits_for_the_commit_lock_another_process_holds(spark, tmp_path):
    path = seeded(spark, tmp_path, [(1, "a", SEED)])
    tables = CountingTables(spark)
    ours = spark.createDataFrame([(2, "b", 1)], SCHEMA)
    lock = os.open(os.path.join(path, "_ml_engine_commit.lock"), os.O_RDWR)
    fcntl.flock(lock, fcntl.LOCK_EX)  # another open file: excludes this process's writers too
    try:
        tables.commit_lock_timeout_s = 0.2
        with pytest.raises(TableError, match=r"waited 0\.2 s for the commit lock"):
            tables.append(ours, path)
        assert tables.version(path) == 0

        tables.commit_lock_timeout_s = 60.0
        tables.plans = 0
        done: list[int | None] = []
        writer = threading.Thread(target=lambda: done.append(tables.append(ours, path)))
        writer.start()
        while tables.plans == 0 and writer.is_alive():
            time.sleep(0.05)
        time.sleep(1.0)  # its files are written: it is waiting for the lock
        assert (done, tables.version(path)) == ([], 0)
    finally:
        os.close(lock)
    writer.join(timeout=60)
    assert done == [1]
    assert rows_at(tables, path) == sorted_rows([(1, "a", SEED), (2, "b", 1)])


# ----------------------------------------------------------------- races of writer processes


def race(spark, tmp_path, case: str) -> tuple[str, list[tuple], dict[int, dict]]:
    """Seeds the table of ``case``, lets WRITERS processes write it at the same moment and
    returns its path, the seed rows and each writer's outcome."""
    path = str(tmp_path / "table")
    seed = SEEDS[case]
    if seed is not None:
        seeded(spark, tmp_path, seed, partitioned=case in PARTITIONED)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    logs = [tmp_path / f"writer-{w}.log" for w in range(WRITERS)]
    procs = []
    for w, log in enumerate(logs):
        with open(log, "wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, __file__, case, path, str(w), str(barrier)],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )

    def tails() -> str:
        return "\n".join(
            f"--- writer {w}:\n{log.read_text()[-3000:]}" for w, log in enumerate(logs)
        )

    try:
        deadline = time.monotonic() + 300
        while not all((barrier / f"ready-{w}").exists() for w in range(WRITERS)):
            assert all(p.poll() is None for p in procs), f"a writer died early\n{tails()}"
            assert time.monotonic() < deadline, f"writers not ready after 300 s\n{tails()}"
            time.sleep(0.05)
        (barrier / "go").touch()
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert codes == [0] * WRITERS, tails()
    outcomes = {w: json.loads((barrier / f"result-{w}.json").read_text()) for w in range(WRITERS)}
    return path, seed or [], outcomes


def check_every_version(spark, case, path, seed, outcomes) -> tuple[list[tuple], dict[int, int]]:
    """Checks that each version holds exactly the rows its committer's write gives on top of
    the previous version, that versions are contiguous and history names each commit.

    Returns:
        The latest rows and the committing writer of each version.
    """
    assert not [o for o in outcomes.values() if "conflict" in o], outcomes
    by_version = {o["version"]: w for w, o in outcomes.items() if o["version"] is not None}
    first = 0 if not seed else 1
    last = first + len(by_version) - 1
    assert sorted(by_version) == list(range(first, last + 1)), outcomes
    tables = RsDeltaTables(spark)
    assert tables.version(path) == last
    expected_operation = "MERGE" if case.startswith("upsert") else "WRITE"
    history = {c.version: c for c in tables.history(path)}
    assert sorted(history) == list(range(last + 1))
    state = list(seed)
    if seed:
        assert rows_at(tables, path, 0) == sorted_rows(seed)
    for version in range(first, last + 1):
        state = after_write(state, case, by_version[version])
        assert rows_at(tables, path, version) == sorted_rows(state), f"version {version}"
        assert history[version].operation == expected_operation
    assert delta_rs_rows(path) == sorted_rows(state)
    return sorted_rows(state), by_version


@pytest.mark.slow
def test_racing_appends_of_different_batches_to_a_new_table_all_land_once(spark, tmp_path):
    path, seed, outcomes = race(spark, tmp_path, "append")

    latest, by_version = check_every_version(spark, "append", path, seed, outcomes)

    assert sorted(by_version) == [0, 1, 2, 3]
    assert latest == sorted_rows(r for w in range(WRITERS) for r in writer_rows("append", w))


@pytest.mark.slow
def test_racing_idempotent_appends_of_one_app_version_commit_once(spark, tmp_path):
    path, seed, outcomes = race(spark, tmp_path, "idempotent-append")

    latest, by_version = check_every_version(spark, "idempotent-append", path, seed, outcomes)

    assert list(by_version) == [1]
    assert [o["version"] for o in outcomes.values()].count(None) == WRITERS - 1
    assert latest == sorted_rows([*seed, *writer_rows("idempotent-append", by_version[1])])
    assert DeltaTable(path).transaction_version("nightly") == 7


@pytest.mark.slow
def test_racing_replaces_of_a_new_batch_leave_the_last_committers_rows_only(spark, tmp_path):
    path, seed, outcomes = race(spark, tmp_path, "replace-new-batch")

    latest, by_version = check_every_version(spark, "replace-new-batch", path, seed, outcomes)

    assert sorted(by_version) == [1, 2, 3, 4]
    last = by_version[4]
    assert latest == sorted_rows([*seed, *writer_rows("replace-new-batch", last)])


@pytest.mark.slow
def test_racing_replaces_of_an_existing_batch_leave_the_last_committers_rows_only(spark, tmp_path):
    case = "replace-existing-batch"
    path, seed, outcomes = race(spark, tmp_path, case)

    latest, by_version = check_every_version(spark, case, path, seed, outcomes)

    assert sorted(by_version) == [1, 2, 3, 4]
    assert latest == sorted_rows([(1, "a", SEED), *writer_rows(case, by_version[4])])


@pytest.mark.slow
def test_racing_upserts_of_new_keys_keep_each_key_once_from_the_last_committer(spark, tmp_path):
    path, seed, outcomes = race(spark, tmp_path, "upsert-new-keys")

    latest, by_version = check_every_version(spark, "upsert-new-keys", path, seed, outcomes)

    # Each upsert is all or nothing: every key once, all of them from the last committer.
    assert sorted(by_version) == [1, 2, 3, 4]
    assert latest == sorted_rows([*seed, *writer_rows("upsert-new-keys", by_version[4])])


@pytest.mark.slow
def test_racing_upserts_of_existing_keys_keep_each_key_once_from_the_last_committer(
    spark, tmp_path
):
    path, seed, outcomes = race(spark, tmp_path, "upsert-existing-keys")

    latest, by_version = check_every_version(spark, "upsert-existing-keys", path, seed, outcomes)

    assert sorted(by_version) == [1, 2, 3, 4]
    last = by_version[4]
    assert latest == sorted_rows([(1, "s", SEED), (2, "u", last), (3, "u", last)])


# ------------------------------------------------------------------------- the racing writer


def writer_main(case: str, path: str, writer: int, barrier: Path) -> None:
    """One racing writer: its own small Spark session, its write started on the barrier."""
    from ml_engine.config import SparkConfig
    from ml_engine.session import build_session

    spark = build_session(
        SparkConfig(
            master="local[1]",
            app_name=f"ml-engine-race-{case}-{writer}",
            conf={
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.sql.shuffle.partitions": "1",
                "spark.default.parallelism": "1",
                "spark.sql.adaptive.enabled": "false",
                "spark.driver.memory": "512m",
                "spark.sql.ansi.enabled": "true",
            },
        ),
        quiet=True,
    )
    tables = CountingTables(spark)
    df = spark.createDataFrame(writer_rows(case, writer), SCHEMA).cache()
    df.count()  # Spark warmed up: the writes start together when the barrier opens
    (barrier / f"ready-{writer}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.002)
    started = time.monotonic()
    outcome: dict = {"writer": writer}
    try:
        outcome["version"] = race_write(tables, case, df, path)
    except ConcurrentWriteError as exc:
        outcome["conflict"] = str(exc)
    outcome.update(plans=tables.plans, seconds=round(time.monotonic() - started, 2))
    (barrier / f"result-{writer}.json").write_text(json.dumps(outcome))
    spark.stop()


if __name__ == "__main__":
    writer_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))
