"""Batch scoring with a registered model: ``features`` (one batch) -> ``predictions``.

The model is the MLflow registered model named by ``mlflow.registered_model``, by alias
(``score.model_alias``, default ``champion``) or version (``score.model_version``). It is the
whole fitted pipeline of the ``train`` job (imputation, category indexing, encoding, scaling,
the outlier detector when it was trained with one, the estimator), so nothing is refitted on
the batch: the batch's feature rows, built by the same ingest -> clean -> detect_outliers ->
build_features chain as the training data, go straight through it.

``predictions`` columns: the entity key, the record id (when the schema has one besides the
key), the event time, ``prediction`` (the class index for classifiers, the value for
regression), ``predicted_label`` (the predicted class as text; null for regression),
``probability`` (array of double in class-index order; null for regression), ``model_name``,
``model_version``, ``scored_at``, ``batch_id``. Partitioned by ``batch_id``; one batch scored
by one model version is replaced on a rerun, other versions' rows stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import Config
from ml_engine.quality.clean import dedup_key
from ml_engine.results import JobError, JobResult
from ml_engine.session import describe
from ml_engine.tables.base import BATCH_COLUMN, DeltaTables
from ml_engine.training import PREDICTED_LABEL_COL as PREDICTED_LABEL
from ml_engine.training import PREDICTION_COL as PREDICTION
from ml_engine.training import PROBABILITY_COL as PROBABILITY

MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
SCORED_AT = "scored_at"


@dataclass(frozen=True)
class RegisteredModel:
    """A model version of the registry, loaded for Spark.

    Attributes:
        name: registered model name.
        version: version number.
        run_id: the MLflow run that trained it.
        model: the fitted ``PipelineModel``.
        inputs: the input column names of its signature.
        source: how it was asked for (``champion`` alias, version 3).
    """

    name: str
    version: int
    run_id: str
    model: object
    inputs: list[str]
    source: str


def resolve_model_version(
    cfg: Config,
    alias: str | None = None,
    version: int | None = None,
    keys: tuple[str, str] = ("score.model_alias", "score.model_version"),
):
    """The registry's ``ModelVersion`` for the config's model by version or alias. ``keys``:
    where the alias and the version were given, as the errors name them.

    Raises:
        JobError: the model, the version or the alias does not exist (one line naming what
            exists instead).
    """
    name = cfg.mlflow.registered_model
    no_model = JobError(
        f"no registered model '{name}' in {cfg_uri(cfg)} (mlflow.registered_model); run the "
        f"train job first"
    )
    store = cfg.sqlite_store()
    if store is not None and not store.exists():
        raise no_model  # no store file yet: nothing registered, and none is made to ask

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ml_engine.tracking import use_store

    uri = use_store(cfg)  # the store the error messages name, and the model loads from
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        registered = client.get_registered_model(name)
    except MlflowException:
        raise no_model from None
    if version is not None:
        try:
            return client.get_model_version(name, str(version))
        except MlflowException:
            versions = sorted(
                int(v.version) for v in client.search_model_versions(f"name='{name}'")
            )
            raise JobError(
                f"model '{name}' has no version {version} ({keys[1]}); versions: "
                f"{', '.join(map(str, versions)) or 'none'}"
            ) from None
    alias = alias or "champion"
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        known = ", ".join(f"{a} -> v{v}" for a, v in sorted(registered.aliases.items())) or "none"
        todo = {
            "champion": "Train a version that passes the gate",
            "challenger": "No version holds it now: a new version is challenger until the "
            "gate promotes it",
        }.get(alias, f"Set {keys[0]} to one of them")
        raise JobError(
            f"model '{name}' has no alias '{alias}' ({keys[0]}); aliases: {known}. {todo}. Or "
            f"give a version with {keys[1]}"
        ) from None


def make_champion(cfg: Config, mv) -> str:
    """Moves the ``champion`` alias to model version ``mv`` (rolling back to an earlier
    version, or promoting a challenger by hand) and returns the line saying what moved.

    A ``challenger`` alias on ``mv`` is removed, as the gate does when it promotes. The
    version gets the tag ``ml_engine.promoted`` (when, and which version it replaced), since
    the registry keeps no history of its aliases.
    """
    from mlflow import MlflowClient

    from ml_engine.tracking import use_store

    uri = use_store(cfg)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name, version = mv.name, str(mv.version)
    aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    before = aliases.get("champion")
    if before == version:
        return f"{name} version {version} is already champion; nothing moved"
    client.set_registered_model_alias(name, "champion", version)
    if aliases.get("challenger") == version:
        client.delete_registered_model_alias(name, "challenger")
    replaced = f"version {before}" if before else "no champion"
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    client.set_model_version_tag(
        name, version, "ml_engine.promoted", f"ml-engine model --promote at {when}, replacing "
        f"{replaced}"
    )  # fmt: skip
    return (
        f"{name}: champion moved from {replaced} to version {version} (run {mv.run_id}); "
        "score and drift_report use it from their next run"
    )


def model_choice(cfg: Config, job: str) -> tuple[str | None, tuple[str, str]]:
    """The alias ``job`` (``score`` or ``drift_report``) uses, and the config keys of the alias
    and the version, as :func:`resolve_model_version` names them."""
    if job == "drift_report" and cfg.drift.model_alias:
        return cfg.drift.model_alias, ("drift.model_alias", "score.model_version")
    return cfg.score.model_alias, ("score.model_alias", "score.model_version")


def cfg_uri(cfg: Config) -> str:
    """The tracking URI as safe to print (no password)."""
    from ml_engine.preflight import _redacted

    return _redacted(cfg.tracking_uri())


def load_registered_model(
    cfg: Config, alias: str | None = None, version: int | None = None
) -> RegisteredModel:
    """Loads the config's registered model (by version, else alias) as a Spark model.

    Raises:
        JobError: the model, version or alias does not exist.
    """
    import mlflow
    import mlflow.spark

    mv = resolve_model_version(cfg, alias=alias, version=version)
    uri = f"models:/{mv.name}/{mv.version}"
    inputs = signature_inputs(uri)
    model = mlflow.spark.load_model(uri)
    source = f"version {mv.version}" if version is not None else f"alias {alias or 'champion'}"
    return RegisteredModel(mv.name, int(mv.version), mv.run_id, model, inputs, source)


def signature_inputs(uri: str) -> list[str]:
    """The input columns of the logged model at ``uri`` (none when it has no signature)."""
    import mlflow

    info = mlflow.models.get_model_info(uri)
    return [c.name for c in info.signature.inputs.inputs] if info.signature else []


def check_signature(inputs: list[str], df: DataFrame, what: str) -> None:
    """Refuses rows that lack a column the model's signature needs.

    Raises:
        JobError: naming the missing columns.
    """
    missing = [c for c in inputs if c not in df.columns]
    if missing:
        raise JobError(
            f"{what} lacks column(s) {missing} that the model's signature needs; if the schema "
            f"dropped them on purpose, retrain on today's columns (ml-engine run "
            f"build_training_set train), else rebuild the features with the config the model "
            f"was trained with"
        )


def prediction_rows(
    scored: DataFrame,
    id_columns: list[str],
    model_name: str,
    model_version: int,
    scored_at: datetime,
) -> DataFrame:
    """The ``predictions`` columns of a transformed batch (see the module docstring)."""
    fields = {f.name: f.dataType for f in scored.schema.fields}
    if PROBABILITY in fields:
        probability = vector_to_array(F.col(PROBABILITY)).cast("array<double>")
    else:
        probability = F.lit(None).cast("array<double>")
    label = (
        F.col(PREDICTED_LABEL).cast("string")
        if PREDICTED_LABEL in fields and PROBABILITY in fields
        else F.lit(None).cast("string")
    )
    return scored.select(
        *[F.col(c) for c in id_columns],
        F.col(PREDICTION).cast("double").alias(PREDICTION),
        label.alias(PREDICTED_LABEL),
        probability.alias(PROBABILITY),
        F.lit(model_name).alias(MODEL_NAME),
        F.lit(model_version).cast("int").alias(MODEL_VERSION),
        F.lit(scored_at).cast(T.TimestampType()).alias(SCORED_AT),
        F.col(BATCH_COLUMN),
    )


def batch_accounting(
    tables: DeltaTables, cfg: Config, batch: str, scored: DataFrame
) -> dict[str, int]:
    """Where every row of the batch went: scored, quarantined upstream, duplicates removed,
    taken over by later batches.

    Rows of the batch = bronze rows + ingest quarantine rows; of those, clean and
    detect_outliers quarantine some, clean removes duplicates, later batches may take over
    records (:func:`records_taken_over`, counted only when the rest do not add up), and the
    rest are scored (``scored``: the batch's prediction rows of this model version). Small
    aggregations over the batch's partitions only.
    """
    counts = {"rows_of_batch": 0, "quarantined_upstream": 0, "duplicates_removed": 0}
    bronze = cfg.storage.table_path("bronze")
    quarantine = cfg.storage.table_path("quarantine")
    dq = cfg.storage.table_path("dq_metrics")
    if tables.exists(bronze):
        counts["rows_of_batch"] += tables.batch_rows(bronze, batch).count()
    if tables.exists(quarantine):
        by_stage = {
            r["stage"]: int(r["n"])
            for r in tables.batch_rows(quarantine, batch)
            .groupBy("stage")
            .agg(F.count(F.lit(1)).alias("n"))
            .collect()
        }
        counts["rows_of_batch"] += by_stage.get("ingest", 0)
        counts["quarantined_upstream"] = sum(by_stage.values())
    counts["duplicates_removed"] = _latest_clean_metric(tables, dq, batch, "duplicates_removed")
    counts["scored"] = scored.count()
    rest = (
        counts["rows_of_batch"]
        - counts["scored"]
        - counts["quarantined_upstream"]
        - counts["duplicates_removed"]
    )
    counts["taken_over_by_later_batches"] = (
        records_taken_over(tables, cfg, batch, scored) if rest else 0
    )
    counts["unaccounted"] = rest - counts["taken_over_by_later_batches"]
    return counts


def _latest_clean_metric(tables: DeltaTables, dq: str, batch: str, metric: str) -> int:
    """A table-level count the batch's latest clean run wrote to ``dq_metrics`` (0 if none)."""
    if not tables.exists(dq):
        return 0
    latest = (
        tables.batch_rows(dq, batch)
        .where((F.col("metric") == metric) & F.col("column").isNull())
        .orderBy(F.desc("computed_at"))
        .select("value")
        .limit(1)
        .collect()
    )
    return int(latest[0][0]) if latest else 0


def records_taken_over(tables: DeltaTables, cfg: Config, batch: str, scored: DataFrame) -> int:
    """Records of the batch that another batch of silver holds now (with ``clean.dedup:
    latest_by_key`` a later copy takes a record out of its earlier batch), less those the
    batch's clean already counted as duplicates for a copy elsewhere: the bronze records
    (by record id, else key) neither scored with the batch nor quarantined. 0 without
    ``latest_by_key``."""
    key = dedup_key(cfg.table_schema) if cfg.clean.dedup == "latest_by_key" else None
    paths = {n: cfg.storage.table_path(n) for n in ("bronze", "silver", "quarantine", "dq_metrics")}
    if key is None or key not in scored.columns or not tables.exists(paths["silver"]):
        return 0

    def keys(df: DataFrame, column: str = key) -> DataFrame:
        return df.select(F.col(column).cast("string").alias("k"))

    others, _ = tables.read_complete(paths["silver"])
    elsewhere = keys(others.where(F.col(BATCH_COLUMN) != batch))
    gone = keys(tables.batch_rows(paths["bronze"], batch)).join(keys(scored), "k", "left_anti")
    if tables.exists(paths["quarantine"]):
        rejected = keys(tables.batch_rows(paths["quarantine"], batch), "record_key")
        gone = gone.join(rejected, "k", "left_anti")
    moved = gone.distinct().join(elsewhere, "k", "left_semi").count()
    return moved - _latest_clean_metric(
        tables, paths["dq_metrics"], batch, "duplicates_in_other_batches"
    )


def accounting_notes(batch: str, model: str, source: str, accounting: dict[str, int]) -> list[str]:
    """What score prints about where the batch's rows went (:func:`batch_accounting`), and a
    warning when some are unaccounted for."""
    taken = accounting["taken_over_by_later_batches"]
    notes = [
        f"scored batch '{batch}' with {model} ({source}): {accounting['scored']} rows scored + "
        f"{accounting['quarantined_upstream']} quarantined upstream + "
        f"{accounting['duplicates_removed']} duplicates removed"
        + (f" + {taken} taken over by later batches" if taken else "")
        + f" = {accounting['rows_of_batch'] - accounting['unaccounted']} of "
        f"{accounting['rows_of_batch']} rows of the batch"
    ]
    if accounting["unaccounted"]:
        notes.append(
            f"warning: {accounting['unaccounted']} row(s) of batch '{batch}' are unaccounted for "
            "(negative: scored rows that bronze does not hold): run clean, detect_outliers and "
            "build_features for the batch after its last ingest, then score it again"
        )
    return notes


def id_columns(cfg: Config, available: list[str]) -> list[str]:
    """Key, record id and event time columns of the schema that ``available`` has."""
    schema = cfg.table_schema
    wanted = [schema.key, schema.record_id, schema.event_time]
    return [c for c in dict.fromkeys(c for c in wanted if c) if c in available]


def run_score(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """The score job: the batch's ``features`` rows -> ``predictions`` with the registered model.

    Raises:
        JobError: no features table or batch, a missing model / version / alias, or feature
            rows without a column the model's signature needs.
    """
    from ml_engine.tracking import connect

    batch = cfg.effective_batch_id()
    features_path = cfg.storage.table_path("features")
    out_path = cfg.storage.table_path("predictions")
    if not tables.exists(features_path):
        raise JobError(f"score: no features table at {features_path}; run build_features first")
    features = tables.read_batch(features_path, batch)
    connect(cfg)
    sc = cfg.score
    registered = load_registered_model(cfg, alias=sc.model_alias, version=sc.model_version)
    check_signature(registered.inputs, features, f"score: the features of batch '{batch}'")
    describe(spark, f"score: batch {batch} with {registered.name} v{registered.version}")
    scored = registered.model.transform(features)
    rows = prediction_rows(
        scored,
        id_columns(cfg, features.columns),
        registered.name,
        registered.version,
        datetime.now(timezone.utc),
    )
    version = tables.replace_batch(
        rows, out_path, batch, within={MODEL_VERSION: registered.version}
    )
    describe(spark, f"score: count batch {batch}")
    scored_rows = tables.batch_rows(out_path, batch, version=version).where(
        F.col(MODEL_VERSION) == registered.version
    )
    accounting = batch_accounting(tables, cfg, batch, scored_rows)
    notes = accounting_notes(
        batch, f"{registered.name} v{registered.version}", registered.source, accounting
    )
    return JobResult(
        job="score",
        outputs={"predictions": out_path},
        metrics={
            "batch_id": batch,
            "model": registered.name,
            "model_version": registered.version,
            "predictions_version": version,
            **accounting,
        },
        notes=notes,
    )
