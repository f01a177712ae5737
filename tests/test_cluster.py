"""The ingest job on a real standalone Spark cluster (master + worker JVMs on 127.0.0.1).

The test starts the master and a worker from the pyspark wheel (``bin/spark-class``), zips the
library for ``--py-files``, spark-submits ``jobs/ingest.py`` in client mode, and compares the
bronze and quarantine tables the cluster wrote with those of the same job run in-process. Every
process it started is stopped, also when an assertion fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import services
import yaml
from chispa import assert_df_equality
from deltalake import DeltaTable

from ml_engine.cli import build_archive
from ml_engine.config import load_config
from ml_engine.jobs import run_job
from ml_engine.sample_data import generate_sample_data
from ml_engine.tables import open_tables

ROOT = Path(__file__).resolve().parents[1]
SPARK_HOME = services.SPARK_HOME
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


@pytest.fixture
def standalone_cluster(tmp_path):
    """A master and one worker (1 core, 1 GB) on loopback; yields the master URL."""
    with services.standalone_cluster(tmp_path / "cluster-services") as cluster:
        yield cluster.url


def test_ingest_submitted_to_standalone_cluster(spark, tmp_path, standalone_cluster):
    raw = tmp_path / "raw"
    generate_sample_data(spark, str(raw), rows=400, seed=7, current_rows=50, files=2)

    def config_file(root: Path) -> Path:
        path = root / "config.yaml"
        root.mkdir()
        path.write_text(
            yaml.safe_dump(
                {
                    "inherits": "ml-engine:sample",
                    "schema": str(ROOT / "schemas" / "transactions.yaml"),
                    "storage": {"root": str(root)},
                    "delta": {"backend": "rs"},
                    "ingest": {"path": str(raw / "reference")},
                    "spark": {"conf": {"spark.sql.shuffle.partitions": "2"}},
                }
            )
        )
        return path

    cluster_conf = config_file(tmp_path / "cluster")
    archive = build_archive(tmp_path / "dist" / "ml_engine.zip")
    env = dict(
        os.environ,
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
    )
    submit = subprocess.run(
        [
            str(SPARK_HOME / "bin" / "spark-submit"),
            "--master",
            standalone_cluster,
            "--deploy-mode",
            "client",
            "--py-files",
            str(archive),
            "--conf",
            f"spark.pyspark.python={sys.executable}",
            "--conf",
            "spark.ui.enabled=false",
            "--executor-memory",
            "768m",
            "--total-executor-cores",
            "1",
            str(ROOT / "jobs" / "ingest.py"),
            "--config",
            str(cluster_conf),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert submit.returncode == 0, submit.stderr[-5000:]
    assert "[ingest] done" in submit.stdout
    # The application really ran on the standalone master, with executors in other JVMs.
    assert (
        f"Connecting to master {standalone_cluster}" in submit.stderr
        or "Connected to Spark cluster" in submit.stderr
    )

    # The same job in this process, on the same files, is the reference.
    local_cfg = load_config(config_file(tmp_path / "local"))
    tables = open_tables(spark, "rs")
    run_job("ingest", spark, local_cfg, tables)
    cluster_cfg = load_config(cluster_conf)

    for table in ("bronze", "quarantine"):
        ours = tables.read(cluster_cfg.storage.table_path(table)).drop("ingested_at")
        reference = tables.read(local_cfg.storage.table_path(table)).drop("ingested_at")
        assert_df_equality(ours, reference, ignore_row_order=True, ignore_nullable=True)

    bronze = DeltaTable(cluster_cfg.storage.table_path("bronze")).to_pyarrow_table()
    quarantine = DeltaTable(cluster_cfg.storage.table_path("quarantine")).to_pyarrow_table()
    raw_lines = sum(
        len(f.read_text(encoding="utf-8", errors="replace").splitlines()) - 1
        for f in (raw / "reference").glob("*.csv")
    )
    assert bronze.num_rows + quarantine.num_rows == raw_lines
    assert quarantine.num_rows > 0
