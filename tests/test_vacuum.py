"""The vacuum job: replaced files are deleted, except those of the versions the engine reads."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable

from ml_engine.catalog import BatchCatalog
from ml_engine.config import build_config
from ml_engine.jobs import run_job
from ml_engine.results import JobError
from ml_engine.tables import TableError, open_tables
from ml_engine.tables.spark import retention_keeping
from ml_engine.training.job import reproduce

SCHEMA = "id string, value int, batch_id string"


def rows(spark, batch, *values):
    return spark.createDataFrame([(f"{batch}-{v}", v, batch) for v in values], SCHEMA)


def added_at(path: str, version: int) -> set[str]:
    """The data files commit ``version`` added, relative to the table (delta-rs's own view)."""
    before = set() if version == 0 else set(DeltaTable(path, version=version - 1).file_uris())
    return {
        os.path.relpath(f, path)
        for f in set(DeltaTable(path, version=version).file_uris()) - before
    }


def data_files(path: str) -> set[str]:
    """Every file of the table outside its log (data files, their checksums), but the lock."""
    return {
        os.path.relpath(os.path.join(d, f), path)
        for d, _, files in os.walk(path)
        if "_delta_log" not in d
        for f in files
        if f != "_ml_engine_commit.lock"
    }


@pytest.fixture
def setup(spark, tmp_path, sample_schema_path):
    """silver: b1 and b2 complete, b2 rerun (its first files replaced), then a rerun of b1
    that did not complete; features: batch r, then r rebuilt. No model is registered, and the
    config keeps no model inputs (a test that registers one turns it on) and compacts no
    table (the compaction's test turns it on)."""
    cfg = build_config(
        {
            "schema": str(sample_schema_path),
            "storage": {"root": str(tmp_path)},
            "batch_id": "b1",
            "vacuum": {"retain_hours": 0, "keep_model_inputs": False, "compact": False},
            "mlflow": {"registered_model": "vacuum-test-model"},
        }
    )
    tables = open_tables(spark, "rs")
    catalog = BatchCatalog(tables, cfg.storage.table_path("job_runs"))
    silver, features = cfg.storage.table_path("silver"), cfg.storage.table_path("features")

    def run(path, batch, *values, complete=True):
        catalog.replace_batch(rows(spark, batch, *values), path, batch)
        if complete:
            catalog.complete_run("clean", batch)
        else:
            catalog.committed = {}  # the process died before the run log write

    run(silver, "b1", 1, 2)  # v0
    run(silver, "b2", 3)  # v1
    run(silver, "b2", 4)  # v2: v1's file of b2 replaced, no run reads it
    run(silver, "b1", 5, complete=False)  # v3: b1 is still read at v0
    run(features, "r", 1)  # v0
    run(features, "r", 2)  # v1: v0's file replaced
    return cfg, tables, catalog, silver, features


def _register_model_trained_on(cfg, inputs):
    import mlflow
    from mlflow import MlflowClient

    from ml_engine.tracking import connect, lineage_tags

    experiment = connect(cfg)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.set_tags(lineage_tags(inputs))
    client = MlflowClient()
    client.create_registered_model(cfg.mlflow.registered_model)
    client.create_model_version(
        cfg.mlflow.registered_model, f"runs:/{run.info.run_id}/model", run.info.run_id
    )
    return run.info.run_id


def unreferenced(path: str) -> set[str]:
    """Files on disk that no version of the table references: a write's leftovers, and
    Spark's checksum files beside the data files (Delta does not track them)."""
    latest = DeltaTable(path).version()
    known = set().union(*(added_at(path, v) for v in range(latest + 1)))
    return data_files(path) - known


def test_vacuum_keeps_the_versions_jobs_and_registered_models_read(spark, setup):
    cfg, tables, catalog, silver, features = setup
    # A model trained on features v0 (replaced since); its labels came from a table of another
    # storage root, which this vacuum leaves alone.
    run_id = _register_model_trained_on(
        cfg, {"features": (features, 0), "labels": ("/elsewhere/tables/silver", 4)}
    )
    cfg.vacuum.keep_model_inputs = True
    replaced_b2, replaced_r, b1_first = (
        added_at(silver, 1),
        added_at(features, 0),
        added_at(silver, 0),
    )
    assert replaced_b2 and replaced_r and b1_first
    doomed = {"silver": replaced_b2 | unreferenced(silver), "features": unreferenced(features)}
    before = {"silver": data_files(silver), "features": data_files(features)}

    result = run_job("vacuum", spark, cfg, tables)

    deleted = {
        n: before[n] - data_files(p) for n, p in (("silver", silver), ("features", features))
    }
    assert deleted == doomed
    # and the directories of b2's first write, emptied, are gone
    assert [d for d, subdirs, files in os.walk(silver) if not subdirs and not files] == []
    assert result.metrics == {
        "retain_hours": 0,
        "files_compacted": 0,
        "files_compacted_by_table": {},
        "files_deleted": len(doomed["silver"]) + len(doomed["features"]),
        "files_deleted_by_table": {
            "silver": len(doomed["silver"]),
            "features": len(doomed["features"]),
            "job_runs": 0,
        },
    }
    assert result.notes == [
        "silver: kept v0 (jobs read batch(es) b1 there)",
        "features: kept v0 (vacuum-test-model v1 trained on it)",
        "inputs of registered models in tables outside this storage root (kept when their own "
        "root is vacuumed): /elsewhere/tables/silver v4 (vacuum-test-model v1)",
    ]
    assert result.outputs == {
        "silver": silver,
        "features": features,
        "job_runs": cfg.storage.table_path("job_runs"),
    }
    # b1's recorded files and the model's inputs are still readable.
    assert_df_equality(
        catalog.read_batch(silver, "b1"), rows(spark, "b1", 1, 2), ignore_row_order=True
    )
    assert_df_equality(catalog.read_batch(silver, "b2"), rows(spark, "b2", 4))
    assert_df_equality(tables.read(features, version=0), rows(spark, "r", 1))
    # The vacuum recorded no run: the run log holds the clean runs only.
    runs = tables.read(cfg.storage.table_path("job_runs")).select("job").distinct().collect()
    assert [r.job for r in runs] == ["clean"]

    # Without the models' inputs kept, version 0 of features goes, and time travel to it fails.
    cfg.vacuum.keep_model_inputs = False
    again = run_job("vacuum", spark, cfg, tables)
    assert again.metrics["files_deleted_by_table"] == {
        "silver": 0,
        "features": len(replaced_r),
        "job_runs": 0,
    }
    assert replaced_r & data_files(features) == set()
    # ... so reproducing the model's run says why it cannot.
    with pytest.raises(JobError) as err:
        reproduce(spark, cfg, tables, run_id)
    assert str(err.value).startswith(
        f"reproduce: run {run_id}'s inputs (features v0, labels v4) can no longer be read: a "
        "vacuum deleted their files ([PATH_NOT_FOUND] Path does not exist: file:"
    )
    assert str(err.value).endswith(
        "The vacuum job keeps the inputs of registered model versions "
        "(vacuum.keep_model_inputs); a run whose version was deleted, or that registered none, "
        "is kept for vacuum.retain_hours only"
    )


def files_by_batch(path: str, version: int | None = None) -> dict[str | None, set[str]]:
    """The data files of a version of the table, relative to it, by their ``batch_id``
    partition (None for a table without one), from delta-rs's add actions."""
    actions = pa.table(DeltaTable(path, version=version).get_add_actions(flatten=True)).to_pylist()
    found: dict[str | None, set[str]] = {}
    for a in actions:
        found.setdefault(a.get("partition.batch_id"), set()).add(a["path"])
    return found


def test_compaction_merges_each_batchs_files_and_pins_no_version(spark, setup):
    cfg, tables, catalog, silver, features = setup
    # b3 written as three files; features r rebuilt as three files, and a model trained on
    # that version, the latest before the compaction.
    catalog.replace_batch(rows(spark, "b3", 6, 7, 8).repartition(3), silver, "b3")  # v4
    catalog.complete_run("clean", "b3")
    catalog.replace_batch(rows(spark, "r", 3, 4, 5).repartition(3), features, "r")  # v2
    catalog.complete_run("build_features", "r")
    _register_model_trained_on(cfg, {"features": (features, 2)})
    cfg.vacuum.keep_model_inputs = True
    cfg.vacuum.compact = True
    runs = cfg.storage.table_path("job_runs")
    before = {p: files_by_batch(p) for p in (silver, features, runs)}
    assert len(before[silver]["b3"]) == 3 and len(before[features]["r"]) == 3
    merged = {
        name: sum(len(fs) for fs in before[p].values() if len(fs) > 1)
        for name, p in (("silver", silver), ("features", features), ("job_runs", runs))
    }

    result = run_job("vacuum", spark, cfg, tables)

    assert result.metrics["files_compacted_by_table"] == merged
    assert result.metrics["files_compacted"] == sum(merged.values())
    for p in (silver, features, runs):  # one file per batch, the batches as they were
        after = files_by_batch(p)
        assert sorted(after) == sorted(before[p])
        assert all(len(fs) == 1 for fs in after.values())
    # The compaction is no rewrite to the run log: b2 and b3 are read at the new version,
    # b1 still at v0 (its rerun did not complete), and features v2 is kept for the model.
    assert catalog.pinned_versions(silver) == {0: ["b1"]}
    assert result.notes == [
        "silver: kept v0 (jobs read batch(es) b1 there)",
        "features: kept v2 (vacuum-test-model v1 trained on it)",
    ]
    # With no retention, the files the compaction replaced are gone at once, but those of the
    # kept versions; what is left reads as before.
    kept = {
        silver: files_by_batch(silver, 0),
        features: files_by_batch(features, 2),
        runs: {},
    }
    for p in (silver, features, runs):
        on_disk = {f for f in data_files(p) if not f.endswith(".crc")}
        referenced = set().union(*files_by_batch(p).values(), *kept[p].values())
        assert on_disk == referenced
    expected = {"b1": (1, 2), "b2": (4,), "b3": (6, 7, 8)}
    for batch, values in expected.items():
        assert_df_equality(
            catalog.read_batch(silver, batch), rows(spark, batch, *values), ignore_row_order=True
        )
    everything = rows(spark, "b1", 1, 2).unionByName(rows(spark, "b2", 4))
    assert_df_equality(
        catalog.read_complete(silver)[0],
        everything.unionByName(rows(spark, "b3", 6, 7, 8)),
        ignore_row_order=True,
    )
    assert_df_equality(
        catalog.read_batch(features, "r"), rows(spark, "r", 3, 4, 5), ignore_row_order=True
    )
    assert_df_equality(
        tables.read(features, version=2), rows(spark, "r", 3, 4, 5), ignore_row_order=True
    )
    # A rerun of a compacted batch replaces its compacted file.
    catalog.replace_batch(rows(spark, "b3", 9), silver, "b3")
    catalog.complete_run("clean", "b3")
    assert_df_equality(catalog.read_batch(silver, "b3"), rows(spark, "b3", 9))
    # A second vacuum merges only what came since: the run log's file of that rerun.
    assert [len(fs) for fs in files_by_batch(runs).values()] == [2]
    assert len(files_by_batch(silver)["b3"]) == 1
    again = run_job("vacuum", spark, cfg, tables)
    assert again.metrics["files_compacted_by_table"] == {
        "silver": 0,
        "features": 0,
        "job_runs": 2,
    }


def test_vacuum_deletes_only_what_is_older_than_the_retention(spark, setup):
    cfg, tables, catalog, silver, _ = setup
    # Files a failed write left behind, one written 200 hours ago and one just now.
    old, new = (
        Path(silver, "part-failed-old.parquet"),
        Path(silver, "part-failed-new.parquet"),
    )
    for f in (old, new):
        f.write_bytes(b"PAR1")
    aged = time.time() - 200 * 3600
    os.utime(old, (aged, aged))
    replaced_b2 = added_at(silver, 1)

    cfg.vacuum.retain_hours = 168
    result = run_job("vacuum", spark, cfg, tables)

    # b2's file replaced minutes ago stays (time travel within the week still works); the
    # 200-hour-old leftover goes, the new one (a write that may still be running) stays.
    assert result.metrics["files_deleted_by_table"]["silver"] == 1
    assert not old.exists() and new.exists()
    assert replaced_b2 <= data_files(silver)
    assert_df_equality(
        tables.read(silver, version=1).where("batch_id = 'b2'"), rows(spark, "b2", 3)
    )


def test_vacuum_stops_before_deleting_when_the_models_cannot_be_read(spark, setup, monkeypatch):
    cfg, tables, _, silver, _ = setup
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    before = data_files(silver)
    cfg.vacuum.keep_model_inputs = True
    cfg.mlflow.tracking_uri = "http://127.0.0.1:9"  # nothing listens there
    with pytest.raises(JobError) as err:
        run_job("vacuum", spark, cfg, tables)
    assert str(err.value).startswith(
        "vacuum: cannot read the registered versions of model 'vacuum-test-model' from "
        "http://127.0.0.1:9 (mlflow.tracking_uri): "
    )
    assert str(err.value).endswith(
        "Nothing was deleted; start the tracking server, or set vacuum.keep_model_inputs to "
        "false to vacuum without keeping the models' training inputs"
    )
    assert data_files(silver) == before


def test_the_spark_backend_retains_removed_files_as_long_as_the_kept_versions_exist():
    now = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
    # kept versions committed 30 h 10 min and 2 h ago: 31 whole hours, plus one for clocks
    kept = [now - timedelta(hours=30, minutes=10), now - timedelta(hours=2)]
    assert retention_keeping(0, kept, now) == 32
    assert retention_keeping(168, kept, now) == 168
    assert retention_keeping(24, [], now) == 24
    assert retention_keeping(0, [now - timedelta(hours=30)], now) == 31


def test_a_table_the_run_log_does_not_know_pins_no_version_and_a_missing_one_is_refused(
    spark, tmp_path
):
    tables = open_tables(spark, "rs")
    catalog = BatchCatalog(tables, str(tmp_path / "job_runs"))
    path = str(tmp_path / "t")
    tables.replace_batch(rows(spark, "a", 1), path, "a")  # not through the catalog
    tables.replace_batch(rows(spark, "a", 2), path, "a")
    assert catalog.pinned_versions(path) == {}
    with pytest.raises(TableError):
        tables.vacuum(str(tmp_path / "missing"))


def test_preflight_asks_for_the_tracking_server_only_when_model_inputs_are_kept(
    tmp_path, sample_schema_path
):
    from ml_engine.preflight import preflight

    cfg = build_config(
        {
            "schema": str(sample_schema_path),
            "storage": {"root": str(tmp_path)},
            "mlflow": {"tracking_uri": "http://127.0.0.1:9"},  # nothing listens there
        }
    )
    (problem,) = preflight(cfg, ["vacuum"])
    assert problem.startswith("mlflow.tracking_uri: the tracking server http://127.0.0.1:9 ")
    assert problem.endswith("; start it or fix the URI (MLFLOW_TRACKING_URI)")
    cfg.vacuum.keep_model_inputs = False
    assert preflight(cfg, ["vacuum"]) == []
