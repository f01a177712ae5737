"""The whole chain on a standalone cluster with a real tracking server, losing a worker.

A master and two workers (separate JVMs, one core each) and an ``mlflow server`` (its own
backend and artifact stores; artifacts travel over HTTP) are started on 127.0.0.1. The library
is zipped with ``ml-engine package``; every job of the chain is spark-submitted in order with
``conf/cluster.yaml``, the environment variables it names and ``--set``. During ``clean`` of the
reference batch, once an executor of the first worker has finished a task, that worker (and its
executor) is killed with SIGKILL: Spark reschedules on the other worker and the job completes.
The same chain then runs in this process on local Spark with the same config file (only the
environment differs), and every table must equal the cluster's row for row, doubles within
1e-9 (sums over other partitions differ in the last digits); the registered model's test
metrics must match within 1e-4. Everything started is stopped, also on failure.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import services
from chispa import assert_approx_df_equality
from mlflow import MlflowClient
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import TABLE_NAMES, load_config
from ml_engine.demo import CURRENT_JOBS, REFERENCE_JOBS
from ml_engine.jobs import run_job
from ml_engine.sample_data import generate_sample_data
from ml_engine.tables import open_tables

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CHAIN = {"reference": REFERENCE_JOBS, "current": CURRENT_JOBS}  # the demo's order
KILL_DURING = ("reference", "clean")
SETS = services.CHAIN_SETS
# Every table but the run log (run ids and times only).
TABLES = [t for t in TABLE_NAMES if t != "job_runs"]
# Wall-clock columns: when a row was written, not what it says.
VOLATILE = (
    "ingested_at",
    "scored_at",
    "computed_at",
    "created_at",
    "run_at",
    "run_id",
    "mlflow_run_id",
)
MODEL = "transactions-fraud"


def executor_finished_a_task(work_dir: Path, earlier_apps: set[Path]) -> bool:
    """Whether an executor of a new application on this worker has finished a task."""
    return any(
        "Finished task" in log.read_text(errors="replace")
        for app in set(work_dir.glob("app-*")) - earlier_apps
        for log in app.glob("*/stderr")
    )


def submit(cluster, archive: Path, job: str, env: dict, cwd: Path) -> subprocess.Popen:
    cmd = services.submit_command(cluster.url, archive, job, SETS)
    log = open(cwd / f"{job}-{env['ML_ENGINE_RAW_PATH'].rsplit('/', 1)[-1]}.log", "w+")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    proc.log = log
    return proc


def finish(proc: subprocess.Popen, what: str) -> str:
    code = proc.wait(timeout=900)
    proc.log.seek(0)
    out = proc.log.read()
    proc.log.close()
    assert code == 0, f"{what} exited {code}:\n{out[-5000:]}"
    return out


def chain_env(root: Path, raw: Path, batch: str, tracking_uri: str) -> dict[str, str]:
    return {
        "ML_ENGINE_STORAGE_ROOT": str(root),
        "ML_ENGINE_RAW_PATH": str(raw / batch),
        "MLFLOW_TRACKING_URI": tracking_uri,
    }


def comparable(tables, cfg, name: str):
    """The table without wall-clock and run-id columns, arrays of doubles as one column per
    element, string columns first (the row order chispa sorts by starts with exact keys)."""
    df = tables.read(cfg.storage.table_path(name))
    df = df.drop(*[c for c in df.columns if c in VOLATILE])
    for f in df.schema.fields:
        if isinstance(f.dataType, T.ArrayType) and isinstance(f.dataType.elementType, T.DoubleType):
            n = df.agg(F.max(F.size(f.name))).first()[0] or 0
            df = df.withColumns({f"{f.name}_{i}": F.col(f.name)[i] for i in range(n)})
            df = df.drop(f.name)
    first = sorted(f.name for f in df.schema.fields if isinstance(f.dataType, T.StringType))
    return df.select(*first, *sorted(c for c in df.columns if c not in first))


def test_whole_chain_on_two_workers_survives_a_lost_worker_and_equals_local(
    spark, tmp_path, monkeypatch
):
    raw = tmp_path / "raw"
    generate_sample_data(spark, str(raw), rows=1500, current_rows=500, files=2)
    archive = services.package(tmp_path / "dist" / "ml_engine.zip")
    cluster_root, local_root = tmp_path / "cluster-run", tmp_path / "local-run"
    with (
        services.mlflow_server(tmp_path / "mlflow") as url,
        services.standalone_cluster(tmp_path / "services", workers=2, memory="768m") as cluster,
    ):
        killed = False
        for batch, jobs in CHAIN.items():
            for job in jobs:
                env = services.spark_env(tmp_path / "services")
                env.update(chain_env(cluster_root, raw, batch, url))
                work0 = tmp_path / "services" / "work0"
                earlier = set(work0.glob("app-*"))
                proc = submit(cluster, archive, job, env, tmp_path)
                if (batch, job) == KILL_DURING:
                    deadline = time.time() + 600
                    while not executor_finished_a_task(work0, earlier):
                        assert proc.poll() is None, "the job ended before the worker was killed"
                        assert time.time() < deadline
                        time.sleep(0.2)
                    services.stop(cluster.workers[0], sig=9)
                    killed = True
                out = finish(proc, f"{job} on batch {batch}")
                assert f"[{job}] done" in out
                if (batch, job) == KILL_DURING:
                    # The driver saw the executor go and carried on with the other worker.
                    assert "Lost executor" in out, out[-5000:]
        assert killed and cluster.workers[0].poll() is not None
        cluster_client = MlflowClient(tracking_uri=url, registry_uri=url)
        cluster_version = cluster_client.get_model_version_by_alias(MODEL, "champion")
        cluster_metrics = cluster_client.get_run(cluster_version.run_id).data.metrics

    # The same config file in this process on local Spark: only the environment differs.
    tables = open_tables(spark, "rs")
    local_uri = f"sqlite:///{tmp_path / 'local-mlflow.db'}"
    for batch, jobs in CHAIN.items():
        for key, value in chain_env(local_root, raw, batch, local_uri).items():
            monkeypatch.setenv(key, value)
        cfg = load_config(ROOT / "conf" / "cluster.yaml", SETS)
        for job in jobs:
            run_job(job, spark, cfg, tables)
    local_client = MlflowClient(tracking_uri=local_uri, registry_uri=local_uri)
    local_version = local_client.get_model_version_by_alias(MODEL, "champion")
    local_metrics = local_client.get_run(local_version.run_id).data.metrics

    monkeypatch.setenv("ML_ENGINE_STORAGE_ROOT", str(cluster_root))
    cluster_cfg = load_config(ROOT / "conf" / "cluster.yaml", SETS)
    for name in TABLES:
        # Doubles may differ in the last digits: sums over other partitions (seen: <= 2e-10).
        assert_approx_df_equality(
            comparable(tables, cluster_cfg, name),
            comparable(tables, cfg, name),
            precision=1e-9,
            ignore_row_order=True,
            ignore_nullable=True,
            allow_nan_equality=True,
        )
    test_metrics = sorted(k for k in local_metrics if k.startswith("test_"))
    assert test_metrics and test_metrics == sorted(
        k for k in cluster_metrics if k.startswith("test_")
    )
    for k in test_metrics:
        assert cluster_metrics[k] == pytest.approx(local_metrics[k], abs=1e-4), k
    assert (int(cluster_version.version), int(local_version.version)) == (1, 1)
