"""The ``train`` job and ``ml-engine reproduce``: training set -> a tracked, registered model.

One MLflow run per training (:func:`run_train`):

* params: every leaf of the effective config (``${VAR}`` placeholders, never secrets), the
  best grid point (``best.<param>``) and the split (its boundary for a time split);
  artifacts: the config (:data:`ml_engine.tracking.CONFIG_ARTIFACT`), the tuning table
  (every grid point's mean and per-fold validation metric), the feature spec, the reference
  profile of the training set for drift reports, and figures (ROC and precision-recall
  curves, confusion matrix; residuals for regression; feature importances by name);
* metrics: the held-out test metrics as ``test_<name>``;
* inputs and tags: the training set as an MLflow dataset with its Delta path and version,
  the git commit, the engine version and the Delta version of every input table;
* the fitted ``PipelineModel`` logged with ``mlflow.spark`` (signature, input example,
  explicit pip requirements, the engine's code) and registered under
  ``mlflow.registered_model`` with the alias ``challenger``.

The gate (:func:`gate_decision`) then decides whether the new version becomes ``champion``:
it must reach ``train.gate_thresholds`` on its test set and, when a champion exists, score no
worse than ``train.gate_max_loss`` below it on the gate metric, both scored on the new test
set. ``train.gate: dry_run`` reports the decision without moving aliases. Everything that can
fail on bad input fails before the run starts or before the version is registered; a failure
after registration deletes the version, so no half-registered version stays behind.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import math
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspark import StorageLevel
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import (
    METRIC_HIGHER_IS_BETTER,
    Config,
    higher_is_better,
    per_class_metric,
)
from ml_engine.package_files import package_dir
from ml_engine.results import JobError, JobResult
from ml_engine.session import describe
from ml_engine.tables.base import DeltaTables
from ml_engine.training import SCORE_COL, TrainingError, reserved_column_hint
from ml_engine.training.evaluation import GATE_METRIC_PARAM
from ml_engine.training_set import FEATURES_VERSION, LABEL_TIME, LABELS_VERSION

MODEL_ARTIFACT = "model"
CHAMPION = "champion"
CHALLENGER = "challenger"
REPRODUCES_TAG = "ml_engine.reproduces"
# Test metrics a job result shows (the run has all of them, per class too).
SUMMARY_METRICS = ("auc_roc", "auc_pr", "accuracy", "f1", "log_loss", "rmse", "mae", "r2")


@dataclass
class Trained:
    """A fitted and evaluated model, before anything is logged."""

    fit: Any  # ml_engine.training.tuning.FitResult
    metrics: dict[str, float]
    split: dict[str, Any]
    test: DataFrame
    predictions: DataFrame
    input_columns: list[str]
    rows: dict[str, int] = field(default_factory=dict)

    def release(self) -> None:
        """Frees the cached test predictions."""
        self.predictions.unpersist()


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for a new model version, and why."""

    promote: bool
    metric: str
    challenger: float
    champion: float | None
    champion_version: int | None
    reason: str


def _label_and_ids(cfg: Config, columns: list[str]) -> tuple[str, str | None, list[str]]:
    schema = cfg.table_schema
    ts = cfg.training_set
    label = ts.label or schema.label
    if label is None:
        raise JobError(
            f"train: no label: set training_set.label or give a column the role label in "
            f"schema '{schema.name}' ({schema.source})"
        )
    candidates = [ts.label_id, schema.record_id, ts.key or schema.key]
    ids = [c for c in dict.fromkeys(c for c in candidates if c) if c in columns]
    id_col = next(iter(ids), None)
    return label, id_col, ids


def check_training_set(df: DataFrame, label: str, classification: bool, path: str) -> dict:
    """Refuses a training set that cannot train a model (one small aggregation).

    Raises:
        JobError: no rows, no labelled rows, fewer than two classes for classification, or a
            column ``score_<class>`` for one of the label's classes (a model output's name).
    """
    prefix = f"{SCORE_COL}_"
    scores = (
        [c for c in df.columns if c.startswith(prefix) and c != label] if classification else []
    )
    value = F.col(label).cast("string")
    row = df.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.col(label)).alias("labelled"),
        F.approx_count_distinct(F.col(label)).alias("classes"),
        F.min(value).alias("some_class"),
        *[F.max(value == c[len(prefix) :]).alias(f"clash_{i}") for i, c in enumerate(scores)],
    ).first()
    if row["rows"] == 0:
        raise JobError(
            f"train: the training set {path} is empty; run build_training_set on batches with "
            f"labelled rows"
        )
    if row["labelled"] == 0:
        raise JobError(f"train: the training set {path} has no row with a label '{label}'")
    if classification and row["classes"] < 2:
        raise JobError(
            f"train: label '{label}' has one class only ({row['some_class']!r} in all "
            f"{row['labelled']} labelled rows of {path}); classification needs at least two"
        )
    clash = [c for i, c in enumerate(scores) if row[f"clash_{i}"]]
    if clash:
        raise JobError(
            f"train: the training set has column(s) {clash}, named like the probability of a "
            f"class of label '{label}': {reserved_column_hint()}"
        )
    return {"rows": int(row["rows"]), "labelled": int(row["labelled"])}


def _outlier_model(spark: SparkSession, cfg: Config) -> PipelineModel | None:
    from ml_engine.outliers import load_outlier_model

    if not cfg.train.outlier_features:
        return None
    if not cfg.outliers.detectors:
        raise JobError(
            "train.outlier_features is set but outliers.detectors is empty: no detector to "
            "take the flags from; unset train.outlier_features or configure a detector"
        )
    path = cfg.outliers.model_path or cfg.storage.path("models", "outliers")
    model = load_outlier_model(spark, path)
    if model is None:
        raise JobError(
            f"train.outlier_features is set but no outlier detector is saved at {path}; run "
            f"detect_outliers first or unset train.outlier_features"
        )
    return model


@dataclass
class Prepared:
    """A training set that passed the checks, and what its training needs."""

    spec: Any  # ml_engine.training.pipeline.FeatureSpec, classes not known yet
    id_col: str | None
    outlier_model: PipelineModel | None
    rows: dict[str, int]


def prepare_training(spark: SparkSession, cfg: Config, df: DataFrame, path: str) -> Prepared:
    """Everything that can refuse a training before it starts (nothing is logged).

    Raises:
        JobError: a missing label or feature column, an unknown estimator or grid parameter,
            an empty training set, a single class, a missing outlier detector.
    """
    from ml_engine.training.pipeline import estimator, feature_spec, param_grid

    tc = cfg.train
    label, id_col, ids = _label_and_ids(cfg, df.columns)
    try:
        spec = feature_spec(df.schema, tc, label, exclude=ids)
        param_grid(estimator(spec, tc), tc.grid)
    except TrainingError as exc:
        raise JobError(f"train: {exc}") from None
    if tc.task == "auto":
        why = f"train.task: auto, and label '{label}' is {spec.label_type}"
        wrong = tc.task_metric_errors(spec.task, why)
        if wrong:
            raise JobError("train: " + "; ".join(f"train.{key}: {msg}" for key, msg in wrong))
    describe(spark, "train: check the training set")
    rows = check_training_set(df, label, spec.is_classification, path)
    return Prepared(spec, id_col, _outlier_model(spark, cfg), rows)


def fit_and_evaluate(
    spark: SparkSession, cfg: Config, df: DataFrame, prepared: Prepared, path: str
) -> Trained:
    """Splits, fits (with tuning) and evaluates on the held-out rows; logs nothing.

    The test predictions stay cached for the metrics, pictures and profile that follow;
    :meth:`Trained.release` frees them.

    Raises:
        JobError: the fit or the evaluation cannot be done (names the reason).
    """
    from ml_engine.training.evaluation import evaluate
    from ml_engine.training.tuning import fit, split, training_partitions

    train, test, split_info = split(df, cfg.train.split, prepared.id_col, LABEL_TIME)
    try:
        result = fit(
            train,
            prepared.spec,
            cfg.train,
            prepared.outlier_model,
            id_col=prepared.id_col,
            partitions=training_partitions(cfg.train, prepared.rows["labelled"]),
        )
    except TrainingError as exc:
        raise JobError(f"train: {exc}") from None
    describe(spark, "train: score the test rows")
    predictions = result.model.transform(test).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        metrics = evaluate(predictions, result.spec)
    except TrainingError as exc:
        predictions.unpersist()
        raise JobError(f"train: test set of {path}: {exc}") from None
    inputs = [*result.spec.numeric, *result.spec.categorical]
    if prepared.outlier_model is not None:
        from ml_engine.outliers import detector_models

        extra = [c for m in detector_models(prepared.outlier_model) for c in m.getInputCols()]
        inputs += [c for c in dict.fromkeys(extra) if c not in inputs]
    return Trained(result, metrics, split_info, test, predictions, inputs, prepared.rows)


def train_model(spark: SparkSession, cfg: Config, df: DataFrame, path: str) -> Trained:
    """:func:`prepare_training` then :func:`fit_and_evaluate`."""
    return fit_and_evaluate(spark, cfg, df, prepare_training(spark, cfg, df, path), path)


def gate_metric(cfg: Config, spec) -> str:
    """The gate's metric: ``train.metric``, else the tuning metric's default for the task."""
    from ml_engine.training.pipeline import tuning_metric

    return tuning_metric(spec, cfg.train)


def _better(metric: str, a: float, b: float) -> float:
    """How much better ``a`` is than ``b`` on ``metric`` (negative: worse)."""
    return a - b if METRIC_HIGHER_IS_BETTER[metric] else b - a


def gate_decision(
    cfg: Config,
    metric: str,
    metrics: dict[str, float],
    champion_score: float | None,
    champion_version: int | None,
    champion_note: str = "",
) -> GateDecision:
    """Applies ``train.gate_thresholds`` and ``train.gate_max_loss`` (see the module docstring)."""
    tc = cfg.train
    failed = []
    for name, bound in sorted(tc.gate_thresholds.items()):
        value = metrics.get(name)
        per_class = per_class_metric(name)
        if value is None and per_class:
            prefix = f"{per_class[0]}_"
            known = sorted(m for m in metrics if m.startswith(prefix) and per_class_metric(m))
            failed.append(
                f"{name}: the model has no class '{per_class[1]}' (its {prefix}<class> metrics: "
                f"{', '.join(known) or 'none, per-class metrics are of multiclass labels'})"
            )
            continue
        higher = higher_is_better(name)
        ok = value is not None and (value >= bound if higher else value <= bound)
        if not ok:
            failed.append(f"{name} {_fmt(value)} {'<' if higher else '>'} threshold {bound:g}")
    score = metrics[metric]
    if failed:
        return GateDecision(
            False, metric, score, champion_score, champion_version, "; ".join(failed)
        )
    met = (
        ", ".join(f"{n} {_fmt(metrics.get(n))} meets {b:g}" for n, b in tc.gate_thresholds.items())
        or "no thresholds set"
    )
    if champion_score is None:
        first = "the first model" if champion_version is None else champion_note
        return GateDecision(
            True, metric, score, None, champion_version, f"{met}; {first} passes on thresholds"
        )
    gain = _better(metric, score, champion_score)
    versus = (
        f"{metric} {_fmt(score)} vs champion v{champion_version} {_fmt(champion_score)} on the "
        f"new test set"
    )
    if gain < -tc.gate_max_loss:
        return GateDecision(
            False,
            metric,
            score,
            champion_score,
            champion_version,
            f"{versus}: worse by {-gain:.4g}, more than train.gate_max_loss {tc.gate_max_loss:g}",
        )
    margin = (
        f"better by {gain:.4g}"
        if gain > 0
        else "equal"
        if gain == 0
        else f"worse by {-gain:.4g}, within train.gate_max_loss {tc.gate_max_loss:g}"
    )
    return GateDecision(
        True, metric, score, champion_score, champion_version, f"{met}; {versus}: {margin}"
    )


def _fmt(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def champion_on(
    cfg: Config, test: DataFrame, metric: str, label: str
) -> tuple[float | None, int | None, str]:
    """The current champion's ``metric`` on ``test``, whose label column is ``label``:
    ``(score, version, note)``. A champion trained on a label column of another name (its
    labels came from ``silver``, the new ones from a label table) reads ``label`` as its own.

    ``(None, None, ...)`` when there is no champion; ``(None, version, why)`` when the
    champion cannot score these rows (for example it was trained on other features).
    """
    import mlflow.spark
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ml_engine.drift.job import SPEC_ARTIFACT, download_json
    from ml_engine.scoring import signature_inputs
    from ml_engine.training.evaluation import evaluate
    from ml_engine.training.pipeline import FeatureSpec

    client = MlflowClient()
    name = cfg.mlflow.registered_model
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None, "no champion yet"
    version = int(mv.version)
    spec_data = download_json(mv.run_id, SPEC_ARTIFACT)
    if spec_data is None:
        return None, version, f"champion v{version} has no feature spec; judged on thresholds"
    spec_data.pop("positive_class", None)
    spec = FeatureSpec(**spec_data)
    if spec.label != label:
        test = test.drop(spec.label).withColumnRenamed(label, spec.label)
    lacking = [c for c in signature_inputs(f"models:/{name}/{version}") if c not in test.columns]
    if lacking:
        why = f"it lacks column(s) {lacking} that the champion was trained with"
        return None, version, f"champion v{version} cannot score the new test set: {why}"
    try:
        model = mlflow.spark.load_model(f"models:/{name}/{version}")
        score = evaluate(model.transform(test), spec, metrics=[metric]).get(metric)
    except Exception as exc:  # noqa: BLE001 - any reason the old model cannot score counts
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return None, version, f"champion v{version} cannot score the new test set ({first})"
    return score, version, ""


def pip_requirements(estimator_name: str) -> list[str]:
    """The packages a fresh environment needs to load and score the model."""
    try:
        reqs = importlib.metadata.requires("ml-engine") or []
    except importlib.metadata.PackageNotFoundError:
        reqs = []
    base = [r.split(";")[0].strip() for r in reqs if "extra ==" not in r]
    if not base:
        import mlflow
        import pyspark

        base = [f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}", "pandas<3"]
    if estimator_name == "xgboost":
        import xgboost

        base.append(f"xgboost=={xgboost.__version__}")
    return base


def _log_json(data: Any, artifact: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact).name
        path.write_text(json.dumps(data, indent=2, default=str, allow_nan=True))
        mlflow.log_artifact(str(path), str(Path(artifact).parent))


def _log_params(params: dict[str, Any]) -> None:
    import mlflow

    items = list(params.items())
    for start in range(0, len(items), 100):
        mlflow.log_params(dict(items[start : start + 100]))


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    """The finite metrics, rounded to 12 significant digits: Spark's evaluators add partial
    sums in the order tasks finish, which moves the last bits from run to run."""
    return {k: float(f"{v:.12g}") for k, v in metrics.items() if v is not None and math.isfinite(v)}


def _metric_key(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


def log_figures(trained: Trained) -> list[str]:
    """Logs the pictures of a trained model; returns their artifact names."""
    import matplotlib.pyplot as plt
    import mlflow

    from ml_engine.training import evaluation as ev
    from ml_engine.training import plots

    fit, spec, preds = trained.fit, trained.fit.spec, trained.predictions
    figures = {}
    if spec.is_classification:
        curves = ev.classification_curves(preds, spec)
        auc = {
            c: trained.metrics.get(f"auc_roc_{c}", trained.metrics.get("auc_roc")) for c in curves
        }
        figures["figures/roc_curve.png"] = plots.roc_figure(curves, auc)
        figures["figures/precision_recall_curve.png"] = plots.pr_figure(curves)
        figures["figures/confusion_matrix.png"] = plots.confusion_matrix_figure(
            ev.confusion_matrix(preds, spec)
        )
    else:
        figures["figures/residuals.png"] = plots.residuals_figure(ev.regression_curves(preds, spec))
    importances = ev.feature_importances(fit.model, fit.feature_names)
    _log_json(importances, "figures/feature_importances.json")
    figures["figures/feature_importances.png"] = plots.feature_importance_figure(importances)
    for name, fig in figures.items():
        mlflow.log_figure(fig, name)
        plt.close(fig)
    return sorted(figures)


def reference_profile(cfg: Config, df: DataFrame, trained: Trained, source: dict):
    """The drift reference of this model: the training set's features and the model's
    outputs on its test rows, each in one aggregation."""
    from ml_engine.drift.job import drift_features, merge_profiles, profile_outputs
    from ml_engine.drift.profile import profile_dataframe

    numeric, categorical = drift_features(cfg, df.columns)
    features = profile_dataframe(df, numeric, categorical, bins=cfg.drift.bins, source=source)
    spec = trained.fit.spec.to_dict()
    probability = (
        vector_to_array(F.col("probability"))
        if "probability" in trained.predictions.columns
        else F.lit(None).cast("array<double>")
    )
    outputs = profile_outputs(trained.predictions, spec, probability, cfg.drift.bins, source)
    try:
        return merge_profiles(features, outputs)
    except ValueError as exc:
        raise JobError(f"train: {exc}") from None


def _signature_and_example(trained: Trained):
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    integral = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
    types = {f.name: f.dataType for f in trained.test.schema.fields}
    whole = {c for c in trained.input_columns if isinstance(types[c], integral)}
    example = trained.test.select(
        *[F.col(c).cast("long") if c in whole else F.col(c) for c in trained.input_columns]
    ).limit(5)
    pdf = example.toPandas()
    out = trained.fit.model.transform(example).select("prediction").toPandas()
    inferred = infer_signature(pdf, out)
    # Whole-number inputs take any type: pandas holds them as int64, or as float64 (NaN) when
    # values are missing, which no integer type of a signature accepts; the pipeline casts
    # them and imputes null and NaN alike.
    inputs = Schema(
        [
            ColSpec(AnyType(), spec.name, spec.required) if spec.name in whole else spec
            for spec in inferred.inputs.inputs
        ]
    )
    return ModelSignature(inputs=inputs, outputs=inferred.outputs), pdf


def run_train(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """The train job (see the module docstring).

    Raises:
        JobError: no training set, bad input (empty, one class, a missing feature, an unknown
            grid parameter), or a tracking store that fails.
    """
    import mlflow
    import mlflow.data
    from mlflow import MlflowClient

    from ml_engine.tracking import config_params, connect, lineage_tags, log_effective_config

    started = time.perf_counter()
    path = cfg.storage.table_path("training_set")
    if not tables.exists(path):
        raise JobError(f"train: no training_set table at {path}; run build_training_set first")
    version = tables.version(path)
    df = tables.read(path, version=version)
    experiment_id = connect(cfg)
    client = MlflowClient()

    inputs = _input_versions(spark, cfg, df, (path, version))
    prepared = prepare_training(spark, cfg, df, path)
    trained = None
    with mlflow.start_run(experiment_id=experiment_id, run_name="train") as run:
        run_id = run.info.run_id
        try:
            mlflow.set_tags({**lineage_tags(inputs), "ml_engine.job": "train"})
            _log_params(config_params(cfg))
            log_effective_config(cfg)
            dataset = mlflow.data.from_spark(
                df, path=path, version=str(version), name="training_set", digest=f"delta-v{version}"
            )
            mlflow.log_input(dataset, context="training")
            trained = fit_and_evaluate(spark, cfg, df, prepared, path)
            fit = trained.fit
            metric = gate_metric(cfg, fit.spec)
            _log_training(spark, cfg, df, trained, metric, (path, version, run_id))
            new_version, decision, promoted = _register_and_gate(
                spark, cfg, client, trained, metric, run_id
            )
        finally:
            if trained is not None:
                trained.release()

    return _train_result(
        cfg, trained, (run_id, new_version), decision, promoted, version,
        round(time.perf_counter() - started, 1),
    )  # fmt: skip


def _input_versions(
    spark: SparkSession, cfg: Config, df: DataFrame, training_set: tuple[str, int]
) -> dict[str, tuple[str, int]]:
    """The tables and Delta versions the run was trained from (its lineage tags): the
    training set, and the features and labels versions it was built from, when recorded."""
    describe(spark, "train: input versions")
    versions = df.agg(F.max(FEATURES_VERSION), F.max(LABELS_VERSION)).first()
    inputs = {"training_set": training_set}
    if versions[0] is not None:
        labels_path = cfg.training_set.labels_path or cfg.storage.table_path("silver")
        inputs["features"] = (cfg.storage.table_path("features"), int(versions[0]))
        inputs["labels"] = (labels_path, int(versions[1]))
    return inputs


def _train_result(
    cfg: Config,
    trained: Trained,
    registered: tuple[str, int],
    decision: GateDecision,
    promoted: bool,
    training_set_version: int,
    seconds: float,
) -> JobResult:
    """The job's result: the run and version registered (``registered`` = run id, version),
    the gate's verdict and the test metrics."""
    run_id, new_version = registered
    name = cfg.mlflow.registered_model
    verdict = "becomes champion" if decision.promote else "stays challenger"
    if cfg.train.gate == "dry_run":
        would = "would become champion" if decision.promote else "would stay challenger"
        verdict = f"{would} (dry run: only the challenger alias was set)"
    gate = "champion" if promoted else ("passed (dry run)" if decision.promote else "rejected")
    metrics = {k: v for k, v in _finite(trained.metrics).items() if k in SUMMARY_METRICS}
    return JobResult(
        job="train",
        outputs={"mlflow_run": run_id, "registered_model": f"models:/{name}/{new_version}"},
        metrics={
            "run_id": run_id,
            "model_version": new_version,
            "estimator": trained.fit.estimator,
            "gate": gate,
            "training_set_version": training_set_version,
            "rows": trained.rows,
            **{f"test_{k}": round(v, 6) for k, v in metrics.items()},
            "seconds": seconds,
        },
        notes=[
            f"MLflow run {run_id}; registered {name} version {new_version}",
            f"gate: version {new_version} {verdict}: {decision.reason}",
        ],
    )


def _log_training(
    spark: SparkSession,
    cfg: Config,
    df: DataFrame,
    trained: Trained,
    metric: str,
    source: tuple[str, int, str],
) -> None:
    """Logs to the active run what the fit produced: best params, test metrics, timings, the
    tuning grid, the feature spec, figures, the reference profile and the model."""
    import mlflow
    import mlflow.spark

    from ml_engine.drift.job import REFERENCE_ARTIFACT, SPEC_ARTIFACT

    path, version, run_id = source
    fit = trained.fit
    mlflow.set_tag("ml_engine.estimator", fit.estimator)
    _log_params(
        {
            **{f"best.{k}": json.dumps(v) for k, v in fit.best_params.items()},
            **{f"split.{k}": v for k, v in trained.split.items()},
            "tuning.method_used": fit.tuning,
            "train.partitions_used": fit.partitions,
            GATE_METRIC_PARAM: metric,
        }
    )
    mlflow.log_metrics({f"test_{_metric_key(k)}": v for k, v in _finite(trained.metrics).items()})
    mlflow.log_metrics({f"seconds_{k}": v for k, v in fit.timings.items()})
    _log_json(
        {"metric": fit.metric, "method": fit.tuning, "grid": fit.grid},
        "tuning/grid_metrics.json",
    )
    if fit.class_weights:
        _log_params({f"class_weight.{k}": v for k, v in fit.class_weights.items()})
    _log_json(fit.spec.to_dict(), SPEC_ARTIFACT)
    log_figures(trained)
    describe(spark, "train: reference profile of the training set")
    source_info = {"table": path, "delta_version": version, "run_id": run_id}
    profile = reference_profile(cfg, df, trained, source_info)
    _log_json(json.loads(profile.to_json()), REFERENCE_ARTIFACT)
    describe(spark, "train: log the model")
    signature, example = _signature_and_example(trained)
    mlflow.spark.log_model(
        fit.model,
        artifact_path=MODEL_ARTIFACT,
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(fit.estimator),
        code_paths=[str(package_dir())],
    )


def _register_and_gate(
    spark: SparkSession,
    cfg: Config,
    client: Any,
    trained: Trained,
    metric: str,
    run_id: str,
) -> tuple[int, GateDecision, bool]:
    """Registers the run's model, compares it with the champion on the new test set and sets
    the aliases the gate decides; ``(new version, decision, promoted)``. A failure after the
    registration deletes the version again."""
    import mlflow

    name = cfg.mlflow.registered_model
    describe(spark, "train: the current champion on the new test set")
    champion, champion_version, note = champion_on(
        cfg, trained.test, metric, trained.fit.spec.label
    )
    decision = gate_decision(cfg, metric, trained.metrics, champion, champion_version, note)
    # register_model prints its progress on stderr; the job reports it once.
    with contextlib.redirect_stderr(io.StringIO()):
        registered = mlflow.register_model(f"runs:/{run_id}/{MODEL_ARTIFACT}", name)
    new_version = int(registered.version)
    try:
        client.set_registered_model_alias(name, CHALLENGER, str(new_version))
        promoted = decision.promote and cfg.train.gate == "enforce"
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, str(new_version))
            client.delete_registered_model_alias(name, CHALLENGER)
        mlflow.set_tags(
            {
                "ml_engine.gate.decision": "champion" if decision.promote else "rejected",
                "ml_engine.gate.mode": cfg.train.gate,
                "ml_engine.gate.reason": decision.reason,
                "ml_engine.model_version": str(new_version),
            }
        )
        gate_metrics = {"gate_challenger": decision.challenger}
        if decision.champion is not None:
            gate_metrics["gate_champion"] = decision.champion
        mlflow.log_metrics(_finite(gate_metrics))
    except Exception:
        _delete_version(client, name, new_version)
        raise
    return new_version, decision, promoted


def _delete_version(client, name: str, version: int) -> None:
    try:
        client.delete_model_version(name, str(version))
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


@dataclass(frozen=True)
class Reproduction:
    """A training run retrained from its logged config and the input versions on its tags."""

    run_id: str
    new_run_id: str
    inputs: dict[str, tuple[str, int]]
    original: dict[str, float]
    reproduced: dict[str, float]

    def table(self) -> list[str]:
        """The test metrics side by side, as lines for the terminal."""
        lines = [f"{'metric':<24} {'original':>12} {'reproduced':>12} {'difference':>12}"]
        for name in sorted(set(self.original) | set(self.reproduced)):
            a, b = self.original.get(name), self.reproduced.get(name)
            diff = "" if a is None or b is None else f"{b - a:.3g}"
            lines.append(f"{name:<24} {_fmt(a):>12} {_fmt(b):>12} {diff:>12}")
        return lines


def logged_config(run_id: str, overrides: list[str] = ()) -> Config:
    """The effective config logged on training run ``run_id``, with ``overrides`` applied.

    Raises:
        JobError: the run has no logged config.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from ml_engine.config import load_config
    from ml_engine.tracking import CONFIG_ARTIFACT

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = download_artifacts(run_id=run_id, artifact_path=CONFIG_ARTIFACT, dst_path=tmp)
        except (MlflowException, OSError):
            raise JobError(
                f"reproduce: run {run_id} has no logged config ({CONFIG_ARTIFACT}); only runs "
                f"of the train job can be reproduced"
            ) from None
        return load_config(path, list(overrides))


def reproduce(spark: SparkSession, cfg: Config, tables: DeltaTables, run_id: str) -> Reproduction:
    """Retrains run ``run_id``: its training set rebuilt by Delta time travel at the input
    versions on its tags, trained with ``cfg`` (its logged config), metrics side by side.

    The new run is tagged ``ml_engine.reproduces``; no model version is registered.

    Raises:
        JobError: the run does not exist or has no recorded inputs, or an input version can no
            longer be read (vacuumed).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from pyspark.errors import AnalysisException

    from ml_engine.tables.base import TableError
    from ml_engine.tracking import connect, input_versions, lineage_tags
    from ml_engine.training_set import training_rows

    experiment_id = connect(cfg)
    try:
        original = MlflowClient().get_run(run_id)
    except MlflowException:
        raise JobError(f"reproduce: no run {run_id} in {cfg.tracking_uri()}") from None
    inputs = input_versions(original.data.tags)
    try:
        if "features" in inputs and "labels" in inputs:
            describe(spark, "reproduce: rebuild the training set by time travel")
            df, _ = training_rows(
                spark,
                cfg,
                tables,
                features_version=inputs["features"][1],
                labels_version=inputs["labels"][1],
            )
            path = "training set rebuilt from " + ", ".join(
                f"{n} v{inputs[n][1]}" for n in ("features", "labels")
            )
        elif "training_set" in inputs:
            ts_path, ts_version = inputs["training_set"]
            df, path = tables.read(ts_path, version=ts_version), f"{ts_path} v{ts_version}"
        else:
            raise JobError(f"reproduce: run {run_id} records no input table versions")
    except TableError as exc:
        raise JobError(f"reproduce: {exc}") from None
    except AnalysisException as exc:
        if exc.getCondition() != "PATH_NOT_FOUND":
            raise
        versions = ", ".join(f"{n} v{v}" for n, (_, v) in sorted(inputs.items()))
        raise JobError(
            f"reproduce: run {run_id}'s inputs ({versions}) can no longer be read: a vacuum "
            f"deleted their files ({str(exc).splitlines()[0]}). The vacuum job keeps the inputs "
            "of registered model versions (vacuum.keep_model_inputs); a run whose version was "
            "deleted, or that registered none, is kept for vacuum.retain_hours only"
        ) from None
    trained = train_model(spark, cfg, df, path)
    trained.release()
    with mlflow.start_run(experiment_id=experiment_id, run_name="reproduce") as run:
        mlflow.set_tags(
            {**lineage_tags(inputs), REPRODUCES_TAG: run_id, "ml_engine.job": "reproduce"}
        )
        mlflow.log_metrics(
            {f"test_{_metric_key(k)}": v for k, v in _finite(trained.metrics).items()}
        )
    before = {
        k.removeprefix("test_"): v
        for k, v in original.data.metrics.items()
        if k.startswith("test_")
    }
    return Reproduction(run_id, run.info.run_id, inputs, before, _finite(trained.metrics))
