"""Two `ml-engine run ingest` of one new batch at the same moment (a scheduler's retry beside a
slow first attempt): the batch's rows land once, whatever the order of their commits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from pyspark.sql import functions as F

from ml_engine.tables import open_tables

pytestmark = pytest.mark.slow

SCHEMA = {
    "name": "readings",
    "columns": [
        {"name": "reading_id", "type": "string", "nullable": False, "role": "record_id"},
        {"name": "sensor", "type": "string", "role": "key"},
        {"name": "level", "type": "double", "role": "numeric_feature"},
    ],
}
GOOD = [(f"R{i:03d}", f"s{i % 3}", float(i) / 4) for i in range(40)]
BAD = ["R900,s1,not-a-number", "R901,s2,also-bad"]


def test_two_overlapping_ingest_runs_of_one_new_batch_leave_its_rows_once(spark, tmp_path):
    raw = tmp_path / "raw" / "day1"
    raw.mkdir(parents=True)
    lines = ["reading_id,sensor,level", *[f"{r},{s},{v}" for r, s, v in GOOD], *BAD]
    (raw / "readings.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(SCHEMA), encoding="utf-8")
    config = {
        "schema": "schema.yaml",
        "storage": {"root": str(tmp_path / "store")},
        "ingest": {"path": str(raw)},
        "spark": {"conf": {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"}},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    cli = Path(sys.executable).with_name("ml-engine")
    runs = [
        subprocess.Popen(
            [str(cli), "run", "ingest", "--config", str(tmp_path / "config.yaml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600)[0] for p in runs]

    # Each run either commits the batch (replacing the other's rows) or, overtaken on every
    # attempt, stops naming the conflict; never both rows sets.
    codes = [p.returncode for p in runs]
    assert 0 in codes, outputs
    for code, out in zip(codes, outputs, strict=True):
        assert code == 0 or "ConcurrentWriteError" in out or "was not committed" in out, out
    tables = open_tables(spark, "rs")
    root = tmp_path / "store" / "tables"
    bronze = tables.read(str(root / "bronze")).select("reading_id", "sensor", "level", "batch_id")
    expected = spark.createDataFrame([(*g, "day1") for g in GOOD], bronze.schema)
    assert_df_equality(bronze, expected, ignore_row_order=True, ignore_nullable=True)
    quarantine = tables.read(str(root / "quarantine")).where(F.col("stage") == "ingest")
    assert sorted(r.raw_record for r in quarantine.collect()) == BAD
    runs_logged = tables.read(str(root / "job_runs")).select("run_id").distinct().count()
    assert runs_logged == codes.count(0)
