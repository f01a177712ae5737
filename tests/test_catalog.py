"""The run log: a job's batch is visible downstream only once all of its tables are committed."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable

from ml_engine.catalog import (
    CATALOG_MARK,
    BatchCatalog,
    readable_from,
    rewritten_after,
    touched_batches,
)
from ml_engine.config import build_config
from ml_engine.jobs import run_job
from ml_engine.results import JobError
from ml_engine.tables import BatchNotFoundError, TableError, open_tables
from ml_engine.tables.log import DeltaLog, HadoopDeltaLog, delta_log

SCHEMA = "id string, value int, batch_id string"


class Uri(str):
    """A ``file://`` URI that joins like a path: tables given by URI, as on an object store,
    whose log the catalog reads through Spark's Hadoop file system."""

    def __truediv__(self, name: str) -> Uri:
        return Uri(f"{self}/{name}")


@pytest.fixture
def catalog(request, spark, tmp_path):
    """(catalog, root of its tables): a directory, or with the parameter "uri" its
    ``file://`` URI."""
    tables = open_tables(spark, "rs")
    root = tmp_path / "tables"
    if getattr(request, "param", "path") == "uri":
        root = Uri(f"file://{root}")
    return BatchCatalog(tables, str(root / "job_runs")), root


BOTH = pytest.mark.parametrize("catalog", ["path", "uri"], indirect=True)
URI = pytest.mark.parametrize("catalog", ["uri"], indirect=True)


def local(path: str) -> str:
    return path.removeprefix("file://")


def rows(spark, batch, *values):
    return spark.createDataFrame([(f"{batch}-{v}", v, batch) for v in values], SCHEMA)


def write_run(catalog, spark, path, batch, *values, job="ingest", complete=True):
    catalog.replace_batch(rows(spark, batch, *values), path, batch)
    if complete:
        catalog.complete_run(job, batch)
    else:
        catalog.committed = {}  # the process died before the run log write


def test_a_batch_is_visible_only_after_its_run_completes(spark, catalog):
    catalog, root = catalog
    a, b = str(root / "a"), str(root / "b")
    write_run(catalog, spark, a, "b1", 1, 2)
    catalog.replace_batch(rows(spark, "b2", 3), a, "b2")  # first table of a run ...
    catalog.committed = {}  # ... that died before its second table and the run log
    assert catalog.batches(a) == ["b1"]
    with pytest.raises(BatchNotFoundError) as err:
        catalog.read_batch(a, "b2")
    assert str(err.value) == (
        f"batch 'b2' of Delta table {a} has rows but no completed run: the job writing it "
        "stopped before it finished. Rerun that job for this batch; complete batches: b1"
    )
    write_run(catalog, spark, a, "b2", 3)
    catalog.replace_batch(rows(spark, "b2", 30), b, "b2")
    catalog.complete_run("ingest", "b2")
    assert_df_equality(catalog.read_batch(a, "b2"), rows(spark, "b2", 3), ignore_nullable=True)


def test_batch_rows_are_empty_for_a_batch_without_a_completed_run(spark, catalog):
    catalog, root = catalog
    a = str(root / "a")
    write_run(catalog, spark, a, "b1", 1, 2)
    write_run(catalog, spark, a, "b2", 3, complete=False)  # died before the run log
    empty = spark.createDataFrame([], SCHEMA)
    assert_df_equality(
        catalog.batch_rows(a, "b1"),
        rows(spark, "b1", 1, 2),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    assert_df_equality(catalog.batch_rows(a, "b2"), empty, ignore_nullable=True)
    assert_df_equality(catalog.batch_rows(a, "b9"), empty, ignore_nullable=True)
    # The backend itself reads what is committed, complete or not; as of a version too.
    assert_df_equality(
        catalog.tables.batch_rows(a, "b2"), rows(spark, "b2", 3), ignore_nullable=True
    )
    assert_df_equality(catalog.tables.batch_rows(a, "b2", version=0), empty, ignore_nullable=True)


def test_a_first_run_that_stopped_before_the_run_log_leaves_nothing_visible(spark, catalog):
    # The first ever run of a job (no job_runs table yet) commits its first table and dies,
    # as ingest killed after its quarantine commit or clean after its silver commit.
    catalog, root = catalog
    first, untouched = str(root / "quarantine"), str(root / "bronze")
    catalog.replace_batch(rows(spark, "b1", 1, 2), first, "b1")
    catalog.committed = {}
    assert not (root / "job_runs").exists()
    assert [c.user_metadata for c in catalog.tables.history(first)] == [CATALOG_MARK]
    assert catalog.batches(first) == []
    with pytest.raises(BatchNotFoundError) as err:
        catalog.read_batch(first, "b1")
    assert str(err.value) == (
        f"batch 'b1' of Delta table {first} has rows but no completed run: the job writing it "
        "stopped before it finished. Rerun that job for this batch; complete batches: none"
    )
    with pytest.raises(BatchNotFoundError) as err:
        catalog.read_complete(first)
    assert str(err.value) == (
        f"Delta table {first} has rows but no completed run: the job writing it stopped "
        "before it finished. Rerun that job; complete batches: none"
    )
    # A table no catalog ever wrote (another tool's) is read as it is, run log or not.
    foreign = str(root / "foreign")
    bare = open_tables(spark, "rs")
    bare.replace_batch(rows(spark, "b1", 7), foreign, "b1")
    assert [c.user_metadata for c in bare.history(foreign)] == [None]
    assert catalog.batches(foreign) == ["b1"]
    # The rerun completes the batch; the other table of the run appears with it.
    catalog.replace_batch(rows(spark, "b1", 1, 2), first, "b1")
    catalog.replace_batch(rows(spark, "b1", 3), untouched, "b1")
    catalog.complete_run("ingest", "b1")
    assert_df_equality(
        catalog.read_batch(first, "b1"),
        rows(spark, "b1", 1, 2),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert_df_equality(
        catalog.read_batch(untouched, "b1"), rows(spark, "b1", 3), ignore_nullable=True
    )
    assert catalog.batches(foreign) == ["b1"]


def test_an_interrupted_rerun_leaves_the_batch_as_the_last_complete_run_wrote_it(spark, catalog):
    catalog, root = catalog
    path = str(root / "a")
    write_run(catalog, spark, path, "b1", 1, 2)
    write_run(catalog, spark, path, "b2", 5)
    write_run(catalog, spark, path, "b1", 7, 8, 9, complete=False)
    assert_df_equality(
        catalog.read_batch(path, "b1"),
        rows(spark, "b1", 1, 2),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    complete, version = catalog.read_complete(path)
    assert_df_equality(
        complete,
        rows(spark, "b1", 1, 2).unionByName(rows(spark, "b2", 5)),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert version == 1  # b1 at v0, b2 at v1; the interrupted v2 is not read
    write_run(catalog, spark, path, "b1", 7, 8, 9)
    assert sorted(r.value for r in catalog.read_complete(path)[0].collect()) == [5, 7, 8, 9]


@BOTH
def test_complete_batches_untouched_since_their_run_are_one_read_of_the_latest_version(
    spark, catalog, capsys
):
    catalog, root = catalog
    path = str(root / "a")
    for i, batch in enumerate(("b1", "b2", "b3", "b4")):  # versions 0 to 3
        write_run(catalog, spark, path, batch, i, 10 + i)
    write_run(catalog, spark, path, "b2", 99, complete=False)  # version 4: a rerun that died
    recorded = {"b1": 0, "b2": 1, "b3": 2, "b4": 3}
    log = delta_log(path, spark)
    assert type(log) is (HadoopDeltaLog if path.startswith("file://") else DeltaLog)
    assert readable_from(log) == 0
    assert rewritten_after(log, recorded, 4, 0) == {"b2"}
    assert rewritten_after(log, recorded, 3, 0) == set()
    # a commit that cannot be read (its file gone)
    assert rewritten_after(log, recorded, 5, 0) is None

    complete, version = catalog.read_complete(path)

    expected = [rows(spark, b, i, 10 + i) for i, b in enumerate(("b1", "b2", "b3", "b4"))]
    assert_df_equality(
        complete,
        expected[0].unionByName(expected[1]).unionByName(expected[2]).unionByName(expected[3]),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    assert version == 3
    # b1, b3 and b4: one scan of version 4; b2: a scan of version 1
    complete.explain(extended=True)
    analysed = capsys.readouterr().out.split("== Analyzed Logical Plan ==")[1]
    assert analysed.split("== Optimized Logical Plan ==")[0].count("Relation [") == 2


@URI
def test_the_run_log_records_every_batch_a_commit_touched(spark, catalog):
    catalog, root = catalog
    path = str(root / "a")
    catalog.overwrite(
        rows(spark, "b1", 1).unionByName(rows(spark, "b2", 2)), path, partition_by=["batch_id"]
    )
    assert touched_batches(delta_log(path, spark), 0) == {"b1", "b2"}
    assert touched_batches(delta_log(path, spark), 1) is None  # no such commit
    written = catalog.complete_run("build_features", "b9")
    assert sorted((r[1], r[2], r[3], r[4]) for r in written) == [
        ("build_features", "b1", "a", 0),  # named as it lies beside the run log
        ("build_features", "b2", "a", 0),
        ("build_features", "b9", "a", 0),
    ]


def test_an_empty_batch_of_a_complete_run_is_visible_and_empty(spark, catalog):
    catalog, root = catalog
    path = str(root / "a")
    write_run(catalog, spark, path, "b1", 1)
    catalog.replace_batch(spark.createDataFrame([], SCHEMA), path, "b2")
    catalog.complete_run("ingest", "b2")
    assert catalog.batches(path) == ["b1", "b2"]
    assert catalog.read_batch(path, "b2").collect() == []


def test_run_job_records_nothing_when_the_job_fails(spark, tmp_path, sample_schema_path):
    cfg = build_config(
        {
            "schema": str(sample_schema_path),
            "storage": {"root": str(tmp_path)},
            "ingest": {"path": str(tmp_path / "raw" / "day1")},
        }
    )
    (tmp_path / "raw" / "day1").mkdir(parents=True)
    (tmp_path / "raw" / "day1" / "x.csv").write_text("transaction_id\n")
    tables = open_tables(spark, "rs")
    run_job("ingest", spark, cfg, tables)
    runs = tables.read(cfg.storage.table_path("job_runs")).collect()
    assert sorted((r.job, r.batch_id, r.table_path) for r in runs) == [
        ("ingest", "day1", "bronze"),  # by name: the storage root can move
        ("ingest", "day1", "quarantine"),
    ]
    cfg.batch_id = "day2"
    with pytest.raises(JobError):
        run_job("clean", spark, cfg, tables)
    assert tables.read(cfg.storage.table_path("job_runs")).count() == 2


def test_a_copied_storage_root_keeps_its_batches(spark, catalog, tmp_path):
    import shutil

    cat, root = catalog
    write_run(cat, spark, str(root / "t"), "b1", 1, 2)
    write_run(cat, spark, str(root / "t"), "b2", 3, job="clean", complete=False)  # stopped
    moved = tmp_path / "elsewhere" / "tables"
    shutil.copytree(root, moved)
    copy = BatchCatalog(open_tables(spark, "rs"), str(moved / "job_runs"))
    assert_df_equality(
        copy.read_batch(str(moved / "t"), "b1"),
        rows(spark, "b1", 1, 2),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    assert copy.visible(str(moved / "t")) == {"b1": 0}
    # a table outside the run log's folder keeps its path
    assert cat.logged_path("/data/labels") == "/data/labels"
    assert cat.logged_path(str(root / "t")) == "t"


@BOTH
def test_a_table_of_another_storage_root_is_read_as_its_own_run_log_records_it(
    spark, catalog, tmp_path
):
    # the bronze table of a project of its own that loads the labels, read by the main
    # project's build_training_set: its batches are the ones its own run log completed
    labels_cat, labels_root = catalog
    labels = str(labels_root / "bronze")
    write_run(labels_cat, spark, labels, "2026-06-01", 1, 2)
    write_run(labels_cat, spark, labels, "2026-06-02", 3, complete=False)  # stopped
    main = BatchCatalog(open_tables(spark, "rs"), str(tmp_path / "main" / "tables" / "job_runs"))
    assert main.visible(labels) == {"2026-06-01": 0}
    assert_df_equality(
        main.read_complete(labels)[0],
        rows(spark, "2026-06-01", 1, 2),
        ignore_nullable=True,
        ignore_row_order=True,
    )


def expire_log_before_checkpoint(path: str) -> int:
    """What Delta's log retention (delta-spark: ``delta.logRetentionDuration``, 30 days) does to
    old entries at a checkpoint: a checkpoint of the latest version, every commit file before
    it deleted. Returns the checkpoint's version."""
    table = DeltaTable(local(path))
    table.create_checkpoint()
    for commit in (Path(local(path)) / "_delta_log").glob("*.json"):
        if int(commit.name.split(".")[0]) < table.version():
            commit.unlink()
    return table.version()


@URI
def test_batches_recorded_at_versions_the_log_no_longer_holds_are_read_at_the_latest(
    spark, catalog
):
    catalog, root = catalog
    a = str(root / "a")
    write_run(catalog, spark, a, "b1", 1, 2)  # version 0
    write_run(catalog, spark, a, "b2", 3)  # version 1
    write_run(catalog, spark, a, "b3", 4, 5)  # version 2
    assert expire_log_before_checkpoint(a) == 2
    with pytest.raises(TableError):  # b1's version cannot be loaded any more
        catalog.tables.read(a, version=0)
    every = rows(spark, "b1", 1, 2).unionByName(rows(spark, "b2", 3))
    every = every.unionByName(rows(spark, "b3", 4, 5))
    complete, version = catalog.read_complete(a)
    assert version == 2
    assert_df_equality(complete, every, ignore_nullable=True, ignore_row_order=True)
    assert_df_equality(
        catalog.read_batch(a, "b1"), rows(spark, "b1", 1, 2), ignore_nullable=True,
        ignore_row_order=True,
    )  # fmt: skip
    assert_df_equality(catalog.batch_rows(a, "b2"), rows(spark, "b2", 3), ignore_nullable=True)


def test_a_batch_an_unfinished_run_changed_after_its_expired_version_is_refused(spark, catalog):
    catalog, root = catalog
    a = str(root / "a")
    write_run(catalog, spark, a, "b1", 1, 2)  # version 0
    write_run(catalog, spark, a, "b2", 3)  # version 1
    assert expire_log_before_checkpoint(a) == 1
    write_run(catalog, spark, a, "b1", 9, complete=False)  # version 2: a rerun that died
    message = (
        f"batch 'b1' of Delta table {a}: its last complete run recorded version 0, which the "
        "Delta log no longer holds (the entries before version 1 were removed by the table's "
        "log retention, delta.logRetentionDuration), and a later run of it did not complete. "
        "Rerun the jobs of batch 'b1'"
    )
    for read in (lambda: catalog.read_batch(a, "b1"), lambda: catalog.read_complete(a)):
        with pytest.raises(BatchNotFoundError) as err:
            read()
        assert str(err.value) == message
    # b2 was recorded at the checkpoint's version, which the log still gives
    assert_df_equality(catalog.read_batch(a, "b2"), rows(spark, "b2", 3), ignore_nullable=True)


def test_the_run_log_is_compacted_once_it_has_enough_files_and_reads_the_same(spark, catalog):
    catalog, root = catalog
    catalog.compact_run_log_at = 3
    runs = str(root / "job_runs")
    written = []
    for i, batch in enumerate(("b1", "b2", "b3", "b4")):
        catalog.replace_batch(rows(spark, batch, i), str(root / "a"), batch)
        written += catalog.complete_run("ingest", batch)
        # one file per run until the third run's compaction makes them one; then one more
        assert len(DeltaTable(runs).file_uris()) == [1, 2, 1, 2][i]
    logged = DeltaTable(runs).to_pandas().sort_values("batch_id")
    assert [tuple(r) for r in logged.itertuples(index=False)] == [
        (r[0], r[1], r[2], r[3], r[4], pd.Timestamp(r[5])) for r in written
    ]
    assert catalog.visible(str(root / "a")) == {"b1": 0, "b2": 1, "b3": 2, "b4": 3}
