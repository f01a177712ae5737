"""train, score, drift_report and reproduce against a real ``mlflow server`` process.

One module-scoped chain: sample data (small) through ingest -> clean -> detect_outliers ->
build_features for a reference and a current batch, a training set of the reference batch,
and a tracking server started on 127.0.0.1 with its own backend and artifact stores (the
artifacts travel over HTTP). Three trainings share it: v1 (the first model), v2 (the same
config in dry-run mode: the same metrics, aliases unmoved) and v3 (a worse model, rejected
against the champion).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import services
from chispa import assert_df_equality
from deltalake import DeltaTable, write_deltalake
from mlflow import MlflowClient
from pyspark.sql import functions as F
from sklearn import metrics as skm

from ml_engine.config import load_config
from ml_engine.jobs import run_job
from ml_engine.results import JobError
from ml_engine.sample_data import generate_sample_data
from ml_engine.session import JobCounter
from ml_engine.tables import open_tables

# A secret the configs of this module take from the environment: it must never show.
SENTINEL = "sentinel-7f3c9a-do-not-print"
os.environ["ML_ENGINE_TEST_SECRET_KEY"] = SENTINEL
SECRET_SETTING = "spark.conf.spark.hadoop.fs.s3a.secret.key=${ML_ENGINE_TEST_SECRET_KEY}"
TRAIN = [
    SECRET_SETTING,
    "train.estimator=logistic_regression",
    "train.params={maxIter: 25, regParam: 0.01}",
    "train.grid=null",
    "train.tuning.method=none",
    "train.outlier_features=true",
    "train.gate_thresholds={auc_roc: 0.6}",
    "train.gate_max_loss=0.02",
]
NAME = "transactions-fraud"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """Started, not awaited: the chain's data jobs (no tracking) run while it starts."""
    with services.starting_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@dataclass
class Chain:
    cfg: object
    current: object
    tables: object
    root: Path
    url: str


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory, mlflow_server):
    root = tmp_path_factory.mktemp("chain")
    # Large enough that sampling noise alone flags no feature (the drift test relies on it).
    generate_sample_data(spark, str(root / "raw"), rows=3000, current_rows=1000, files=1)
    base = [
        f"storage.root={root}",
        f"mlflow.tracking_uri={mlflow_server.url}",
        "spark.conf.spark.sql.shuffle.partitions=2",
        *TRAIN,
    ]
    cfg = load_config("ml-engine:sample", [*base, f"ingest.path={root / 'raw' / 'reference'}"])
    current = load_config("ml-engine:sample", [*base, f"ingest.path={root / 'raw' / 'current'}"])
    tables = open_tables(spark, "rs")
    for job in ("ingest", "clean", "detect_outliers", "build_features", "build_training_set"):
        run_job(job, spark, cfg, tables)
    for job in ("ingest", "clean", "detect_outliers", "build_features"):
        run_job(job, spark, current, tables)
    return Chain(cfg, current, tables, root, mlflow_server.ready())


def with_sets(cfg, *overrides):
    """``cfg`` reloaded from its own effective data with more ``--set`` overrides."""
    from ml_engine.config import build_config, merge_files  # noqa: F401 - documents the path

    return load_config("ml-engine:sample", [*cfg_overrides(cfg), *overrides])


def cfg_overrides(cfg) -> list[str]:
    return [
        f"storage.root={cfg.storage.root}",
        f"mlflow.tracking_uri={cfg.mlflow.tracking_uri}",
        f"ingest.path={cfg.ingest.path}",
        "spark.conf.spark.sql.shuffle.partitions=2",
        *TRAIN,
    ]


@pytest.fixture(scope="module")
def trained(spark, chain):
    """v1 (first model), v2 (same config, dry run), v3 (worse model, enforced gate)."""
    first = run_job("train", spark, chain.cfg, chain.tables)
    again = run_job("train", spark, with_sets(chain.cfg, "train.gate=dry_run"), chain.tables)
    worse = with_sets(
        chain.cfg,
        "train.numeric_features=[num_items]",
        "train.categorical_features=[]",
        "train.outlier_features=false",
        "train.gate_thresholds=null",
    )
    third = run_job("train", spark, worse, chain.tables)
    return first, again, third


@pytest.fixture(scope="module")
def fresh_process_champion(chain, trained, tmp_path_factory):
    """A new Python process loading the champion from the server and scoring 20 rows with
    Spark and with pandas, started as soon as training is done (scoring tests run beside it)."""
    root = tmp_path_factory.mktemp("fresh-process")
    features = chain.tables.read_batch(chain.cfg.storage.table_path("features"), "current")
    sample = features.orderBy("transaction_id").limit(20)
    rows_path = root / "rows.parquet"
    sample.toPandas().to_parquet(rows_path)  # exact values, unlike a text format
    script = textwrap.dedent(
        f"""
        import json, sys
        import mlflow, mlflow.pyfunc, mlflow.spark, pandas as pd
        from pyspark.sql import SparkSession
        mlflow.set_tracking_uri({chain.url!r}); mlflow.set_registry_uri({chain.url!r})
        spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
                 .config("spark.sql.session.timeZone", "UTC").getOrCreate())
        pdf = pd.read_parquet({str(rows_path)!r})
        model = mlflow.spark.load_model("models:/{NAME}@champion")
        scored = model.transform(spark.createDataFrame(pdf)).orderBy("transaction_id")
        spark_probs = [float(r.probability[1]) for r in scored.select("probability").collect()]
        pyfunc = mlflow.pyfunc.load_model("models:/{NAME}@champion")
        pandas_pred = [float(x) for x in pyfunc.predict(pdf.sort_values("transaction_id"))]
        # whole numbers with missing values: pandas makes the column float64 with NaN
        gaps = pdf.sort_values("transaction_id").astype({{"credit_score": "float64"}})
        gaps.loc[gaps.index[::2], "credit_score"] = float("nan")
        pandas_gaps = [float(x) for x in pyfunc.predict(gaps)]
        print(json.dumps({{"spark": spark_probs, "pandas": pandas_pred, "gaps": pandas_gaps}}))
        """
    )
    # A script file: `python -c` makes MLflow's Spark pyfunc re-run __main__ and exit early.
    (root / "score.py").write_text(script)
    with open(root / "stdout", "w") as out, open(root / "stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(root / "score.py")],
            stdout=out,
            stderr=err,
            cwd=root,
            env={**os.environ, "PYTHONPATH": ""},
            start_new_session=True,
        )
    yield proc, sample, root
    services.stop(proc)


@pytest.fixture(scope="module")
def scored(spark, chain, trained, fresh_process_champion):
    """The current batch scored once by the champion (v1), shared by the score and drift tests."""
    return run_job("score", spark, chain.current, chain.tables)


@pytest.fixture(scope="module")
def champion(chain, trained):
    """The champion as score loads it (from the server), loaded once for the tests that
    inspect it."""
    from ml_engine.scoring import load_registered_model

    return load_registered_model(chain.cfg)


def client(chain) -> MlflowClient:
    return MlflowClient(tracking_uri=chain.url, registry_uri=chain.url)


# --------------------------------------------------------------------------- train


def test_first_model_becomes_champion_with_lineage_params_and_pictures(chain, trained):
    first, _, _ = trained
    c = client(chain)
    run = c.get_run(first.metrics["run_id"])
    ts_path = chain.cfg.storage.table_path("training_set")
    versions = chain.tables.read(ts_path).select("features_version", "labels_version").first()
    tags = run.data.tags
    assert tags["ml_engine.input.training_set.path"] == ts_path
    assert tags["ml_engine.input.training_set.version"] == "0"
    assert tags["ml_engine.input.features.version"] == str(versions["features_version"])
    assert tags["ml_engine.input.labels.version"] == str(versions["labels_version"])
    assert len(tags["ml_engine.git_commit"].split("-")[0]) == 40
    assert tags["ml_engine.gate.decision"] == "champion"
    assert tags["ml_engine.gate.reason"] == (
        f"auc_roc {run.data.metrics['test_auc_roc']:.4f} meets 0.6; the first model passes on "
        "thresholds"
    )
    params = run.data.params
    assert params["train.estimator"] == "logistic_regression"
    assert params["storage.root"] == str(chain.root)
    assert params["train.max_categories"] == "50"  # the engine's default: no config sets it
    assert params["best.regParam"] == "0.01" and params["best.maxIter"] == "25"
    # One partition per 100,000 labelled rows, not the session's 2 shuffle partitions.
    assert params["train.partitions_used"] == "1"
    assert {"test_auc_roc", "test_auc_pr", "test_accuracy", "test_f1", "test_log_loss"} <= set(
        run.data.metrics
    )
    dataset = run.inputs.dataset_inputs[0].dataset
    assert (dataset.name, dataset.digest) == ("training_set", "delta-v0")
    assert json.loads(dataset.source)["path"] == ts_path
    artifacts = {a.path for a in c.list_artifacts(run.info.run_id, "figures")}
    assert artifacts == {
        "figures/roc_curve.png",
        "figures/precision_recall_curve.png",
        "figures/confusion_matrix.png",
        "figures/feature_importances.png",
        "figures/feature_importances.json",
    }
    mv = c.get_model_version_by_alias(NAME, "champion")
    assert (int(mv.version), mv.run_id) == (1, run.info.run_id)
    assert first.metrics["gate"] == "champion"


def test_training_twice_gives_the_same_metrics_and_dry_run_moves_no_alias(chain, trained):
    first, again, _ = trained
    c = client(chain)
    m1 = c.get_run(first.metrics["run_id"]).data.metrics
    m2 = c.get_run(again.metrics["run_id"]).data.metrics
    test_metrics = {k for k in m1 if k.startswith("test_")}
    assert {k: m2[k] for k in test_metrics} == {k: m1[k] for k in test_metrics}
    assert again.metrics["gate"] == "passed (dry run)"
    assert again.notes[1].startswith("gate: version 2 would become champion (dry run")


def test_worse_model_stays_challenger_and_says_why(chain, trained):
    first, _, third = trained
    c = client(chain)
    run = c.get_run(third.metrics["run_id"])
    new, champ = run.data.metrics["gate_challenger"], run.data.metrics["gate_champion"]
    assert champ == pytest.approx(c.get_run(first.metrics["run_id"]).data.metrics["test_auc_roc"])
    assert champ - new > 0.02
    assert run.data.tags["ml_engine.gate.decision"] == "rejected"
    assert run.data.tags["ml_engine.gate.reason"] == (
        f"auc_roc {new:.4f} vs champion v1 {champ:.4f} on the new test set: worse by "
        f"{champ - new:.4g}, more than train.gate_max_loss 0.02"
    )
    aliases = c.get_registered_model(NAME).aliases
    assert aliases == {"champion": "1", "challenger": "3"}


def test_reproduce_rebuilds_the_training_set_by_time_travel(spark, chain, trained):
    from ml_engine.tracking import connect
    from ml_engine.training.job import logged_config, reproduce
    from ml_engine.training_set import training_rows

    first, _, _ = trained
    connect(chain.cfg)  # as `ml-engine reproduce --config` does before reading the run
    run_id = first.metrics["run_id"]
    # The current batch's features and silver rows were added after training (each table's
    # v1; v0 is the reference batch's): time travel must ignore them.
    assert chain.tables.version(chain.cfg.storage.table_path("features")) == 1
    assert chain.tables.version(chain.cfg.storage.table_path("silver")) == 1
    cfg = logged_config(run_id)
    rebuilt, info = training_rows(spark, cfg, chain.tables, features_version=0, labels_version=0)
    written = chain.tables.read(cfg.storage.table_path("training_set"), version=0)
    assert_df_equality(rebuilt, written, ignore_row_order=True, ignore_nullable=True)
    result = reproduce(spark, cfg, chain.tables, run_id)
    assert set(result.original) == set(result.reproduced)
    for name, value in result.original.items():
        assert result.reproduced[name] == pytest.approx(value, abs=1e-5), name
    assert result.table()[0].split() == ["metric", "original", "reproduced", "difference"]


def test_gate_thresholds_reject_a_model_below_them(chain):
    from ml_engine.training.job import gate_decision

    cfg = with_sets(chain.cfg, "train.gate_thresholds={auc_roc: 0.9, log_loss: 0.3}")
    decision = gate_decision(cfg, "auc_roc", {"auc_roc": 0.85, "log_loss": 0.2}, None, None)
    assert not decision.promote
    assert decision.reason == "auc_roc 0.8500 < threshold 0.9"
    decision = gate_decision(cfg, "auc_roc", {"auc_roc": 0.95, "log_loss": 0.4}, None, None)
    assert decision.reason == "log_loss 0.4000 > threshold 0.3"


@pytest.mark.parametrize(
    ("overrides", "rows", "message"),
    [
        (["train.grid={regParm: [0.1]}"], None, "train: train.grid.regParm: LogisticRegression "
         "has no parameter 'regParm'. Did you mean 'regParam'?"),
        (["train.numeric_features=[amount, nope]"], None, "train: train.numeric_features: "
         "column 'nope' is not in the training set"),
        ([], "is_fraud = 0", "train: label 'is_fraud' has one class only ('0' in all"),
        ([], "false", "train: the training set "),
        (["train.gate_thresholds={rmse: 1.0}"], None, "train: train.gate_thresholds.rmse: rmse "
         "is not a classification metric (train.task: auto, and label 'is_fraud' is int); use "
         "one of ['accuracy', 'auc_pr', 'auc_roc', 'f1', 'log_loss'], or one class's "
         "f1/precision/recall/auc_roc as <metric>_<class> (recall_high) for a multiclass label"),
    ],
)  # fmt: skip
def test_bad_training_input_fails_before_any_run_or_version(
    spark, chain, trained, tmp_path, overrides, rows, message
):
    c = client(chain)
    cfg = with_sets(chain.cfg, *overrides)
    if rows is not None:
        # A training set of its own: the chain's is shared by the other tests.
        filtered = chain.tables.read(chain.cfg.storage.table_path("training_set")).where(rows)
        path = str(tmp_path / "tables" / "training_set")
        chain.tables.overwrite(filtered, path)
        cfg = with_sets(chain.cfg, *overrides, f"storage.tables.training_set={path}")
    runs_before = len(c.search_runs([c.get_experiment_by_name("transactions").experiment_id]))
    with pytest.raises(JobError) as err:
        run_job("train", spark, cfg, chain.tables)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    experiment = c.get_experiment_by_name("transactions").experiment_id
    runs = c.search_runs([experiment])
    trainings = [r for r in runs if r.data.tags.get("ml_engine.job") == "train"]
    assert [r.info.status for r in trainings] == ["FINISHED"] * 3  # the fixture's only
    assert len(runs) == runs_before
    assert [int(v.version) for v in c.search_model_versions(f"name='{NAME}'")] == [3, 2, 1]


def test_unreachable_tracking_server_is_named_before_training(chain):
    from ml_engine.preflight import preflight

    port = services.free_port()
    cfg = with_sets(chain.cfg, f"mlflow.tracking_uri=http://127.0.0.1:{port}")
    problems = preflight(cfg, ["train"])
    assert len(problems) == 1
    assert problems[0].startswith(
        f"mlflow.tracking_uri: the tracking server http://127.0.0.1:{port} does not answer ("
    )


# --------------------------------------------------------------------------- score


def test_score_writes_every_row_of_the_batch_and_accounts_for_the_rest(chain, scored):
    result = scored
    predictions = chain.tables.read(chain.cfg.storage.table_path("predictions")).where(
        "model_version = 1"
    )
    features = chain.tables.read_batch(chain.cfg.storage.table_path("features"), "current")
    assert_df_equality(
        predictions.select("transaction_id", "customer_id", "event_time"),
        features.select("transaction_id", "customer_id", "event_time"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    rows = predictions.collect()
    assert {(r.model_name, r.model_version, r.batch_id) for r in rows} == {(NAME, 1, "current")}
    for r in rows:
        assert len(r.probability) == 2 and sum(r.probability) == pytest.approx(1.0)
        assert r.prediction == float(np.argmax(r.probability))
        assert r.predicted_label == str(int(r.prediction))
    bronze = chain.tables.read_batch(chain.cfg.storage.table_path("bronze"), "current").count()
    quarantine = chain.tables.read(chain.cfg.storage.table_path("quarantine")).where(
        "batch_id = 'current'"
    )
    ingest_rejected = quarantine.where("stage = 'ingest'").count()
    m = result.metrics
    assert m["rows_of_batch"] == bronze + ingest_rejected
    assert m["quarantined_upstream"] == quarantine.count()
    assert m["scored"] == len(rows)
    assert m["scored"] + m["quarantined_upstream"] + m["duplicates_removed"] == m["rows_of_batch"]
    assert m["unaccounted"] == 0


def test_rescoring_replaces_and_another_version_keeps_both(spark, chain, scored):
    path = chain.cfg.storage.table_path("predictions")
    once = chain.tables.read(path).where("model_version = 1").count()
    assert once == scored.metrics["scored"]
    run_job("score", spark, chain.current, chain.tables)
    assert chain.tables.read(path).count() == once
    v2 = load_config("ml-engine:sample", [*cfg_overrides(chain.current), "score.model_version=2"])
    run_job("score", spark, v2, chain.tables)
    by_version = {
        r.model_version: r["count"]
        for r in chain.tables.read(path).groupBy("model_version").count().collect()
    }
    assert by_version == {1: once, 2: once}


def test_unseen_categories_nulls_and_outliers_are_scored(chain, champion):
    features = chain.tables.read_batch(chain.cfg.storage.table_path("features"), "current")
    odd = features.limit(3).withColumns(
        {
            "channel": F.lit("carrier-pigeon"),
            "country": F.lit(None).cast("string"),
            "amount": F.lit(1e12),
            "credit_score": F.lit(None).cast("int"),
            "log_amount": F.lit(float("nan")),
        }
    )
    rows = champion.model.transform(odd).select("prediction", "probability").collect()
    assert len(rows) == 3
    for r in rows:
        assert r.prediction in (0.0, 1.0)
        assert np.isfinite(r.probability.toArray()).all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["score.model_alias=gold"], f"model '{NAME}' has no alias 'gold' (score.model_alias); "
         "aliases: challenger -> v3, champion -> v1. Set score.model_alias to one of them. Or "
         "give a version with score.model_version"),
        (["score.model_version=9"], f"model '{NAME}' has no version 9 (score.model_version); "
         "versions: 1, 2, 3"),
        (["mlflow.registered_model=nothing-here"], "no registered model 'nothing-here' in "),
    ],
)  # fmt: skip
def test_missing_model_version_or_alias_is_one_line(spark, chain, trained, overrides, message):
    cfg = load_config("ml-engine:sample", [*cfg_overrides(chain.current), *overrides])
    with pytest.raises(JobError) as err:
        run_job("score", spark, cfg, chain.tables)
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_batch_without_a_column_of_the_signature_is_refused(chain, champion):
    from ml_engine.scoring import check_signature

    features = chain.tables.read_batch(chain.cfg.storage.table_path("features"), "current")
    with pytest.raises(JobError) as err:
        check_signature(champion.inputs, features.drop("amount", "channel"), "score: batch x")
    assert str(err.value) == (
        "score: batch x lacks column(s) ['amount', 'channel'] that the model's signature "
        "needs; if the schema dropped them on purpose, retrain on today's columns "
        "(ml-engine run build_training_set train), else rebuild the features with the config "
        "the model was trained with"
    )


def test_gate_names_the_columns_the_champion_needs_that_the_new_test_set_lacks(chain, trained):
    from mlflow import MlflowClient

    from ml_engine.tracking import use_store
    from ml_engine.training.job import champion_on

    uri = use_store(chain.cfg)
    champion = MlflowClient(uri, uri).get_model_version_by_alias(NAME, "champion")
    features = chain.tables.read_batch(chain.cfg.storage.table_path("features"), "current")
    got = champion_on(chain.cfg, features.drop("amount", "channel"), "auc_roc", "is_fraud")
    assert got == (
        None,
        int(champion.version),
        f"champion v{champion.version} cannot score the new test set: it lacks column(s) "
        "['amount', 'channel'] that the champion was trained with",
    )


def test_the_champion_reads_a_label_column_named_otherwise_as_its_own(chain, champion):
    """A model trained on silver's ``is_fraud`` is compared with one trained on a label
    table's ``chargeback`` column: the champion reads that column as its label."""
    from ml_engine.tracking import use_store
    from ml_engine.training.job import champion_on

    use_store(chain.cfg)  # as the train job does

    features = chain.tables.read_batch(chain.cfg.storage.table_path("features"), "current")
    test = features.where("is_fraud IS NOT NULL").withColumnRenamed("is_fraud", "chargeback")

    got = champion_on(chain.cfg, test, "auc_roc", "chargeback")

    rows = champion.model.transform(test).select("chargeback", "probability").toPandas()
    auc = skm.roc_auc_score(rows.chargeback, [p[1] for p in rows.probability])
    assert got == (pytest.approx(auc, rel=1e-9), champion.version, "")


# --------------------------------------------------------------------------- drift


def test_drift_report_flags_the_documented_drift_and_writes_its_outputs(spark, chain, scored):
    result = run_job("drift_report", spark, chain.current, chain.tables)
    manifest = json.loads((chain.root / "raw" / "MANIFEST.json").read_text())
    metrics = chain.tables.read(chain.cfg.storage.table_path("drift_metrics"))
    status = {
        r.feature: r.status
        for r in metrics.where("model_version = 1 AND kind IS NOT NULL").collect()
    }
    inputs = {f for f in status if f not in ("score", "predicted_label")}
    assert {f for f in inputs if status[f] == "drift"} == set(manifest["drifted_features"])
    # the job's result names drifting features and drifting model outputs apart
    assert set(result.metrics["drifted_features"]) == set(manifest["drifted_features"])
    produced = {f for f in ("score", "predicted_label") if status[f] == "drift"}
    assert set(result.metrics["drifted_outputs"]) == produced
    html = Path(result.outputs["report"]).read_text()
    assert "<script src" not in html and "http" not in html.split("<body")[1]
    run = client(chain).get_run(result.metrics["mlflow_run_id"])
    assert run.data.tags["ml_engine.model_version"] == "1"
    assert run.data.metrics["drifted_share"] == result.metrics["drifted_share"]
    # The metrics on arrived labels: v1's predictions of the batch joined to silver's labels.
    preds = DeltaTable(chain.cfg.storage.table_path("predictions")).to_pandas(
        filters=[("batch_id", "=", "current"), ("model_version", "=", 1)]
    )
    labels = DeltaTable(chain.cfg.storage.table_path("silver")).to_pandas(
        columns=["transaction_id", "is_fraud"], filters=[("batch_id", "=", "current")]
    )
    labelled = preds.merge(labels.dropna(), on="transaction_id")
    assert len(labelled) == len(preds)
    auc = skm.roc_auc_score(labelled.is_fraud, [p[1] for p in labelled.probability])
    assert run.data.metrics["batch_auc_roc"] == pytest.approx(auc, rel=1e-9)
    assert run.data.metrics["batch_labelled_rows"] == len(labelled)
    model_run = client(chain).get_run(run.data.tags["ml_engine.model_run_id"])
    test_auc = model_run.data.metrics["test_auc_roc"]
    # A rerun replaces the rows of (model version, batch).
    before = metrics.count()
    assert result.exit_code == 0 and result.metrics["dataset_drift"] is False
    # Labels of every third row only (a labels table of their own): the metrics and the counts
    # printed and shown are those of the rows whose labels arrived.
    arrived = labels.dropna().iloc[::3]
    write_deltalake(str(chain.root / "late_labels"), arrived)
    strict = load_config(
        "ml-engine:sample",
        [
            *cfg_overrides(chain.current),
            "drift.fail_on_drift=true",
            "drift.drift_share=0.2",
            f"training_set.labels_path={chain.root / 'late_labels'}",
        ],
    )
    rerun = run_job("drift_report", spark, strict, chain.tables)
    assert (rerun.metrics["dataset_drift"], rerun.exit_code) == (True, 5)
    labelled = preds.merge(arrived, on="transaction_id")
    auc = skm.roc_auc_score(labelled.is_fraud, [p[1] for p in labelled.probability])
    assert rerun.notes[-2] == (
        f"on arrived labels ({len(labelled):,} of {len(preds):,} scored rows): auc_roc "
        f"{auc:.4f} (training test: {test_auc:.4f})"
    )
    # The rerun's MLflow run replaces the first one, as its rows replace the first's.
    first = result.metrics["mlflow_run_id"]
    assert client(chain).get_run(first).info.lifecycle_stage == "deleted"
    assert rerun.notes[-1] == (
        f"replaces the earlier drift run(s) {first} of v1 on batch current, now deleted in "
        "MLflow (restorable: mlflow runs restore --run-id ID)"
    )
    page = Path(rerun.outputs["report"]).read_text()
    assert f"on the {len(labelled):,} of this batch's {len(preds):,} scored rows" in page
    again = chain.tables.read(chain.cfg.storage.table_path("drift_metrics"))
    assert again.count() == before


def test_drift_report_of_a_batch_without_rows_says_so(spark, chain, scored):
    """A batch the jobs before it left empty (a file of a header only, run as one chain):
    score accounts for no rows, and drift_report says there is nothing to compare (not that
    score was skipped)."""
    raw = chain.root / "raw" / "empty-day"
    raw.mkdir()
    header = (chain.root / "raw" / "current").glob("*.csv").__next__().read_text().split("\n")[0]
    (raw / "part.csv").write_text(header + "\n")
    cfg = with_sets(chain.current, f"ingest.path={raw}", "batch_id=empty-day")
    for job in ("ingest", "clean", "build_features"):
        run_job(job, spark, cfg, chain.tables)
    result = run_job("score", spark, cfg, chain.tables)
    counts = ("rows_of_batch", "scored", "quarantined_upstream", "unaccounted")
    assert [result.metrics[k] for k in counts] == [0, 0, 0, 0]
    with pytest.raises(JobError) as err:
        run_job("drift_report", spark, cfg, chain.tables)
    assert str(err.value) == (
        "drift_report: batch 'empty-day' has no rows in features "
        f"({cfg.storage.table_path('features')}) nor in predictions: the jobs before "
        "drift_report left it without rows, so there is nothing to compare with the reference. "
        "Check the batch's input (and the quarantine), then rerun those jobs; or set batch_id "
        "to another batch"
    )


def test_drift_profiles_of_a_batch_are_two_spark_jobs_for_5_or_40_features(spark):
    from ml_engine.config import build_config
    from ml_engine.drift.job import profile_batch
    from ml_engine.drift.profile import profile_dataframe

    counts = {}
    for n in (5, 40):
        cols = {f"x{i}": (F.rand(seed=i) * (i + 1)) for i in range(n)}
        frame = (
            spark.range(2000)
            .withColumns(cols)
            .withColumn("c", F.concat(F.lit("k"), (F.col("id") % 7).cast("string")))
        )
        reference = profile_dataframe(frame, list(cols), ["c"], bins=10)
        preds = spark.range(2000).select(
            F.array(F.rand(seed=1), F.lit(0.5)).alias("probability"),
            (F.col("id") % 2).cast("double").alias("prediction"),
            (F.col("id") % 2).cast("string").alias("predicted_label"),
        )
        spec = {"task": "classification", "classes": ["0", "1"]}
        cfg = build_config(
            {
                "schema": str(Path(__file__).parent / "data" / "tx.yaml"),
                "storage": {"root": "/tmp/unused"},
            },
            check_schema=False,
        )
        with JobCounter(spark) as jobs:
            profile, compared = profile_batch(cfg, frame, preds, reference, spec)
        counts[n] = jobs.count
        assert len(compared) == n + 1 + 2
        assert profile.columns["x0"].count == 2000
    assert counts == {5: 2, 40: 2}


# --------------------------------------------------------------------------- secrets


def test_no_secret_in_params_tags_or_artifacts_of_any_run(chain, trained):
    from mlflow.artifacts import download_artifacts

    c = client(chain)
    experiment = c.get_experiment_by_name("transactions").experiment_id
    runs = c.search_runs([experiment])
    assert len(runs) >= 3
    for run in runs:
        texts = [*run.data.params.values(), *run.data.tags.values()]
        assert all(SENTINEL not in t for t in texts), run.info.run_id
    first = trained[0].metrics["run_id"]
    params = c.get_run(first).data.params
    assert params["spark.conf.spark.hadoop.fs.s3a.secret.key"] == "${ML_ENGINE_TEST_SECRET_KEY}"
    config = Path(
        download_artifacts(run_id=first, artifact_path="config/config.yaml", tracking_uri=chain.url)
    )
    assert "${ML_ENGINE_TEST_SECRET_KEY}" in config.read_text()
    assert SENTINEL not in config.read_text()


def test_no_secret_in_error_messages(tmp_path):
    port = services.free_port()
    uri = f"http://ml:${{ML_ENGINE_TEST_SECRET_KEY}}@127.0.0.1:{port}"
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "ml-engine"),
            "run",
            "train",
            "--config",
            "ml-engine:sample",
            "--set",
            f"storage.root={tmp_path}",
            "--set",
            f"mlflow.tracking_uri={uri}",
            "--debug",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert SENTINEL not in run.stderr + run.stdout
    assert f"the tracking server http://ml:***@127.0.0.1:{port} does not answer" in run.stderr


def test_champion_loads_in_a_fresh_process_for_spark_and_pandas(chain, fresh_process_champion):
    """The champion (with ml_engine's outlier stage) scores in a new process, from the server."""
    proc, sample, root = fresh_process_champion
    # A loaded 2-core machine needs minutes to start Spark and load the model.
    code = proc.wait(timeout=900)
    stdout, stderr = (root / "stdout").read_text(), (root / "stderr").read_text()
    assert code == 0, stderr[-3000:]
    assert stdout.strip(), (stdout, stderr[-3000:])
    out = json.loads(stdout.strip().splitlines()[-1])
    import mlflow.spark

    mlflow.set_tracking_uri(chain.url)
    mlflow.set_registry_uri(chain.url)
    here = mlflow.spark.load_model(f"models:/{NAME}/1")
    mine = here.transform(sample).orderBy("transaction_id")
    probs = [float(r.probability[1]) for r in mine.select("probability").collect()]
    preds = [float(r.prediction) for r in mine.select("prediction").collect()]
    np.testing.assert_allclose(out["spark"], probs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out["pandas"], preds, rtol=0, atol=0)
    # every other row's credit_score null, scored here by Spark: the same predictions
    ids = [r.transaction_id for r in sample.orderBy("transaction_id").collect()]
    nulled = F.when(F.col("transaction_id").isin(ids[::2]), None).otherwise(F.col("credit_score"))
    gaps = here.transform(sample.withColumn("credit_score", nulled)).orderBy("transaction_id")
    np.testing.assert_allclose(
        out["gaps"], [float(r.prediction) for r in gaps.select("prediction").collect()], atol=0
    )
    assert 0 < sum(preds) < len(preds) or len(set(np.round(probs, 6))) > 1
