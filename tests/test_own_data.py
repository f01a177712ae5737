"""A new user's own data, end to end: ``ml-engine init`` then ``ml-engine run pipeline``.

Two generated datasets that are not the sample transactions, with other column names, types
and label kinds: sensor readings in CSV (an integer id that is also the entity, ISO ``T``
timestamps, 30 numeric features, one of them headed ``score`` like a model output, a 0/1
target) and shop orders in JSON lines (a string id, a
separate store key, ``yyyy/MM/dd HH:mm:ss`` timestamps, categories and a float label). Each
runs as README says, from another working directory, with the scaffolded config unedited:
``ml-engine init`` as a command, the pipeline through the CLI's ``main`` in the suite's own
Spark session (the demo test covers the installed command's whole process).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from deltalake import DeltaTable
from mlflow import MlflowClient

from ml_engine.cli import main

ML_ENGINE = str(Path(sys.executable).parent / "ml-engine")


def sensor_readings(path: Path, rows: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, 30))
    logit = 1.5 * x[:, 0] - 1.0 * x[:, 1] + 0.5 * x[:, 2]
    df = pd.DataFrame({"reading_id": np.arange(1000, 1000 + rows)})
    start = pd.Timestamp("2026-03-01")
    df["recorded_at"] = (start + pd.to_timedelta(np.arange(rows) * 37, unit="min")).strftime(
        "%Y-%m-%dT%H:%M:%S"
    )
    for i in range(29):
        df[f"f{i:02d}"] = np.round(x[:, i], 4)
    df["score"] = np.round(x[:, 29], 4)  # a name a model output takes: init renames it
    df["target"] = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    # A few readings the sensor could not take, written as text: 1 row in 100.
    written = df.astype({"f05": object})
    written.loc[df.index % 100 == 7, "f05"] = "n/a"
    written.to_csv(path, index=False)
    return df


def shop_orders(path: Path, rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    stores = [f"s{i:02d}" for i in range(12)]
    df = pd.DataFrame(
        {
            "order_id": [f"u-{i:04d}" for i in range(rows)],
            "store_id": rng.choice(stores, rows),
            "placed": (
                pd.Timestamp("2026-05-01") + pd.to_timedelta(np.arange(rows) * 53, unit="min")
            ).strftime("%Y/%m/%d %H:%M:%S"),
            "basket_items": rng.integers(1, 9, rows),
            "discount": np.round(rng.random(rows) * 0.3, 3),
            "payment": rng.choice(["card", "cash", "voucher"], rows),
            "region": rng.choice(["north", "south", "east"], rows),
        }
    )
    df["y"] = np.round(
        10 + 4.5 * df.basket_items - 20 * df.discount + (df.payment == "cash") * 3, 3
    )
    with open(path, "w") as out:
        for record in df.to_dict(orient="records"):
            out.write(
                json.dumps({k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()})
                + "\n"
            )
    return df


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ML_ENGINE, *args], capture_output=True, text=True, cwd=cwd, timeout=900)


def init_and_run(tmp_path: Path, data: Path, capsys, monkeypatch) -> tuple[Path, SimpleNamespace]:
    """``ml-engine init`` as a command, then ``ml-engine run pipeline`` through the same
    ``main`` in this process (its Spark session is the suite's), both from another directory."""
    project = tmp_path / "project"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = run("init", "--data", str(data), "--out", str(project), cwd=elsewhere)
    assert made.returncode == 0, made.stderr
    assert f"ml-engine run pipeline --config {project / 'config.yaml'}" in made.stdout
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    code = main(
        [
            "run",
            "pipeline",
            "--config",
            str(project / "config.yaml"),
            "--set",
            "spark.master=local[2]",
            "--set",
            "spark.conf.spark.sql.shuffle.partitions=2",
        ]
    )
    pipeline = capsys.readouterr()
    assert code == 0, pipeline.err[-3000:]
    assert pipeline.err == ""
    return project, SimpleNamespace(stdout=pipeline.out, stderr=pipeline.err)


def table(project: Path, name: str) -> pd.DataFrame:
    return DeltaTable(str(project / "work" / "tables" / name)).to_pandas()


def test_classification_csv_runs_the_whole_pipeline_after_init(
    spark, tmp_path, capsys, monkeypatch
):
    data = tmp_path / "data" / "readings.csv"
    data.parent.mkdir()
    df = sensor_readings(data)
    project, pipeline = init_and_run(tmp_path, data, capsys, monkeypatch)

    bronze, quarantine = table(project, "bronze"), table(project, "quarantine")
    assert len(bronze) + len(quarantine) == len(df)
    assert sorted(bronze.reading_id) == list(df.reading_id)
    training = table(project, "training_set")
    assert len(training) == len(df)
    assert set(training.columns) >= {*(f"f{i:02d}" for i in range(29)), "score_value"}
    # f05's 'n/a' readings: the column is text in bronze, a number from clean on, the five
    # readings null (counted), not rows lost to quarantine.
    na = df.index % 100 == 7
    silver = table(project, "silver").set_index("reading_id").loc[df.reading_id]
    assert silver.f05.isna().to_numpy().tolist() == na.tolist()
    assert silver.f05[~na].tolist() == df.f05[~na].tolist()
    # the header's 'score', named score_value by init, read by position
    assert silver.score_value.tolist() == df.score.tolist()
    metrics = table(project, "dq_metrics")
    failures = metrics[(metrics["column"] == "f05") & (metrics.metric == "coercion_failures")]
    assert failures.value.tolist() == [5.0]
    uri = f"sqlite:///{project / 'work' / 'mlflow.db'}"
    store = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = store.get_model_version_by_alias("readings-model", "champion")
    assert int(champion.version) == 1
    predictions = table(project, "predictions")
    assert sorted(predictions.reading_id) == list(df.reading_id)
    assert set(predictions.predicted_label) <= {"0", "1"}
    drift = table(project, "drift_metrics")
    # The batch compared with itself: nothing drifts.
    assert set(drift.status.dropna()) == {"ok"}
    assert {"score_value", "score"} <= set(drift.feature)  # the feature and the model's output
    # 29 f-columns and score_value; the model's predicted_label and score
    assert (
        "dataset drift: no (0 of 32 columns drift, 30 features and 2 model outputs; share 0.00"
        in pipeline.stdout
    )


@pytest.mark.slow
def test_regression_json_lines_runs_the_whole_pipeline_after_init(
    spark, tmp_path, capsys, monkeypatch
):
    data = tmp_path / "orders.jsonl"
    df = shop_orders(data)
    project, pipeline = init_and_run(tmp_path, data, capsys, monkeypatch)

    assert len(table(project, "bronze")) == len(df)
    training = table(project, "training_set")
    assert len(training) == len(df)
    uri = f"sqlite:///{project / 'work' / 'mlflow.db'}"
    store = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run_id = store.get_model_version_by_alias("orders-model", "champion").run_id
    metrics = store.get_run(run_id).data.metrics
    assert {"test_rmse", "test_mae", "test_r2"} <= set(metrics)
    assert metrics["test_r2"] > 0.9  # y is a linear function of the features
    predictions = table(project, "predictions")
    assert predictions.probability.isna().all() and predictions.predicted_label.isna().all()
    assert sorted(predictions.order_id) == list(df.order_id)
