"""The ``detect_outliers`` job and the persistence of its fitted detectors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.param import Params
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import Config
from ml_engine.outliers.base import STAGE, OutlierFitError, _col, fit_detectors
from ml_engine.outliers.policies import (
    build_outlier_pipeline,
    detector_models,
    split_outliers,
)
from ml_engine.outliers.stats import OUTLIER_STATS_SCHEMA, outlier_statistics
from ml_engine.quality.quarantine import QUARANTINE_COLUMNS
from ml_engine.results import JobError, JobResult
from ml_engine.session import describe
from ml_engine.tables.base import DeltaTables

_FIT_RECORD = "fit_record"


def _read_text(spark: SparkSession, path: str) -> str | None:
    """The first line of a text directory written by Spark, None when it does not exist."""
    # Ask the file system first: a read of a missing path makes Spark log a stack trace.
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    if not hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).exists(hpath):
        return None
    row = spark.read.text(path).first()
    return row[0] if row is not None else None


def load_outlier_model(spark: SparkSession, path: str) -> PipelineModel | None:
    """The detector pipeline saved at ``path``, or None when nothing is saved there.

    Raises:
        ValueError: what is saved there is not a detector pipeline.
    """
    if _read_text(spark, f"{path.rstrip('/')}/metadata") is None:
        return None
    model = PipelineModel.load(path)
    detector_models(model)
    return model


def _fit_params(pipeline: Pipeline, batch_id: str) -> dict[str, Any]:
    """What a fit depends on besides the data: the batch and the detectors' params."""
    params = [
        {"class": type(s).__name__, **{p.name: v for p, v in s.extractParamMap().items()}}
        for s in pipeline.getStages()
    ]
    return json.loads(json.dumps({"batch_id": batch_id, "stages": params}))


def _fingerprint(pipeline: Pipeline) -> list[Column]:
    """Aggregates that fingerprint the detectors' input columns: the row count and the sum of
    a 64-bit hash of each row's checked values."""
    cols = sorted({c for s in pipeline.getStages() for c in s.getInputCols()})
    return [
        F.count(F.lit(1)),
        F.sum(F.xxhash64(*[_col(c) for c in cols]).cast("decimal(20,0)")),
    ]


def _fit_record(params: dict[str, Any], fingerprint: Sequence[Any]) -> dict[str, Any]:
    """What a fit depends on, as JSON values: ``params`` (:func:`_fit_params`) and the values
    of :func:`_fingerprint` over the data."""
    rows, hashed = fingerprint
    return {**params, "rows": int(rows), "hash": str(hashed)}


def outlier_model_path(cfg: Config) -> str:
    """Where the fitted detector is saved: ``outliers.model_path``, by default
    ``<storage root>/models/outliers``."""
    return cfg.outliers.model_path or cfg.storage.path("models", "outliers")


def run_detect_outliers(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """Fits (or reuses) the outlier detector on a silver batch -> the saved detector,
    ``outlier_stats`` and, with policy ``drop``, ``quarantine``. Silver is not rewritten.

    Steps, for batch ``cfg.effective_batch_id()``:

    1. the detector (see :func:`_fitted_model` for ``outliers.refit``): fitted on the batch's
       silver rows (reading only the checked columns) and saved as a ``PipelineModel``
       (overwrite) at :func:`outlier_model_path` with a fit record (detector params, batch,
       row count and a hash of the checked values), or the saved one reused; a rerun whose
       fit record matches reuses the saved model instead of fitting again;
    2. one ``outlier_stats`` row per detector and column (fences, statistics, rows scored and
       flagged; replaces the batch's rows), from one aggregation over the checked columns;
    3. ``outliers.policy`` ``drop``: the batch's outlier rows to ``quarantine`` (stage
       ``outliers``; the reason names method, column, value and fence), replacing the
       stage's rows of the batch; with ``flag``/``cap`` the stage's rows of an earlier
       ``drop`` run are cleared.

    The detector is applied where rows are written anyway: ``build_features`` adds every
    row's ``is_outlier``, ``outlier_score`` and ``outlier_reasons`` to ``features`` and caps
    (``cap``) or leaves out (``drop``) in the same select; training and scoring pipelines
    carry it as a stage with ``train.outlier_features``.

    Spark jobs: one pass for every detector's first step (counts, moments) and the
    fingerprint together (:func:`~ml_engine.outliers.base.fit_detectors`), a fixed number
    per detector after it (quantiles, a correlation matrix), then the statistics and writes;
    none of them grows with the number of columns.

    With ``outliers.detectors: []`` (data without numeric columns) nothing is fitted or
    written.

    Raises:
        JobError: silver is missing or lacks a detector's column, the batch has no values to
            fit on, or ``refit: never`` and no model is saved at the model path.
    """
    oc = cfg.outliers
    batch = cfg.effective_batch_id()
    silver_path, quarantine_path, stats_path = (
        cfg.storage.table_path(n) for n in ("silver", "quarantine", "outlier_stats")
    )
    model_path = outlier_model_path(cfg)
    if not tables.exists(silver_path):
        raise JobError(
            f"detect_outliers: no silver table at {silver_path}; run the clean job for batch "
            f"'{batch}' first"
        )
    if not oc.detectors:
        tables.require_batch(silver_path, batch)
        return JobResult(
            job="detect_outliers",
            metrics={"batch_id": batch, "detectors": 0},
            notes=[
                "outliers.detectors is empty: no detector fitted, no row checked; build_features "
                "writes the outlier columns null"
            ],
        )
    describe(spark, f"detect_outliers: read silver batch {batch}")
    data = tables.read_batch(silver_path, batch)
    model, how = _fitted_model(spark, cfg, data, batch, model_path, silver_path)

    describe(spark, f"detect_outliers: outlier statistics of batch {batch}")
    stats, n_rows, n_outliers = outlier_statistics(data, model, batch, oc.policy)

    outputs = {"outlier_stats": stats_path, "outlier_model": model_path}
    quarantine_out = None
    if oc.policy == "drop":
        key = cfg.table_schema.record_id or cfg.table_schema.key
        _, quarantine_out = split_outliers(
            data, model, record_key=key if key in data.columns else None
        )
    elif tables.exists(quarantine_path):
        # Clears this stage's rows of an earlier run with policy drop.
        quarantine_out = tables.read_batches(quarantine_path, []).select(*QUARANTINE_COLUMNS)
    if quarantine_out is not None:
        describe(spark, f"detect_outliers: write quarantine rows of batch {batch}")
        tables.replace_batch(quarantine_out, quarantine_path, batch, within={"stage": STAGE})
        outputs["quarantine"] = quarantine_path
    describe(spark, f"detect_outliers: write outlier_stats of batch {batch}")
    tables.replace_batch(spark.createDataFrame(stats, OUTLIER_STATS_SCHEMA), stats_path, batch)
    return JobResult(
        job="detect_outliers",
        outputs=outputs,
        metrics={
            "batch_id": batch,
            "policy": oc.policy,
            "model": how,
            "detectors": len(detector_models(model)),
            "rows": n_rows,
            "outliers": n_outliers,
            "rows_out": n_rows - n_outliers if oc.policy == "drop" else n_rows,
        },
    )


def check_detector_columns(
    data: DataFrame, models_or_stages: Sequence[Params], silver_path: str, where: Sequence[str]
) -> None:
    """JobError unless every stage's input columns are numeric columns of ``data``."""
    types = {f.name: f.dataType for f in data.schema.fields}
    for stage, key in zip(models_or_stages, where, strict=True):
        for c in stage.getInputCols():
            if c not in types:
                raise JobError(f"{key}: column '{c}' is not in the silver table {silver_path}")
            if not isinstance(types[c], T.NumericType):
                raise JobError(
                    f"{key}: column '{c}' of the silver table {silver_path} has type "
                    f"{types[c].simpleString()}; outlier detectors need numeric columns"
                )


def _fitted_model(
    spark: SparkSession,
    cfg: Config,
    data: DataFrame,
    batch: str,
    model_path: str,
    silver_path: str,
) -> tuple[PipelineModel, str]:
    """The detector pipeline to apply and how it was obtained, in words for the job's output.

    ``outliers.refit``: ``auto`` reuses the saved detector when its detectors are the
    configured ones (fitted on an earlier batch, normally the reference one) and fits on this
    batch otherwise; ``always`` fits on this batch (unless the same detectors were already
    fitted on exactly these rows); ``never`` applies the saved detector or fails.
    """
    oc = cfg.outliers
    record_path = f"{model_path.rstrip('/')}/{_FIT_RECORD}"
    saved = _read_text(spark, record_path)
    saved = None if saved is None else json.loads(saved)
    try:
        pipeline = build_outlier_pipeline(oc.detectors, cfg.table_schema.numeric_features)
    except ValueError as exc:
        raise JobError(str(exc)) from None
    params = _fit_params(pipeline, batch)
    same_detectors = saved is not None and saved.get("stages") == params["stages"]
    if oc.refit == "never" or (oc.refit == "auto" and same_detectors):
        describe(spark, f"detect_outliers: load outlier model {model_path}")
        try:
            model = load_outlier_model(spark, model_path)
        except ValueError as exc:
            raise JobError(f"outliers.model_path: {model_path}: {exc}") from None
        if model is not None:
            check_detector_columns(
                data,
                detector_models(model),
                silver_path,
                [f"the outlier model saved at {model_path}"] * len(model.stages),
            )
            fitted_on = (saved or {}).get("batch_id")
            return model, f"reused, fitted on batch {fitted_on}" if fitted_on else "reused"
        if oc.refit == "never":
            raise JobError(
                f"outliers.refit is never but no outlier model is saved at {model_path}; "
                f"run detect_outliers on the reference batch first (outliers.refit: auto or "
                f"always), or set outliers.model_path"
            )
    check_detector_columns(
        data,
        pipeline.getStages(),
        silver_path,
        [f"outliers.detectors.{i}.columns" for i in range(len(oc.detectors))],
    )
    record = None
    if saved is not None and {k: saved.get(k) for k in params} == params:
        # The same detectors were fitted on this batch before: reuse them if the data is
        # unchanged. (Only then is the fingerprint worth a pass over the data.)
        describe(spark, f"detect_outliers: fingerprint of batch {batch}")
        record = _fit_record(params, data.agg(*_fingerprint(pipeline)).first())
        if saved == record:
            model = load_outlier_model(spark, model_path)
            if model is not None:
                return model, f"reused, fitted on batch {batch}"
    describe(spark, f"detect_outliers: fit {len(oc.detectors)} detector(s) on batch {batch}")
    # The detectors' first steps and the fingerprint (unless taken above) in one pass.
    fingerprint = _fingerprint(pipeline) if record is None else []
    try:
        models, values = fit_detectors(pipeline.getStages(), data, fingerprint)
    except OutlierFitError as exc:
        raise JobError(
            f"detect_outliers: cannot fit on silver batch '{batch}' ({silver_path}): {exc}"
        ) from None
    model = PipelineModel(models)
    record = record or _fit_record(params, values)
    describe(spark, f"detect_outliers: save outlier model to {model_path}")
    model.write().overwrite().save(model_path)
    spark.createDataFrame([(json.dumps(record),)], "value string").coalesce(1).write.mode(
        "overwrite"
    ).text(record_path)
    changed = " (the saved detector had other settings)" if saved and not same_detectors else ""
    return model, f"fitted on batch {batch}{changed}"
