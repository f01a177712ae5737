"""Train/test split, class weights and the fit of a training pipeline with tuning.

:func:`fit` fits the feature stages ONCE on the training split, caches only what the estimator
reads (feature vector, label, fold, weight) and tunes the estimator alone on that cache, so the
feature stages' Spark jobs do not repeat per fold and grid point, and no job runs per feature
column. The result is one ``PipelineModel`` (feature stages, best estimator model, label
decoding) that scores raw training-set-shaped rows.

Example::

    train, test, split_info = split(training_set, cfg.train.split, id_col="transaction_id",
                                    time_col="label_time")
    result = fit(train, spec, cfg.train, id_col="transaction_id")
    metrics = evaluate(result.model.transform(test), result.spec)
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.ml import Estimator, Pipeline, PipelineModel, Transformer
from pyspark.ml.evaluation import Evaluator
from pyspark.ml.feature import StringIndexerModel
from pyspark.ml.param import Param
from pyspark.ml.tuning import CrossValidator, TrainValidationSplit
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import METRIC_HIGHER_IS_BETTER, SplitConfig, TrainConfig
from ml_engine.outliers import detector_models
from ml_engine.session import describe
from ml_engine.tables.base import quote_name
from ml_engine.training import TrainingError
from ml_engine.training.evaluation import estimator_model, evaluate, feature_names
from ml_engine.training.pipeline import (
    FEATURES_COL,
    FOLD_COL,
    LABEL_COL,
    PREDICTION_COL,
    WEIGHT_COL,
    FeatureSpec,
    estimator,
    estimator_name,
    feature_stages,
    label_decoder,
    param_grid,
    tuning_metric,
)
from ml_engine.training_set import FEATURES_VERSION, LABELS_VERSION

__all__ = ["FitResult", "class_weights", "fit", "split"]

# 2**53: a 53-bit integer divided by it is a double in [0, 1) without rounding.
_TWO_53 = float(2**53)


def _q(name: str) -> Column:
    return F.col(quote_name(name))


def _hash_columns(df: DataFrame, id_col: str | None) -> list[str]:
    """The record id, else every column but the input versions (a rebuilt training set of the
    same rows hashes the same)."""
    if id_col:
        return [id_col]
    return [c for c in df.columns if c not in (FEATURES_VERSION, LABELS_VERSION)]


def _unit_hash(columns: Sequence[str], *salt: Any) -> Column:
    """A number in ``[0, 1)`` from a 64-bit hash of ``salt`` and the columns' values.

    The value depends only on the row's values, never on partitioning or order.
    """
    h = F.xxhash64(*[F.lit(s) for s in salt], *[_q(c) for c in columns])
    return F.shiftrightunsigned(h, 11).cast("double") / F.lit(_TWO_53)


def split(
    df: DataFrame, cfg: SplitConfig, id_col: str | None, time_col: str
) -> tuple[DataFrame, DataFrame, dict[str, Any]]:
    """Splits rows into train and held-out test rows (``train.split``).

    ``random``: a row is a test row when ``xxhash64(seed, record id)`` (without an id, of all
    columns but ``features_version``/``labels_version``), mapped to ``[0, 1)``, is below
    ``test_fraction``; the same rows go to test on every run whatever the partitioning. No
    Spark job.
    ``time``: rows with ``time_col >= boundary`` are the test rows; the boundary is
    ``split.boundary`` (read in the session time zone) or, when unset, the ``1 -
    test_fraction`` quantile of ``time_col`` (``percentile_approx``, relative rank error
    1e-4; exact on small data: the smallest time with at least that share of rows at or
    before it), rounded down to the second. One Spark job without a configured boundary.
    Rows with a null time are training rows.

    Args:
        df: the training set.
        cfg: the ``train.split`` config section.
        id_col: the record id column (None: hash all columns).
        time_col: the label time column (method ``time``).

    Returns:
        ``(train, test, info)``; ``info`` has ``method``, ``test_fraction`` and either ``seed``
        and ``hashed_columns`` or ``boundary`` (``split.boundary`` as configured, or the
        computed one as an ISO timestamp in UTC) and ``boundary_source`` (``config`` or
        ``quantile``).

    Raises:
        TrainingError: a named column is missing, or the time split finds no label time.
    """
    needed = [("id column", id_col)] + ([("time column", time_col)] if cfg.method == "time" else [])
    for key, col in needed:
        if col is not None and col not in df.columns:
            raise TrainingError(
                f"train.split: {key} '{col}' is not in the training set ({df.columns})"
            )
    if cfg.method == "random":
        cols = _hash_columns(df, id_col)
        is_test = _unit_hash(cols, "split", cfg.seed) < F.lit(cfg.test_fraction)
        info = {
            "method": "random",
            "test_fraction": cfg.test_fraction,
            "seed": cfg.seed,
            "hashed_columns": cols,
        }
    else:
        t = _q(time_col).cast("timestamp")
        if cfg.boundary is not None:
            boundary = F.lit(cfg.boundary).cast("timestamp")
            info = {
                "method": "time",
                "test_fraction": cfg.test_fraction,
                "boundary": cfg.boundary,
                "boundary_source": "config",
            }
        else:
            describe(df.sparkSession, f"train: time split boundary of {time_col}")
            q = df.agg(
                F.percentile_approx(F.unix_micros(t), 1.0 - cfg.test_fraction, 10_000).alias("q")
            ).first()["q"]
            if q is None:
                raise TrainingError(
                    f"train.split: method time, but '{time_col}' has no values to split on"
                )
            seconds = q // 1_000_000
            boundary = F.timestamp_seconds(F.lit(seconds))
            info = {
                "method": "time",
                "test_fraction": cfg.test_fraction,
                "boundary": datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(),
                "boundary_source": "quantile",
            }
        is_test = F.coalesce(t >= boundary, F.lit(False))
    return df.where(~is_test), df.where(is_test), info


def class_weights(df: DataFrame, label_col: str) -> dict[Any, float]:
    """Balanced class weights ``n / (k * n_class)`` of the rows of ``df``.

    One Spark job: a ``groupBy`` of the label (``k`` rows reach the driver). Null labels do
    not count.

    Returns:
        Label value -> weight.
    """
    rows = df.where(_q(label_col).isNotNull()).groupBy(_q(label_col)).count().collect()
    n, k = sum(r["count"] for r in rows), len(rows)
    return {r[0]: n / (k * r["count"]) for r in rows}


# --------------------------------------------------------------------------- fit


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` produced.

    Attributes:
        model: feature stages + best estimator model + label decoding; ``transform`` of raw
            training-set-shaped rows (with or without the label) adds ``prediction``,
            ``probability``/``rawPrediction`` (classifiers) and ``predicted_label``.
        spec: the feature spec with ``classes`` set (classification).
        estimator: the estimator name (``train.estimator`` with ``auto`` resolved).
        metric: the tuning metric (``train.metric`` or its default).
        tuning: ``cross_validation``, ``train_validation_split`` or ``none``.
        best_params: the estimator's configured parameters (``train.params`` and the chosen
            grid point), as JSON values.
        grid: per grid point ``{"params", "metric", "fold_metrics"}`` (the average validation
            metric and the value of each fold; one value for a train/validation split);
            empty without tuning.
        feature_names: names of the feature vector's slots
            (:func:`~ml_engine.training.evaluation.feature_names`).
        class_weights: class label -> weight with ``class_weight: balanced``, else None.
        timings: seconds spent in ``feature_fit``, ``tuning`` (including the final fit) and
            ``total``.
        partitions: the partitions the training rows were laid out in.
    """

    model: PipelineModel
    spec: FeatureSpec
    estimator: str
    metric: str
    tuning: str
    best_params: dict[str, Any]
    grid: list[dict[str, Any]]
    feature_names: list[str]
    class_weights: dict[str, float] | None
    timings: dict[str, float]
    partitions: int

    @property
    def estimator_model(self) -> Transformer:
        """The fitted estimator stage of :attr:`model`."""
        return estimator_model(self.model)


def _plain(value: Any) -> Any:
    """A JSON value (numpy scalars and tuples converted)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


class _GridPointEvaluator(Evaluator):
    """Computes the tuning metric and records it per grid point and fold.

    Spark's ``CrossValidator`` keeps per-fold metrics to itself; each grid point's estimator
    writes its predictions to its own column (``tags``: column -> grid index), so this
    evaluator knows which grid point it is scoring. Folds run one after the other, every grid
    point once per fold, so the n-th value recorded for a grid point belongs to fold n.
    """

    def __init__(self, spec: FeatureSpec, metric: str, tags: Mapping[str, int]):
        super().__init__()
        self.spec = spec
        self.metric = metric
        self.tags = dict(tags)
        self.values: dict[int, list[float]] = defaultdict(list)
        self._lock = threading.Lock()

    def _evaluate(self, dataset: DataFrame) -> float:
        tag = next(c for c in dataset.columns if c in self.tags)
        renamed = dataset.withColumnRenamed(tag, PREDICTION_COL)
        value = evaluate(renamed, self.spec, [self.metric])[self.metric]
        with self._lock:
            self.values[self.tags[tag]].append(value)
        return value

    def isLargerBetter(self) -> bool:
        return METRIC_HIGHER_IS_BETTER[self.metric]


def _check_outlier_columns(df: DataFrame, outlier_model: PipelineModel) -> None:
    try:
        models = detector_models(outlier_model)
    except ValueError as exc:
        raise TrainingError(f"train.outlier_features: {exc}") from None
    types = {f.name: f.dataType for f in df.schema.fields}
    for m in models:
        for c in m.getInputCols():
            if c not in types or not isinstance(types[c], T.NumericType):
                raise TrainingError(
                    f"train.outlier_features: the outlier detector checks column '{c}', which "
                    f"the training set "
                    + ("lacks" if c not in types else f"has as {types[c].simpleString()}")
                    + "; add it as a numeric feature column or set train.outlier_features: false"
                )


def _label_indexer(feature_model: PipelineModel) -> StringIndexerModel:
    for stage in feature_model.stages:
        if isinstance(stage, StringIndexerModel) and stage.getOutputCol() == LABEL_COL:
            return stage
    raise TrainingError("the feature pipeline has no label indexer")


def _label_classes(feature_model: PipelineModel) -> list[str]:
    return list(_label_indexer(feature_model).labelsArray[0])


def _with_positive_class(feature_model: PipelineModel, label: str, positive: str) -> PipelineModel:
    """``feature_model`` with its label indexer giving ``positive`` class index 1.

    Raises:
        TrainingError: the label has not two classes, or ``positive`` is not one of them.
    """
    indexer = _label_indexer(feature_model)
    classes = list(indexer.labelsArray[0])
    if positive not in classes or len(classes) != 2:
        problem = (
            "is not one of them" if positive not in classes else "needs a label of two classes"
        )
        yaml_bool = positive in ("true", "false") and not {"true", "false"} & set(classes)
        quote = " (YAML reads an unquoted yes, no, on or off as true or false: quote it)"
        raise TrainingError(
            f"train.positive_class '{positive}' {problem}: label '{label}' has the classes "
            f"{classes} in the training split; set it to one of two classes, or remove it"
            + (quote if yaml_bool else "")
        )
    ordered = StringIndexerModel.from_labels(
        [c for c in classes if c != positive] + [positive],
        inputCol=indexer.getInputCol(),
        outputCol=LABEL_COL,
        handleInvalid=indexer.getHandleInvalid(),
    )
    stages = [ordered if s is indexer else s for s in feature_model.stages]
    return PipelineModel(stages=stages)


def _grid_params(pm: Mapping[Param, Any]) -> dict[str, Any]:
    return {p.name: _plain(v) for p, v in pm.items()}


def _tune(
    est: Estimator,
    data: DataFrame,
    spec: FeatureSpec,
    cfg: TrainConfig,
    metric: str,
) -> tuple[Transformer, dict[str, Any], list[dict[str, Any]]]:
    """(best model, its grid point, per grid point results) by ``cfg.tuning_method``."""
    method = cfg.tuning_method
    grid = param_grid(est, cfg.grid)
    if method == "none":
        return est.fit(data), {}, []
    tags = {f"{PREDICTION_COL}__grid{j}": j for j in range(len(grid))}
    prediction = est.getParam("predictionCol")
    tagged = [{**pm, prediction: tag} for pm, tag in zip(grid, tags, strict=True)]
    eval_spec = spec if spec.is_classification else dataclasses.replace(spec, label=LABEL_COL)
    evaluator = _GridPointEvaluator(eval_spec, metric, tags)
    common = dict(
        estimator=est,
        estimatorParamMaps=tagged,
        evaluator=evaluator,
        parallelism=cfg.tuning.parallelism,
        collectSubModels=False,
        seed=cfg.seed,
    )
    if method == "cross_validation":
        tuner = CrossValidator(numFolds=cfg.tuning.folds, foldCol=FOLD_COL, **common)
        tuned = tuner.fit(data)
        averages = list(tuned.avgMetrics)
    else:
        tuner = TrainValidationSplit(trainRatio=cfg.tuning.train_ratio, **common)
        tuned = tuner.fit(data)
        averages = list(tuned.validationMetrics)
    best_index = int(np.argmax(averages) if evaluator.isLargerBetter() else np.argmin(averages))
    best = tuned.bestModel
    best.set(best.getParam("predictionCol"), PREDICTION_COL)
    points = [
        {
            "params": _grid_params(pm),
            "metric": float(avg),
            "fold_metrics": [float(v) for v in evaluator.values[j]],
        }
        for j, (pm, avg) in enumerate(zip(grid, averages, strict=True))
    ]
    return best, points[best_index]["params"], points


ROWS_PER_PARTITION = 100_000


def training_partitions(cfg: TrainConfig, labelled_rows: int) -> int:
    """The partitions the training rows are laid out in: ``train.partitions``, else one per
    :data:`ROWS_PER_PARTITION` labelled rows (at least one).

    A function of the training set, not of the session: ``spark.sql.shuffle.partitions``
    differs between a cluster and the machine a run is reproduced on, and a forest's bootstrap
    samples (drawn per partition) would differ with it. Few partitions also keep a small
    training set from paying one task per partition in every iteration of every fit.
    """
    return cfg.partitions or max(1, math.ceil(labelled_rows / ROWS_PER_PARTITION))


def fit(
    train_df: DataFrame,
    spec: FeatureSpec,
    cfg: TrainConfig,
    outlier_model: PipelineModel | None = None,
    id_col: str | None = None,
    partitions: int | None = None,
) -> FitResult:
    """Fits the training pipeline: feature stages once, then the (tuned) estimator.

    Steps: rows with a null label are dropped and the rest laid out in ``partitions``
    partitions (default ``train.partitions``, else the session's
    ``spark.sql.shuffle.partitions``; the train job passes :func:`training_partitions`) by a
    hash of the record id (the columns :func:`split` hashes without one), sorted by it in each
    partition, so that the same rows fit the same model in any order and partitioning; the
    feature stages (:func:`~ml_engine.training.pipeline.feature_stages`) are fitted once on the
    training rows; the transformed rows are reduced to what the estimator reads (feature
    vector, label index or value, the fold number for cross validation) and persisted once
    (released at the end, also on error); with ``class_weight: balanced`` one aggregate gives
    the weights (:func:`class_weights`) and a weight column; then ``train.tuning_method``:

    * ``cross_validation``: Spark's ``CrossValidator`` over ``train.grid`` with
      ``tuning.folds`` folds from ``foldCol``: fold = ``floor(h * folds)`` with ``h`` in
      ``[0, 1)`` from ``xxhash64(seed, id_col)`` (without ``id_col``, of the columns
      :func:`split` hashes), the same on every run;
    * ``train_validation_split``: Spark's ``TrainValidationSplit`` (``tuning.train_ratio``,
      seeded random split of the cached rows);
    * ``none``: one fit with ``train.params``.

    Both tuners fit ``tuning.parallelism`` grid points at once, keep no sub-models and refit
    the best grid point on all training rows. Spark jobs outside the estimator's own
    iterations do not depend on the number of feature columns.

    Args:
        train_df: the training split, training-set-shaped.
        spec: the feature spec (:func:`~ml_engine.training.pipeline.feature_spec`).
        cfg: the ``train`` config section.
        outlier_model: the fitted outlier detector (with ``train.outlier_features``).
        id_col: the record id, for the fold hash.
        partitions: the partitions of the training rows' layout.

    Returns:
        The :class:`FitResult`.

    Raises:
        TrainingError: bad estimator params or grid (before any Spark job), a missing outlier
            model or detector column, fewer than two classes, or ``gbt`` on more than two.
    """
    spark = train_df.sparkSession
    start = time.perf_counter()
    # Config mistakes surface before any Spark job.
    param_grid(estimator(spec, cfg), cfg.grid)
    if cfg.positive_class is not None and not spec.is_classification:
        raise TrainingError(
            f"train.positive_class is set, but label '{spec.label}' is a quantity "
            f"(regression); remove it or set train.task: classification"
        )
    if cfg.outlier_features and outlier_model is not None:
        _check_outlier_columns(train_df, outlier_model)
    # The same rows give the same model whatever their layout: a forest draws its bootstrap
    # samples per partition in row order, and reproduce rebuilds the rows in another layout
    # than the stored training set. One shuffle of the training rows.
    hashed = _hash_columns(train_df, id_col)
    partitions = partitions or cfg.partitions or int(spark.conf.get("spark.sql.shuffle.partitions"))
    rows = (
        train_df.where(_q(spec.label).isNotNull())
        .repartition(partitions, *[_q(c) for c in hashed])
        .sortWithinPartitions(*[_q(c) for c in hashed])
    )

    describe(spark, "train: fit feature stages")
    feature_model = Pipeline(stages=feature_stages(spec, cfg, outlier_model)).fit(rows)
    if cfg.positive_class_text is not None:
        feature_model = _with_positive_class(feature_model, spec.label, cfg.positive_class_text)
    if spec.is_classification:
        classes = _label_classes(feature_model)
        if len(classes) < 2:
            raise TrainingError(
                f"label '{spec.label}' has only the class(es) {classes} in the training split; "
                f"classification needs at least two"
            )
        spec = spec.with_classes(classes)
    feature_seconds = time.perf_counter() - start

    est = estimator(spec, cfg)
    metric = tuning_metric(spec, cfg)
    method = cfg.tuning_method
    transformed = feature_model.transform(rows)
    names = feature_names(transformed.schema)
    if spec.is_classification:
        # The label indexer's "keep" adds an __unknown class to the column's metadata; the
        # estimator must see the training classes only.
        nominal = {"type": "nominal", "name": LABEL_COL, "vals": list(spec.classes)}
        label = F.col(LABEL_COL).alias(LABEL_COL, metadata={"ml_attr": nominal})
    else:
        label = _q(spec.label).cast("double").alias(LABEL_COL)
    cols = [F.col(FEATURES_COL), label]
    if method == "cross_validation":
        fold = F.floor(_unit_hash(hashed, "fold", cfg.seed) * cfg.tuning.folds).cast("int")
        cols.append(fold.alias(FOLD_COL))
    cached = transformed.select(*cols).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        tune_start = time.perf_counter()
        weights = None
        data = cached
        if cfg.class_weight == "balanced":
            describe(spark, "train: class weights")
            by_index = class_weights(cached, LABEL_COL)
            values = [by_index[float(i)] for i in range(len(spec.classes))]
            data = cached.withColumn(
                WEIGHT_COL,
                F.array(*[F.lit(v) for v in values])[F.col(LABEL_COL).cast("int")],
            )
            weights = dict(zip(spec.classes, values, strict=True))
        describe(spark, f"train: {estimator_name(spec, cfg)} ({method}, metric {metric})")
        best, chosen, points = _tune(est, data, spec, cfg, metric)
        tune_seconds = time.perf_counter() - tune_start
    finally:
        cached.unpersist()
    model = PipelineModel(stages=[*feature_model.stages, best, *label_decoder(spec)])
    return FitResult(
        model=model,
        spec=spec,
        estimator=estimator_name(spec, cfg),
        metric=metric,
        tuning=method,
        best_params=_plain({**cfg.params, **chosen}),
        grid=points,
        feature_names=names,
        class_weights=weights,
        timings={
            "feature_fit": feature_seconds,
            "tuning": tune_seconds,
            "total": time.perf_counter() - start,
        },
        partitions=partitions,
    )
