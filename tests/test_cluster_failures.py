"""What a cluster run cannot survive fails fast in one line and changes nothing (slow).

The reference chain and the current batch up to ``score`` run first (in this process, tracked by
a real ``mlflow server``). Then that server is stopped, and ``train``, ``score`` and
``drift_report`` are spark-submitted to a standalone cluster with ``conf/cluster.yaml``: each
must exit 2 with one error line naming the tracking server. Then the master is killed with
SIGKILL and ``clean`` is submitted to it: exit 4 with one line naming the master, in seconds
(Spark alone retries a missing master for a minute and then fails with "Cannot call methods on
a stopped SparkContext"). Every table keeps its Delta version and rows, and the registry
(restarted on the same stores) its versions, aliases and runs.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import services
from deltalake import DeltaTable
from mlflow import MlflowClient

from ml_engine.config import TABLE_NAMES, load_config
from ml_engine.demo import CURRENT_JOBS, REFERENCE_JOBS
from ml_engine.jobs import run_job
from ml_engine.sample_data import generate_sample_data
from ml_engine.tables import open_tables

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SETS = services.CHAIN_SETS


def table_state(root: Path) -> dict[str, tuple[int, int]]:
    """Each existing table's (Delta version, row count), read with delta-rs."""
    state = {}
    for name in TABLE_NAMES:
        path = root / "tables" / name
        if (path / "_delta_log").is_dir():
            table = DeltaTable(str(path))
            state[name] = (table.version(), table.to_pyarrow_dataset().count_rows())
    return state


def registry_state(url: str) -> dict:
    """Registered models with their versions and aliases, and every run with its status."""
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    models = {
        m.name: (
            sorted((int(v.version), v.run_id, v.status) for v in client.search_model_versions()),
            dict(m.aliases),
        )
        for m in client.search_registered_models()
    }
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = sorted((r.info.run_id, r.info.status) for r in client.search_runs(experiments))
    return {"models": models, "runs": runs}


def submit(master: str, archive: Path, job: str, env: dict, cwd: Path):
    started = time.monotonic()
    done = subprocess.run(
        services.submit_command(master, archive, job, SETS),
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=600,
    )
    # spark-submit's PythonRunner sends the Python driver's stderr to its own stdout.
    output = done.stdout + done.stderr
    engine_lines = [line for line in output.splitlines() if line.startswith("ml-engine:")]
    return done.returncode, engine_lines, time.monotonic() - started, output


def test_tracking_server_down_and_master_gone_end_in_one_line_and_change_nothing(
    spark, tmp_path, monkeypatch
):
    raw = tmp_path / "raw"
    generate_sample_data(spark, str(raw), rows=1500, current_rows=500, files=1)
    archive = services.package(tmp_path / "dist" / "ml_engine.zip")
    root, mlflow_root = tmp_path / "store", tmp_path / "mlflow"
    tables = open_tables(spark, "rs")
    monkeypatch.setenv("ML_ENGINE_STORAGE_ROOT", str(root))
    with services.mlflow_server(mlflow_root) as url:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        for batch, jobs in (("reference", REFERENCE_JOBS), ("current", CURRENT_JOBS[:-1])):
            monkeypatch.setenv("ML_ENGINE_RAW_PATH", str(raw / batch))
            cfg = load_config(services.ROOT / "conf" / "cluster.yaml", SETS)
            for job in jobs:
                run_job(job, spark, cfg, tables)
        registry_before = registry_state(url)
    # The server is stopped now; its URL no longer answers.
    tables_before = table_state(root)
    assert set(tables_before) >= {"bronze", "silver", "features", "predictions", "job_runs"}
    assert "drift_metrics" not in tables_before
    env = {
        **services.spark_env(tmp_path / "services"),
        "ML_ENGINE_STORAGE_ROOT": str(root),
        "ML_ENGINE_RAW_PATH": str(raw / "current"),
        "MLFLOW_TRACKING_URI": url,
    }
    with services.standalone_cluster(tmp_path / "services", workers=1, memory="768m") as cluster:
        for job in ("train", "score", "drift_report"):
            code, lines, _, output = submit(cluster.url, archive, job, env, tmp_path)
            assert (code, len(lines)) == (2, 1), output[-5000:]
            assert lines[0].startswith(
                f"ml-engine: run {job}: mlflow.tracking_uri: the tracking server {url} does not "
                "answer ("
            ), lines[0]
            assert lines[0].endswith("; start it or fix the URI (MLFLOW_TRACKING_URI)")
        services.stop(cluster.master, sig=9)
        code, lines, seconds, output = submit(cluster.url, archive, "clean", env, tmp_path)
    port = cluster.url.rsplit(":", 1)[1]
    assert (code, len(lines)) == (4, 1), output[-5000:]
    assert lines[0] == (
        f"ml-engine: run clean: spark.master: no standalone master answers at {cluster.url} "
        f"(127.0.0.1:{port}: Connection refused); start the master or fix --master "
        "(spark-submit) / spark.master (config)"
    )
    assert seconds < 45  # spark-submit's JVM start and the check; not Spark's minute of retries
    assert table_state(root) == tables_before
    with services.mlflow_server(mlflow_root) as restarted:
        assert registry_state(restarted) == registry_before
    assert registry_before["models"]["transactions-fraud"][1] == {"champion": "1"}
