"""`ml-engine demo` end to end, as a user runs it: a separate process, real tables on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient

from ml_engine.config import load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo(demo_run):
    """One demo run shared by the tests that inspect it, as a user runs it after
    ``pip install .`` (not editable): the installed ``ml-engine`` command, run from ``/``.
    It starts when collection ends (``demo_as_installed`` in conftest.py)."""
    return demo_run


def test_demo_runs_from_a_non_editable_install_outside_the_project(demo):
    workdir, run = demo
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr == ""
    assert "ml_engine/resources/conf/sample.yaml" not in run.stdout
    cfg = load_config(workdir / "config.yaml")
    assert Path(cfg.schema_path).parts[-4:] == (
        "ml_engine",
        "resources",
        "schemas",
        "transactions.yaml",
    )
    assert not str(cfg.schema_path).startswith(str(ROOT))


def table(workdir: Path, name: str):
    return DeltaTable(str(workdir / "tables" / name)).to_pyarrow_table()


def rows_of(t, **equal) -> int:
    mask = None
    for col, value in equal.items():
        m = pc.equal(t[col], value)
        mask = m if mask is None else pc.and_(mask, m)
    return t.filter(mask).num_rows


def test_demo_prints_every_output_the_model_and_the_gate_decision(demo):
    workdir, run = demo
    assert run.returncode == 0, run.stderr[-3000:]
    for name in (
        "bronze",
        "quarantine",
        "silver",
        "dq_metrics",
        "outlier_stats",
        "features",
        "training_set",
        "predictions",
        "drift_metrics",
    ):
        assert f"  {name:<15} {workdir / 'tables' / name}" in run.stdout
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    store = MlflowClient(tracking_uri=uri, registry_uri=uri)
    runs = store.search_runs(
        [store.get_experiment_by_name("transactions").experiment_id],
        filter_string="tags.`ml_engine.job` = 'train'",
    )
    assert len(runs) == 1
    run_id = runs[0].info.run_id
    assert f"  MLflow run {run_id}; registered transactions-fraud version 1" in run.stdout
    assert "  gate: version 1 becomes champion: auc_roc " in run.stdout
    assert store.get_model_version_by_alias("transactions-fraud", "champion").run_id == run_id
    report = workdir / "reports" / "drift-transactions-fraud-v1-current.html"
    assert f"  report: {report}" in run.stdout and report.is_file()
    # Artifacts live under the work directory, not in the directory the demo ran from.
    assert (workdir / "mlartifacts").is_dir() and not Path("/mlruns").exists()


def test_every_current_row_is_scored_or_accounted_for(demo):
    workdir, run = demo
    predictions, silver = table(workdir, "predictions"), table(workdir, "silver")
    current = silver.filter(pc.equal(silver["batch_id"], "current"))
    assert sorted(predictions["transaction_id"].to_pylist()) == sorted(
        current["transaction_id"].to_pylist()
    )
    lines = sum(
        len(f.read_bytes().decode("utf-8", "replace").splitlines()) - 1
        for f in (workdir / "raw" / "current").glob("*.csv")
    )
    quarantine = table(workdir, "quarantine")
    quarantined = rows_of(quarantine, batch_id="current")
    dq = table(workdir, "dq_metrics").to_pandas()
    dups = dq[(dq.batch_id == "current") & dq.column.isna() & (dq.metric == "duplicates_removed")]
    assert predictions.num_rows + quarantined + int(dups.value.iloc[-1]) == lines
    assert (
        f"{predictions.num_rows} rows scored + {quarantined} quarantined upstream + "
        f"{int(dups.value.iloc[-1])} duplicates removed = {lines} of {lines} rows of the batch"
    ) in run.stdout


def test_demo_writes_its_effective_config(demo):
    workdir, _ = demo
    cfg = load_config(workdir / "config.yaml")
    assert cfg.storage.root == str(workdir)
    assert cfg.mlflow.tracking_uri == f"sqlite:///{workdir / 'mlflow.db'}"
    assert cfg.sample_data.rows == 1000


def test_every_raw_line_is_in_bronze_or_quarantine(demo):
    workdir, _ = demo
    bronze, quarantine = table(workdir, "bronze"), table(workdir, "quarantine")
    for batch in ("reference", "current"):
        # Lines counted from the files themselves, header lines excluded.
        lines = sum(
            len(f.read_bytes().decode("utf-8", "replace").splitlines()) - 1
            for f in (workdir / "raw" / batch).glob("*.csv")
        )
        manifest = json.loads((workdir / "raw" / "MANIFEST.json").read_text())
        assert manifest["batches"][batch]["lines"] == lines
        assert (
            rows_of(bronze, batch_id=batch) + rows_of(quarantine, batch_id=batch, stage="ingest")
            == lines
        )


def test_clean_accounts_for_every_bronze_row(demo):
    workdir, _ = demo
    bronze, quarantine, silver = (table(workdir, n) for n in ("bronze", "quarantine", "silver"))
    dq = table(workdir, "dq_metrics").to_pandas()
    for batch in ("reference", "current"):
        counts = dq[(dq.batch_id == batch) & dq.column.isna()].set_index("metric")["value"]
        assert counts["rows_in"] == rows_of(bronze, batch_id=batch)
        assert counts["rows_out"] == rows_of(silver, batch_id=batch)
        assert counts["rows_quarantined"] == rows_of(quarantine, batch_id=batch, stage="clean")
        assert (
            counts["rows_in"]
            == counts["rows_out"] + counts["duplicates_removed"] + counts["rows_quarantined"]
        )


def test_every_silver_row_is_scored_and_has_a_feature_row(demo):
    workdir, _ = demo
    silver, features = table(workdir, "silver"), table(workdir, "features")
    assert features["is_outlier"].null_count == 0  # the detector flags every feature row
    for batch in ("reference", "current"):
        ids = set(silver.filter(pc.equal(silver["batch_id"], batch))["transaction_id"].to_pylist())
        fids = features.filter(pc.equal(features["batch_id"], batch))["transaction_id"].to_pylist()
        assert sorted(fids) == sorted(ids)


def test_training_set_has_one_row_per_labelled_reference_event(demo):
    workdir, _ = demo
    silver, training = table(workdir, "silver"), table(workdir, "training_set")
    labelled = silver.filter(
        pc.and_(pc.equal(silver["batch_id"], "reference"), pc.is_valid(silver["is_fraud"]))
    )
    assert training.num_rows == labelled.num_rows
    assert set(training["features_version"].to_pylist()) == {0}
