"""The ``drift_report`` job: one batch's features and predictions against the model's reference.

1. the model version: ``drift.model_alias`` (default: ``score.model_alias``) or
   ``score.model_version`` of ``mlflow.registered_model``;
2. its reference profile: profiled once by ``train`` from the training set at the Delta
   version recorded on its run (the artifact :data:`REFERENCE_ARTIFACT`), or, with
   ``drift.reference.table``, that table at ``drift.reference.version``, profiled the first
   time and stored on the model's run, so later drift runs never rescan the reference;
3. the batch: its ``features`` rows and its ``predictions`` by that model version, each
   profiled in one aggregation on the reference's bins (two Spark jobs whatever the number of
   features);
4. per feature and for the model's output (``predicted_label`` and, for a binary classifier,
   ``score``, the positive class's probability, for a multiclass one ``score_<class>``, each
   class's probability; ``prediction`` for regression) PSI, KS, Wasserstein,
   chi-square and Jensen-Shannon on the driver (:func:`ml_engine.drift.compare`), and when
   labels of the batch's rows have arrived (the label column of ``training_set.labels_path``
   or silver, joined by record id), the batch's model metrics next to the training test
   metrics;
5. outputs: the rows of ``drift_metrics`` for (model version, batch), replaced on a rerun; an
   HTML report in ``drift.report_dir`` with the trend of the last ``drift.history`` batches;
   an MLflow run tagged with the model version, holding the metrics and the report (a rerun's
   run replaces the earlier one: deleted in MLflow, restorable).

Exit code: 0, or :data:`ml_engine.results.EXIT_DRIFT` when the dataset drifted and
``drift.fail_on_drift`` is set.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.ml.functions import array_to_vector
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import Config
from ml_engine.drift.profile import DatasetProfile, profile_dataframe
from ml_engine.drift.report import render_report
from ml_engine.drift.stats import (
    NO_REFERENCE,
    NULL_SHARE,
    NULL_SHARE_CHANGE,
    DriftResult,
    compare,
)
from ml_engine.results import EXIT_DRIFT, EXIT_OK, JobError, JobResult
from ml_engine.session import describe
from ml_engine.tables.base import BATCH_COLUMN, DeltaTables, sql_literal
from ml_engine.training import PREDICTED_LABEL_COL as PREDICTED_LABEL
from ml_engine.training import PREDICTION_COL as PREDICTION
from ml_engine.training import SCORE_COL as SCORE
from ml_engine.training import reserved_column_hint
from ml_engine.training.evaluation import GATE_METRIC_PARAM
from ml_engine.training.evaluation import ROWS as LABELLED_ROWS

REFERENCE_ARTIFACT = "reference/profile.json"
SPEC_ARTIFACT = "model_spec/feature_spec.json"
DRIFT_TAG = "ml_engine.drift"

DRIFT_METRICS_SCHEMA = T.StructType(
    [
        T.StructField("feature", T.StringType(), False),
        T.StructField("kind", T.StringType(), True),
        T.StructField("metric", T.StringType(), False),
        T.StructField("value", T.DoubleType(), True),
        T.StructField("threshold", T.DoubleType(), True),
        T.StructField("drifted", T.BooleanType(), True),
        T.StructField("status", T.StringType(), True),
        T.StructField("model_name", T.StringType(), False),
        T.StructField("model_version", T.IntegerType(), False),
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("computed_at", T.TimestampType(), False),
        T.StructField("run_id", T.StringType(), True),
    ]
)


def output_names(spec: dict[str, Any]) -> list[str]:
    """The names of the model outputs a drift report profiles: ``prediction`` for
    regression; ``predicted_label`` and the class probabilities for classification
    (``score``, the positive class's, for two classes; ``score_<class>`` for each class of
    more, in the order of the probability vector).

    Args:
        spec: the model's feature spec (``FeatureSpec.to_dict()``).
    """
    if spec["task"] != "classification":
        return [PREDICTION]
    classes = spec.get("classes") or []
    if len(classes) == 2:
        return [PREDICTED_LABEL, SCORE]
    return [PREDICTED_LABEL, *(f"{SCORE}_{name}" for name in classes)]


def output_columns(spec: dict[str, Any], probability: Column) -> dict[str, tuple[Column, str]]:
    """The model-output columns of :func:`output_names`, as ``name -> (column, kind)``.

    Args:
        spec: the model's feature spec (``classes`` in the order of the probability vector).
        probability: the predicted class probabilities as an array of double.
    """
    names = output_names(spec)
    if names == [PREDICTION]:
        return {PREDICTION: (F.col(PREDICTION).cast("double"), "numeric")}
    out = {PREDICTED_LABEL: (F.col(PREDICTED_LABEL).cast("string"), "categorical")}
    scores = names[1:]
    if len(scores) == 1:  # two classes: the positive class's
        out[SCORE] = (probability[1], "numeric")
    else:
        out.update({name: (probability[i], "numeric") for i, name in enumerate(scores)})
    return out


def profile_outputs(
    df: DataFrame,
    spec: dict[str, Any],
    probability: Column,
    bins: int | dict,
    source: dict | None = None,
    moments: bool = True,
) -> DatasetProfile:
    """One-aggregation profile of a model's outputs (see :func:`output_columns`)."""
    cols = output_columns(spec, probability)
    frame = df.select(*[c.alias(n) for n, (c, _) in cols.items()])
    numeric = [n for n, (_, kind) in cols.items() if kind == "numeric"]
    categorical = [n for n, (_, kind) in cols.items() if kind == "categorical"]
    return profile_dataframe(frame, numeric, categorical, bins=bins, moments=moments, source=source)


def drift_features(cfg: Config, available: list[str]) -> tuple[list[str], list[str]]:
    """The (numeric, categorical) features a report compares: ``drift.features`` or the
    schema's numeric and categorical features, those ``available`` has."""
    schema = cfg.table_schema
    wanted = cfg.drift.features
    numeric = [c for c in schema.numeric_features if c in available]
    categorical = [c for c in schema.categorical_features if c in available]
    if wanted is not None:
        types = {}
        for c in wanted:
            types[c] = "categorical" if c in schema.categorical_features else "numeric"
        numeric = [c for c in wanted if types[c] == "numeric" and c in available]
        categorical = [c for c in wanted if types[c] == "categorical" and c in available]
    return numeric, categorical


def profile_batch(
    cfg: Config,
    features: DataFrame,
    predictions: DataFrame,
    reference: DatasetProfile,
    spec: dict[str, Any],
    sources: tuple[dict, dict] = ({}, {}),
) -> tuple[DatasetProfile, list[str]]:
    """Profiles a batch's features and model outputs on the reference's bins.

    Two Spark jobs (one aggregation per input), whatever the number of features.

    Returns:
        ``(profile, names to compare)``: the names are ``drift.features`` (default: the
        reference's features) and the model outputs; a name the batch lacks is compared as
        ``missing``, one the reference lacks as ``no_reference``.
    """
    outputs = output_names(spec)
    known = {n: p.kind for n, p in reference.columns.items() if n not in outputs}
    wanted = cfg.drift.features or list(known)
    schema_kinds = {c: "categorical" for c in cfg.table_schema.categorical_features}
    kind = {c: known.get(c) or schema_kinds.get(c, "numeric") for c in wanted}
    present = [c for c in wanted if c in features.columns]
    numeric = [c for c in present if kind[c] == "numeric"]
    categorical = [c for c in present if kind[c] == "categorical"]
    # The batch's mean and std are not compared (the statistics use the sketches and the
    # reference's moments): left out, they would double the aggregation's time.
    edges = reference.edges()
    current = profile_dataframe(
        features,
        numeric,
        categorical,
        bins={c: e for c, e in edges.items() if c in numeric},
        moments=False,
        source=sources[0],
    )
    produced = profile_outputs(
        predictions,
        spec,
        F.col("probability"),
        bins={c: e for c, e in edges.items() if c in outputs},
        moments=False,
        source=sources[1],
    )
    try:
        return merge_profiles(current, produced), [*wanted, *outputs]
    except ValueError as exc:
        raise JobError(f"drift_report: {exc}") from None


def merge_profiles(a: DatasetProfile, b: DatasetProfile) -> DatasetProfile:
    """The columns of two profiles of the same rows as one profile: a feature profile ``a``
    and the model-output profile ``b``.

    Raises:
        ValueError: a feature has the name of a model output (one would hide the other).
    """
    clash = [c for c in a.columns if c in b.columns]
    if clash:
        raise ValueError(
            f"feature column(s) {clash} have the name of a model output the drift profiles "
            f"hold: {reserved_column_hint()}"
        )
    return DatasetProfile(
        rows=a.rows,
        columns={**a.columns, **b.columns},
        source={**b.source, **a.source},
        sketch_k=a.sketch_k,
        top_k=a.top_k,
        max_items_tracked=a.max_items_tracked,
    )


def download_json(run_id: str, artifact: str) -> dict | None:
    """The JSON artifact ``artifact`` of run ``run_id``, or None when it does not exist."""
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=tmp)
        except (MlflowException, OSError):
            return None
        return json.loads(Path(path).read_text())


def log_json(run_id: str, artifact: str, data: dict) -> None:
    """Stores ``data`` as the JSON artifact ``artifact`` of run ``run_id``."""
    from mlflow import MlflowClient

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact).name
        path.write_text(json.dumps(data, allow_nan=False))
        MlflowClient().log_artifact(run_id, str(path), str(Path(artifact).parent))


def reference_profile(
    spark: SparkSession, cfg: Config, tables: DeltaTables, run_id: str, spec: dict
) -> tuple[DatasetProfile, str]:
    """The stored reference profile of a model version's run, or of ``drift.reference``
    (profiled now and stored on the run the first time).

    Returns:
        ``(profile, description of the reference)``.

    Raises:
        JobError: the run has no reference profile and none is configured, or the configured
            table or version does not exist.
    """
    ref = cfg.drift.reference
    if ref.table is None:
        data = download_json(run_id, REFERENCE_ARTIFACT)
        if data is None:
            raise JobError(
                f"drift_report: the model's run {run_id} has no reference profile "
                f"({REFERENCE_ARTIFACT}); retrain it with this engine, or set "
                f"drift.reference.table and drift.reference.version"
            )
        profile = DatasetProfile.from_json(json.dumps(data))
        source = profile.source
        return profile, f"{source.get('table')} at version {source.get('delta_version')}"
    version = ref.version if ref.version is not None else tables.version(ref.table)
    key = hashlib.sha1(f"{ref.table}@{version}".encode()).hexdigest()[:12]
    artifact = f"reference/custom-{key}.json"
    data = download_json(run_id, artifact)
    if data is not None:
        return DatasetProfile.from_json(json.dumps(data)), f"{ref.table} at version {version}"
    if not tables.exists(ref.table):
        raise JobError(f"drift.reference.table: no Delta table at {ref.table}")
    describe(spark, f"drift_report: profile reference {ref.table} v{version} (once)")
    df = tables.read(ref.table, version=version)
    numeric, categorical = drift_features(cfg, df.columns)
    profile = profile_dataframe(
        df,
        numeric,
        categorical,
        bins=cfg.drift.bins,
        source={"table": ref.table, "delta_version": version},
    )
    log_json(run_id, artifact, json.loads(profile.to_json()))
    return profile, f"{ref.table} at version {version}"


def metric_rows(
    result: DriftResult,
    model_name: str,
    model_version: int,
    batch: str,
    computed_at: datetime,
    run_id: str | None,
    kinds: dict[str, str],
) -> list[tuple]:
    """``drift_metrics`` rows of one comparison (values that are not finite become null)."""
    statuses = {f.feature: f.status for f in result.features}
    rows = []
    for r in result.metric_rows():
        value = r["value"]
        finite = isinstance(value, (int, float)) and value == value and abs(value) != float("inf")
        rows.append(
            (
                r["feature"],
                kinds.get(r["feature"]),
                r["metric"],
                float(value) if finite else None,
                None if r["threshold"] is None else float(r["threshold"]),
                r["drifted"],
                statuses.get(r["feature"]),
                model_name,
                model_version,
                batch,
                computed_at,
                run_id,
            )
        )
    rows.append(
        (
            "*",
            None,
            "drifted_share",
            float(result.drifted_share),
            float(result.drift_share),
            bool(result.drifted),
            result.status,
            model_name,
            model_version,
            batch,
            computed_at,
            run_id,
        )
    )
    return rows


def labelled_performance(
    cfg: Config,
    tables: DeltaTables,
    predictions: DataFrame,
    spec: dict[str, Any],
    batch: str,
) -> dict[str, float] | None:
    """The model's metrics on the batch's scored rows whose labels have arrived, with their
    number as ``labelled_rows``, or None.

    Labels are the label column of ``training_set.labels_path`` (default silver) joined to the
    predictions by record id (the key when the schema has no record id).
    """
    from ml_engine.training.evaluation import evaluate
    from ml_engine.training.pipeline import LABEL_COL, FeatureSpec

    schema = cfg.table_schema
    ts = cfg.training_set
    labels_path = ts.labels_path or cfg.storage.table_path("silver")
    label = ts.label or schema.label
    rid = ts.label_id or schema.record_id or schema.key
    if label is None or rid is None or not tables.exists(labels_path):
        return None
    labels = tables.read(labels_path)
    if label not in labels.columns or rid not in labels.columns or rid not in predictions.columns:
        return None
    if BATCH_COLUMN in labels.columns:
        labels = labels.where(F.col(BATCH_COLUMN) == F.lit(batch))
    labels = labels.where(F.col(label).isNotNull()).select(
        F.col(rid), F.col(label).alias("__actual")
    )
    joined = predictions.join(labels.dropDuplicates([rid]), on=rid, how="inner")
    fspec = FeatureSpec(
        numeric=[],
        categorical=[],
        label=label,
        task=spec["task"],
        label_type=spec["label_type"],
        classes=spec.get("classes"),
    )
    if fspec.is_classification:
        index = F.create_map(
            *[x for i, c in enumerate(fspec.classes or []) for x in (F.lit(c), F.lit(float(i)))]
        )
        frame = joined.select(
            index[F.col("__actual").cast("string")].alias(LABEL_COL),
            F.col("prediction"),
            array_to_vector(F.col("probability")).alias("probability"),
        ).where(F.col(LABEL_COL).isNotNull())
    else:
        # Regression metrics read the label column itself.
        frame = joined.select(F.col("__actual").cast("double").alias(label), F.col("prediction"))
    if frame.isEmpty():
        return None
    return evaluate(frame, fspec, with_rows=True)


def _history(tables: DeltaTables, path: str, model_name: str, limit: int) -> list[dict]:
    if not tables.exists(path):
        return []
    rows = (
        tables.read(path)
        .where((F.col("model_name") == model_name) & (F.col("metric") == "psi"))
        .select(
            "feature",
            "metric",
            "value",
            "threshold",
            "drifted",
            "batch_id",
            "computed_at",
            "model_version",
        )
        .orderBy(F.desc("computed_at"))
        .limit(limit * 200)
        .collect()
    )
    return [r.asDict() for r in rows]


@dataclass(frozen=True)
class _Model:
    """The model version a report compares against, with its feature spec and reference."""

    name: str
    version: int
    run_id: str
    spec: dict[str, Any]
    reference: DatasetProfile
    reference_text: str


def run_drift_report(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """The drift_report job (see the module docstring).

    Raises:
        JobError: no model version, no reference profile, or the batch has no features or no
            predictions of that model version.
    """
    from mlflow import MlflowClient

    from ml_engine.tracking import connect

    batch, dc = cfg.effective_batch_id(), cfg.drift
    features_path = cfg.storage.table_path("features")
    predictions_path = cfg.storage.table_path("predictions")
    metrics_path = cfg.storage.table_path("drift_metrics")
    connect(cfg)
    model = _model(spark, cfg, tables)
    features, predictions = _batch_inputs(cfg, tables, model, batch)

    describe(spark, f"drift_report: profile batch {batch} (features, v{model.version} outputs)")
    current, compared = profile_batch(
        cfg,
        features,
        predictions,
        model.reference,
        model.spec,
        sources=(
            {"table": features_path, "batch_id": batch},
            {"table": predictions_path, "batch_id": batch},
        ),
    )
    result = compare(model.reference, current, dc.thresholds, dc.drift_share, features=compared)
    describe(spark, f"drift_report: performance of batch {batch} on arrived labels")
    performance = labelled_performance(cfg, tables, predictions, model.spec, batch)
    training = MlflowClient().get_run(model.run_id).data
    test_metrics = {
        k.removeprefix("test_"): v for k, v in training.metrics.items() if k.startswith("test_")
    }

    computed_at = datetime.now(timezone.utc)
    meta = {
        "model": model.name,
        "model_version": model.version,
        "batch_id": batch,
        "reference": model.reference_text,
        "computed_at": computed_at.isoformat(timespec="seconds"),
    }
    history = _history(tables, metrics_path, model.name, dc.history)
    perf = _performance_view(performance, test_metrics, current.rows)
    outputs = output_names(model.spec)
    report_path = _write_report(
        cfg, result, (model.reference, current), history, meta, perf, outputs
    )
    drift_run_id = _log_run(result, performance, current, report_path, meta, model.run_id)
    rows = metric_rows(
        result, model.name, model.version, batch, computed_at, drift_run_id,
        _kinds(model.reference, current),
    )  # fmt: skip
    rows += _performance_rows(performance, test_metrics, meta, computed_at, drift_run_id)
    describe(spark, f"drift_report: write drift_metrics of batch {batch}")
    tables.replace_batch(
        spark.createDataFrame(rows, DRIFT_METRICS_SCHEMA),
        metrics_path,
        batch,
        within={"model_name": model.name, "model_version": model.version},
    )
    replaced = _delete_earlier_runs(meta, drift_run_id)
    gate_metric = training.params.get(GATE_METRIC_PARAM)
    return _result(
        cfg, model, result, outputs, (performance, test_metrics, gate_metric), current.rows,
        replaced, report_path, drift_run_id,
    )  # fmt: skip


def _model(spark: SparkSession, cfg: Config, tables: DeltaTables) -> _Model:
    """The model version the config names (``drift.model_alias``, else ``score.*``), its
    feature spec and its reference profile."""
    from ml_engine.scoring import model_choice, resolve_model_version

    alias, keys = model_choice(cfg, "drift_report")
    mv = resolve_model_version(cfg, alias=alias, version=cfg.score.model_version, keys=keys)
    name, version, run_id = mv.name, int(mv.version), mv.run_id
    spec = download_json(run_id, SPEC_ARTIFACT)
    if spec is None:
        raise JobError(
            f"drift_report: the run {run_id} of {name} v{version} has no "
            f"{SPEC_ARTIFACT}; retrain the model with this engine"
        )
    reference, text = reference_profile(spark, cfg, tables, run_id, spec)
    return _Model(name, version, run_id, spec, reference, text)


def _batch_inputs(
    cfg: Config, tables: DeltaTables, model: _Model, batch: str
) -> tuple[DataFrame, DataFrame]:
    """The batch's ``features`` rows and its ``predictions`` by ``model``.

    Raises:
        JobError: no predictions table, or the batch has no predictions of the model version
            (saying whether the jobs before left the batch without any row).
    """
    from ml_engine.scoring import MODEL_VERSION

    features_path = cfg.storage.table_path("features")
    predictions_path = cfg.storage.table_path("predictions")
    if not tables.exists(predictions_path):
        raise JobError(f"drift_report: no predictions table at {predictions_path}; run score")
    predictions = tables.read_batch(predictions_path, batch).where(
        F.col(MODEL_VERSION) == model.version
    )
    features = tables.read_batch(features_path, batch)
    scored = not predictions.isEmpty()
    if not scored and features.isEmpty():  # as preflight says of a single job
        raise JobError(
            f"drift_report: batch '{batch}' has no rows in features ({features_path}) nor in "
            f"predictions: the jobs before drift_report left it without rows, so there is "
            f"nothing to compare with the reference. Check the batch's input (and the "
            f"quarantine), then rerun those jobs; or set batch_id to another batch"
        )
    if not scored:
        raise JobError(
            f"drift_report: batch '{batch}' has no predictions of {model.name} "
            f"v{model.version} in {predictions_path}; run score for this batch first"
        )
    return features, predictions


def _performance_view(
    performance: dict | None, test_metrics: dict[str, float], scored: int
) -> dict | None:
    """What the report shows of the metrics on arrived labels (None: no label arrived)."""
    if performance is None:
        return None
    return {
        "batch": {k: v for k, v in performance.items() if k != LABELLED_ROWS},
        "training_test": test_metrics,
        "rows": (int(performance[LABELLED_ROWS]), scored),
    }


def _kinds(reference: DatasetProfile, current: DatasetProfile) -> dict[str, str]:
    """Column -> kind (``numeric``/``categorical``) over both profiles, the batch's last."""
    kinds = {n: p.kind for n, p in reference.columns.items()}
    kinds.update({n: p.kind for n, p in current.columns.items()})
    return kinds


def _result(
    cfg: Config,
    model: _Model,
    result: DriftResult,
    outputs: Sequence[str],
    performance: tuple[dict | None, dict[str, float], str | None],
    scored: int,
    replaced: list[str],
    report_path: Path,
    drift_run_id: str,
) -> JobResult:
    """The job's result: its outputs, metrics, notes and exit code.

    Args:
        outputs: the model-output names among the compared columns.
        performance: ``(metrics on arrived labels or None, training test metrics, the
            metric the gate judged by)``.
        scored: the batch's scored rows.
        replaced: the ids of the earlier drift runs of the same version and batch, deleted.
        report_path: the HTML report written.
        drift_run_id: the MLflow run of this report.
    """
    dc, batch = cfg.drift, cfg.effective_batch_id()
    drifted, outputs_drifted = _drifted(result, outputs)
    notes = _notes(result, dc.drift_share, outputs, report_path)
    on_labels, test_metrics, gate_metric = performance
    if on_labels:
        notes.append(performance_note(on_labels, test_metrics, scored, gate_metric))
    if replaced:
        notes.append(
            f"replaces the earlier drift run(s) {', '.join(replaced)} of v{model.version} on "
            f"batch {batch}, now deleted in MLflow (restorable: mlflow runs restore --run-id ID)"
        )
    return JobResult(
        job="drift_report",
        outputs={
            "drift_metrics": cfg.storage.table_path("drift_metrics"),
            "report": str(report_path),
        },
        metrics={
            "batch_id": batch,
            "model_version": model.version,
            "dataset_drift": result.drifted,
            "drifted_features": drifted,
            "drifted_outputs": outputs_drifted,
            "drifted_share": round(result.drifted_share, 4),
            "mlflow_run_id": drift_run_id,
        },
        notes=notes,
        exit_code=EXIT_DRIFT if result.drifted and dc.fail_on_drift else EXIT_OK,
    )


def _write_report(
    cfg: Config,
    result: DriftResult,
    profiles: tuple[DatasetProfile, DatasetProfile],
    history: list[dict],
    meta: dict[str, Any],
    performance: dict | None,
    outputs: Sequence[str],
) -> Path:
    """The HTML report written under ``drift.report_dir`` (default ``<root>/reports``)."""
    dc = cfg.drift
    name, version, batch = meta["model"], meta["model_version"], meta["batch_id"]
    html = render_report(
        result,
        *profiles,
        history=history,
        title=f"Drift report: {name} v{version}, batch {batch}",
        meta=meta,
        history_batches=dc.history,
        performance=performance,
        outputs=outputs,
    )
    report_dir = Path(dc.report_dir or cfg.storage.path("reports"))
    report_dir.mkdir(parents=True, exist_ok=True)
    report_path = report_dir / f"drift-{_safe(name)}-v{version}-{_safe(batch)}.html"
    report_path.write_text(html, encoding="utf-8")
    return report_path


def _log_run(
    result: DriftResult,
    performance: dict | None,
    current: DatasetProfile,
    report_path: Path,
    meta: dict[str, Any],
    model_run_id: str,
) -> str:
    """The MLflow run of this report, tagged with the model version; returns its id."""
    import mlflow

    name, version, batch = meta["model"], meta["model_version"], meta["batch_id"]
    with mlflow.start_run(run_name=f"drift {name} v{version} batch {batch}") as run:
        mlflow.set_tags(
            {
                DRIFT_TAG: "true",
                "ml_engine.model_name": name,
                "ml_engine.model_version": str(version),
                "ml_engine.model_run_id": model_run_id,
                "ml_engine.batch_id": batch,
                "ml_engine.dataset_drift": str(result.drifted).lower(),
            }
        )
        mlflow.log_metrics(_run_metrics(result, performance))
        mlflow.log_artifact(str(report_path), "report")
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "current_profile.json"
            p.write_text(current.to_json())
            mlflow.log_artifact(str(p), "profiles")
        return run.info.run_id


def _delete_earlier_runs(meta: dict[str, Any], kept: str) -> list[str]:
    """Deletes (MLflow's soft delete, restorable) the earlier drift runs of the same model
    version and batch, which the rerun whose run is ``kept`` replaces, as it replaced their
    ``drift_metrics`` rows; returns their ids."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    experiment = client.get_run(kept).info.experiment_id
    earlier = client.search_runs(
        [experiment],
        filter_string=(
            f"tags.`{DRIFT_TAG}` = 'true' AND tags.`ml_engine.model_name` = "
            f"{sql_literal(meta['model'])} AND tags.`ml_engine.model_version` = "
            f"'{meta['model_version']}' AND tags.`ml_engine.batch_id` = "
            f"{sql_literal(meta['batch_id'])}"
        ),
        run_view_type=mlflow.entities.ViewType.ACTIVE_ONLY,
    )
    ids = [r.info.run_id for r in earlier if r.info.run_id != kept]
    for run_id in ids:
        client.delete_run(run_id)
    return ids


def _performance_rows(
    performance: dict | None,
    test_metrics: dict[str, float],
    meta: dict[str, Any],
    computed_at: datetime,
    drift_run_id: str,
) -> list[tuple]:
    """``drift_metrics`` rows of the metrics on arrived labels, beside the training test's."""
    name, version, batch = meta["model"], meta["model_version"], meta["batch_id"]
    return [
        (
            "*",
            None,
            f"performance.{metric}",
            float(value),
            test_metrics.get(metric),
            None,
            None,
            name,
            version,
            batch,
            computed_at,
            drift_run_id,
        )  # fmt: skip
        for metric, value in sorted((performance or {}).items())
    ]


def _drifted(result: DriftResult, outputs: Sequence[str]) -> tuple[list[str], list[str]]:
    """The drifting features and the drifting model ``outputs``, most severe first."""
    drifted = [f.feature for f in result.features if f.status == "drift"]
    return [n for n in drifted if n not in outputs], [n for n in drifted if n in outputs]


def _notes(
    result: DriftResult,
    drift_share: float,
    outputs: Sequence[str],
    report_path: Path,
) -> list[str]:
    """What the job prints of the comparison: the verdict (drifted features and model
    ``outputs`` named apart), the report, features not compared."""
    features, produced = _drifted(result, outputs)
    verdict = (
        f"dataset drift: {'YES' if result.drifted else 'no'} ({result.counts_text(outputs)}; "
        f"share {result.drifted_share:.2f}, threshold {drift_share:g}); drifted: "
        f"{', '.join(features) or 'none'}"
    )
    if produced:
        verdict += f"; model outputs drifted: {', '.join(produced)}"
    notes = [verdict, f"report: {report_path}"]
    unreferenced = [f.feature for f in result.features if f.status == NO_REFERENCE]
    if unreferenced:
        notes.append(
            f"not compared, no reference: {', '.join(unreferenced)}. The reference profile is "
            "made when the model is trained, of drift.features then (default: the schema's "
            "features); set drift.features before train to compare other columns"
        )
    arriving = []
    for f in result.features:
        share, change = f.value(NULL_SHARE), f.value(NULL_SHARE_CHANGE)
        if f.status == "drift" and share is not None and change is not None and change < 0:
            if share - change >= 0.5:  # mostly null in the training set, with values now
                arriving.append(f"{f.feature} ({share - change:.0%} null there, {share:.0%} now)")
    if arriving:
        notes.append(
            f"mostly null in the model's training set: {', '.join(arriving)}. A column that "
            "earlier batches lack (added to the schema later) drifts on its null share until "
            "a model trained on batches with its values is the champion: retrain"
        )
    return notes


def performance_note(
    performance: dict[str, float],
    test_metrics: dict[str, float],
    scored: int,
    gate_metric: str | None = None,
) -> str:
    """The line the job prints of the model on arrived labels: how many rows, and the metric
    the model's gate judged it by (``gate_metric``; else the task's usual one)."""
    labelled = int(performance[LABELLED_ROWS])
    usual = ("auc_roc", "f1", "rmse")
    main = next(k for k in (gate_metric, *usual) if k in performance)
    return (
        f"on arrived labels ({labelled:,} of {scored:,} scored rows): {main} "
        f"{performance[main]:.4f} (training test: {test_metrics.get(main, float('nan')):.4f})"
    )


def _run_metrics(result: DriftResult, performance: dict | None) -> dict[str, float]:
    out = {"drifted_share": float(result.drifted_share), "dataset_drift": float(result.drifted)}
    for r in result.metric_rows():
        v = r["value"]
        if isinstance(v, (int, float)) and v == v and abs(v) != float("inf"):
            out[f"{r['metric']}.{_safe(r['feature'])}"] = float(v)
    for k, v in (performance or {}).items():
        out[f"batch_{k}"] = float(v)
    return out


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(text))
