"""Held-out metrics and the small aggregates behind curves, matrices and importances.

Everything here reads predictions of a fitted training pipeline (``model.transform(test)``):
:data:`~ml_engine.training.pipeline.LABEL_COL` (the class index; the label column itself for
regression), ``prediction`` and, for classifiers, ``probability``. Nothing collects rows: the
driver receives aggregates whose size depends on the number of classes or bins only (for the
areas, at most :data:`AUC_EXACT_SCORES` rows per class).

Metric definitions (``evaluate``):

* classification — ``accuracy``; ``f1``: binary, the F1 score of the positive class (class
  index 1, see :mod:`ml_engine.training.pipeline`), plus its ``precision`` and ``recall``;
  multiclass, the support-weighted mean of the per-class F1 scores (scikit-learn's
  ``average="weighted"``), plus ``f1_<class>``, ``precision_<class>``, ``recall_<class>`` and
  the one-vs-rest ``auc_roc_<class>`` of every class; ``log_loss``: the mean of
  ``-log p(true class)`` with ``p`` clipped to ``[1e-15, 1 - 1e-15]`` (as Spark's
  evaluator); ``auc_roc`` and ``auc_pr``: areas under the ROC and precision-recall curves of
  ``P(positive)`` (multiclass: the unweighted
  mean over classes of the one-vs-rest areas, scikit-learn's ``multi_class="ovr",
  average="macro"`` for ROC). Per-class precision/recall/F1 of a class never predicted (or
  absent) are 0, as scikit-learn's ``zero_division=0``.
* regression — ``rmse``, ``mae``, ``r2`` (``1 - SSE / SST``).

Test rows whose label the training split never saw (or a null label) have no class index
among the model's classes: they are left out of the classification metrics.

Areas: the rows are counted per distinct score in Spark (positives and negatives, integers)
and the driver draws the curves through one point per score, in score order: exact
(scikit-learn's ``roc_auc_score``; for PR, trapezoids from a first point
``(recall 0, precision of the highest score)``, as Spark's ``BinaryClassificationEvaluator``
draws it) while a class has at most :data:`AUC_EXACT_SCORES` distinct scores. Above that,
scores are counted in that many equal-width buckets of ``[0, 1]`` instead, which moves an area
by at most half the share of (positive, negative) pairs that share a bucket.

Reproducible: the same predictions give the same metrics to the last bit, however they are
partitioned. Counts are integers, the log loss and the regression sums are exact decimal sums
(a double sum depends on the order of the rows), and the driver orders what it receives.
(Spark's own evaluator is not: its range partitioning samples with a seed taken from the RDD
id, so the same data give areas that differ from run to run.)
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from pyspark import StorageLevel
from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.training import TrainingError
from ml_engine.training.pipeline import (
    ASSEMBLED_COL,
    FEATURES_COL,
    IMPUTED_PREFIX,
    LABEL_COL,
    ONEHOT_PREFIX,
    PREDICTION_COL,
    PROBABILITY_COL,
    FeatureSpec,
)

__all__ = [
    "classification_curves",
    "confusion_matrix",
    "evaluate",
    "feature_importances",
    "feature_names",
    "metric_name",
    "regression_curves",
]

LOG_LOSS_EPS = 1e-15
AUC_METRICS = ("auc_roc", "auc_pr")
# The number of labelled rows behind the metrics (``evaluate(..., with_rows=True)``).
ROWS = "labelled_rows"
# The training run's param naming the metric its gate judged the model by.
GATE_METRIC_PARAM = "gate.metric"
#: Distinct scores per class up to which ``auc_roc`` and ``auc_pr`` are exact (see the module
#: docstring); also the number of grid buckets above it.
AUC_EXACT_SCORES = 100_000
_Y, _P, _PROB, _S, _C = "__y", "__p", "__prob", "__s", "__c"


def metric_name(prefix: str, label: str) -> str:
    """``<prefix>_<label>`` with characters MLflow refuses in a metric name replaced by ``_``."""
    return f"{prefix}_{re.sub(r'[^0-9A-Za-z_.:/ -]', '_', label)}"


def _classes(spec: FeatureSpec) -> list[str]:
    if not spec.is_classification:
        raise TrainingError(f"the task is {spec.task}, not classification")
    if not spec.classes or len(spec.classes) < 2:
        raise TrainingError(
            f"the spec's classes are {spec.classes}; classification metrics need the fitted "
            f"spec (FitResult.spec) with at least two classes"
        )
    return list(spec.classes)


def _labelled(predictions: DataFrame, k: int, with_probability: bool = True) -> DataFrame:
    """Rows with a known class: class index ``__y``, predicted index ``__p``, ``__prob``."""
    if LABEL_COL not in predictions.columns:
        raise TrainingError(
            f"the predictions have no {LABEL_COL} column: transform data that has the label "
            f"column with the fitted training pipeline"
        )
    cols = [F.col(LABEL_COL).cast("int").alias(_Y), F.col(PREDICTION_COL).cast("int").alias(_P)]
    if with_probability:
        cols.append(vector_to_array(F.col(PROBABILITY_COL)).alias(_PROB))
    return predictions.where(F.col(LABEL_COL) < k).select(*cols)


def _exact_sum(value: Column, scale: int = 18) -> Column:
    """Sum of ``value`` as a decimal with ``scale`` places: decimal addition is exact, so the
    sum does not depend on how the rows are partitioned or ordered (a double sum does)."""
    return F.sum(value.cast(f"decimal(38,{scale})"))


def _score_counts(data: DataFrame, auc_classes: Sequence[int]) -> dict[int, np.ndarray]:
    """Class -> rows ``(score, positives, negatives)`` of its one-vs-rest scores, sorted by
    score descending: per distinct score while a class has at most :data:`AUC_EXACT_SCORES`
    of them, else per bucket of a grid of that many equal-width buckets of ``[0, 1]``.

    Counts are integers summed in Spark, and the driver orders the rows itself, so the result
    does not depend on how the rows are partitioned. One Spark job (two above the limit).
    """
    pairs = data.select(_Y, F.posexplode(F.col(_PROB)).alias(_C, _S)).where(
        F.col(_C).isin(list(auc_classes))
    )

    def counts(key: Column) -> DataFrame:
        positive = (F.col(_Y) == F.col(_C)).cast("long")
        return pairs.groupBy(_C, key.alias(_S)).agg(
            F.sum(positive).alias("pos"), F.sum(1 - positive).alias("neg")
        )

    cap = AUC_EXACT_SCORES * len(auc_classes)
    table = counts(F.col(_S)).limit(cap + 1).toArrow()
    if table.num_rows > cap:
        bucket = F.least(F.floor(F.col(_S) * AUC_EXACT_SCORES), F.lit(AUC_EXACT_SCORES - 1))
        table = counts(bucket.cast("double")).toArrow()
    c, score = table.column(_C).to_numpy(), table.column(_S).to_numpy()
    pos, neg = table.column("pos").to_numpy(), table.column("neg").to_numpy()
    out = {}
    for k in auc_classes:
        mine = c == k
        order = np.argsort(-score[mine], kind="stable")
        out[k] = np.column_stack([score[mine][order], pos[mine][order], neg[mine][order]])
    return out


def _areas(counts: np.ndarray) -> dict[str, float]:
    """``auc_roc`` and ``auc_pr`` of one class from its :func:`_score_counts` rows: trapezoids
    through one point per score (ties share a point), the PR curve starting at
    ``(recall 0, precision of the highest score)`` as Spark's evaluator draws it."""
    tp, fp = np.cumsum(counts[:, 1]), np.cumsum(counts[:, 2])
    p, n = (tp[-1], fp[-1]) if len(tp) else (0, 0)
    if p == 0 or n == 0:
        return {"auc_roc": float("nan"), "auc_pr": float("nan")}
    roc = np.trapezoid(np.concatenate([[0.0], tp / p]), np.concatenate([[0.0], fp / n]))
    precision, recall = tp / (tp + fp), tp / p
    pr = np.trapezoid(np.concatenate([precision[:1], precision]), np.concatenate([[0.0], recall]))
    return {"auc_roc": float(roc), "auc_pr": float(pr)}


def _confusion_and_log_loss(data: DataFrame, k: int) -> tuple[np.ndarray, float]:
    """The ``k x k`` confusion counts (rows: actual, columns: predicted) and summed log loss
    (an exact decimal sum, see :func:`_exact_sum`).

    One Spark job: a ``groupBy`` of at most ``k * k`` groups.
    """
    p_true = F.greatest(
        F.least(F.get(F.col(_PROB), F.col(_Y)), F.lit(1 - LOG_LOSS_EPS)), F.lit(LOG_LOSS_EPS)
    )
    rows = (
        data.groupBy(_Y, _P)
        .agg(F.count(F.lit(1)).alias("n"), _exact_sum(-F.log(p_true)).alias("ll"))
        .collect()
    )
    matrix = np.zeros((k, k), dtype=np.int64)
    log_loss = Decimal(0)
    for r in rows:
        if 0 <= r[_P] < k:
            matrix[r[_Y], r[_P]] += r["n"]
        log_loss += r["ll"]
    return matrix, float(log_loss)


def _per_class(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support of each class (0 where undefined)."""
    tp = np.diag(matrix).astype(float)
    predicted = matrix.sum(axis=0).astype(float)
    support = matrix.sum(axis=1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros_like(tp), where=total > 0)
    return precision, recall, f1, support


def _classification_metrics(
    predictions: DataFrame, spec: FeatureSpec, wanted: Collection[str] | None, with_rows: bool
) -> dict[str, float]:
    classes = _classes(spec)
    k = len(classes)
    binary = k == 2
    want_all = wanted is None
    aucs = [m for m in AUC_METRICS if want_all or m in wanted]
    need_agg = with_rows or want_all or any(m in wanted for m in ("accuracy", "f1", "log_loss"))
    auc_classes = [1] if binary else list(range(k))
    passes = int(need_agg) + int(bool(aucs))
    data = _labelled(predictions, k)
    if passes > 1:
        data = data.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        out: dict[str, float] = {}
        if need_agg:
            matrix, log_loss = _confusion_and_log_loss(data, k)
            n = int(matrix.sum())
            if n == 0:
                raise TrainingError(
                    "no test row has a label the model knows; the held-out set is empty"
                )
            precision, recall, f1, support = _per_class(matrix)
            if with_rows:
                out[ROWS] = float(n)
            out["accuracy"] = float(np.trace(matrix) / n)
            out["log_loss"] = float(log_loss / n)
            if binary:
                out["f1"] = float(f1[1])
                out["precision"] = float(precision[1])
                out["recall"] = float(recall[1])
            else:
                out["f1"] = float(np.sum(f1 * support) / n)
                for c, label in enumerate(classes):
                    out[metric_name("f1", label)] = float(f1[c])
                    out[metric_name("precision", label)] = float(precision[c])
                    out[metric_name("recall", label)] = float(recall[c])
        areas = {c: _areas(v) for c, v in _score_counts(data, auc_classes).items()} if aucs else {}
        for metric in aucs:
            per_class = [areas[c][metric] for c in auc_classes]
            out[metric] = float(np.mean(per_class))
            if not binary and metric == "auc_roc":
                for c, value in zip(auc_classes, per_class, strict=True):
                    out[metric_name("auc_roc", classes[c])] = value
        return out
    finally:
        if passes > 1:
            data.unpersist()


def _regression_metrics(
    predictions: DataFrame, spec: FeatureSpec, with_rows: bool
) -> dict[str, float]:
    """RMSE, MAE and R² from exact decimal sums (10 places; see :func:`_exact_sum`)."""
    y = F.col(spec.label).cast("double")
    err = y - F.col(PREDICTION_COL)
    row = (
        predictions.where(y.isNotNull())
        .agg(
            F.count(F.lit(1)).alias("n"),
            _exact_sum(err * err, 10).alias("sse"),
            _exact_sum(F.abs(err), 10).alias("sae"),
            _exact_sum(y, 10).alias("sy"),
            _exact_sum(y * y, 10).alias("syy"),
        )
        .first()
    )
    n = row["n"]
    if not n:
        raise TrainingError("no test row has a label; the held-out set is empty")
    sse, sst = row["sse"], row["syy"] - row["sy"] * row["sy"] / n
    out = {
        "rmse": math.sqrt(sse / n),
        "mae": float(row["sae"] / n),
        "r2": float(1 - sse / sst) if sst > 0 else float("nan"),
    }
    return {ROWS: float(n), **out} if with_rows else out


def evaluate(
    predictions: DataFrame,
    spec: FeatureSpec,
    metrics: Collection[str] | None = None,
    with_rows: bool = False,
) -> dict[str, float]:
    """Metrics of held-out predictions (definitions in the module docstring).

    Spark jobs: regression one aggregate; classification one ``groupBy`` (confusion counts and
    log loss) plus one ``groupBy`` of score counts for ``auc_roc`` and ``auc_pr`` (every class
    at once; a second one above :data:`AUC_EXACT_SCORES`) over the narrow columns they need,
    cached while they are read more than once.

    Args:
        predictions: ``model.transform(test)`` of a fitted training pipeline.
        spec: the fitted spec (``FitResult.spec``: classes known).
        metrics: compute only these metric names (and whatever comes with them); None: all.
        with_rows: also give the number of labelled rows the metrics were computed on, as
            :data:`ROWS` (counted by the same Spark jobs).

    Returns:
        Metric name -> value.

    Raises:
        TrainingError: the spec has no classes, the label index is missing, or no test row
            has a known label.
    """
    if spec.is_classification:
        return _classification_metrics(predictions, spec, metrics, with_rows)
    return _regression_metrics(predictions, spec, with_rows)


# --------------------------------------------------------------------------- curve data


def confusion_matrix(predictions: DataFrame, spec: FeatureSpec) -> dict[str, Any]:
    """Counts of (actual class, predicted class); one Spark job (a ``groupBy``).

    Returns:
        ``{"labels": classes, "matrix": [[count]]}``, row ``i`` the actual class ``i``,
        column ``j`` the predicted class ``j``.
    """
    classes = _classes(spec)
    k = len(classes)
    rows = _labelled(predictions, k, with_probability=False).groupBy(_Y, _P).count().collect()
    matrix = np.zeros((k, k), dtype=np.int64)
    for r in rows:
        if 0 <= r[_P] < k:
            matrix[r[_Y], r[_P]] += r["count"]
    return {"labels": classes, "matrix": matrix.tolist()}


def classification_curves(
    predictions: DataFrame, spec: FeatureSpec, bins: int = 100
) -> dict[str, dict[str, list[float]]]:
    """ROC and precision-recall points from counts per probability bucket; one Spark job.

    The probability of class ``c`` falls in bucket ``min(floor(p * bins), bins - 1)``; the
    threshold of bucket ``b`` is ``b / bins``, a row counting as predicted ``c`` when its
    bucket is ``>= b``. Binary tasks give the positive class only, multiclass one-vs-rest
    curves of every class. Only thresholds at non-empty buckets make points.

    Args:
        predictions: ``model.transform(test)``.
        spec: the fitted spec.
        bins: probability buckets (the curves' resolution).

    Returns:
        Class label -> ``{"thresholds", "fpr", "tpr", "precision", "recall"}``, all in order
        of decreasing threshold; ``fpr``/``tpr`` start at ``(0, 0)`` (threshold above 1, where
        ``thresholds`` has ``inf``), precision/recall only at thresholds with predictions (the
        first ``precision`` entry is then ``nan``).
    """
    classes = _classes(spec)
    k = len(classes)
    curve_classes = [1] if k == 2 else list(range(k))
    data = _labelled(predictions, k).select(_Y, F.posexplode(_PROB).alias("__c", "__score"))
    if k == 2:
        data = data.where(F.col("__c") == 1)
    bucket = F.least(F.floor(F.col("__score") * bins), F.lit(bins - 1)).cast("int")
    is_pos = F.col(_Y) == F.col("__c")
    rows = (
        data.groupBy(F.col("__c"), bucket.alias("__b"))
        .agg(
            F.sum(is_pos.cast("long")).alias("pos"),
            F.sum((~is_pos).cast("long")).alias("neg"),
        )
        .collect()
    )
    out: dict[str, dict[str, list[float]]] = {}
    for c in curve_classes:
        counts = sorted(
            ((r["__b"], r["pos"], r["neg"]) for r in rows if r["__c"] == c), reverse=True
        )
        n_pos = sum(p for _, p, _ in counts)
        n_neg = sum(n for _, _, n in counts)
        tp = fp = 0
        thresholds, fpr, tpr, precision = [math.inf], [0.0], [0.0], [math.nan]
        for b, p, n in counts:
            tp, fp = tp + p, fp + n
            thresholds.append(b / bins)
            tpr.append(tp / n_pos if n_pos else 0.0)
            fpr.append(fp / n_neg if n_neg else 0.0)
            precision.append(tp / (tp + fp))
        out[classes[c]] = {
            "thresholds": thresholds,
            "fpr": fpr,
            "tpr": tpr,
            "precision": precision,
            "recall": list(tpr),
        }
    return out


def regression_curves(
    predictions: DataFrame, spec: FeatureSpec, bins: int = 30
) -> dict[str, list[float]]:
    """A histogram of residuals and predicted-vs-actual means per bin of the actual value.

    Two Spark jobs: the ranges (one aggregate), then one ``groupBy`` of bucket counts and sums.
    Residual = actual - predicted. Bins are equal-width over ``[min, max]`` (the last bin
    includes its upper edge).

    Returns:
        ``residual_edges`` (``bins + 1``), ``residual_counts`` (``bins``), and for the
        non-empty bins of the actual value: ``actual_mean``, ``predicted_mean``, ``count``,
        plus ``actual_edges`` (``bins + 1``).

    Raises:
        TrainingError: the task is not regression or no row has a label.
    """
    if spec.is_classification:
        raise TrainingError(f"regression_curves: the task is {spec.task}")
    y = F.col(spec.label).cast("double")
    data = predictions.where(y.isNotNull()).select(
        y.alias(_Y), F.col(PREDICTION_COL).cast("double").alias(_P)
    )
    res = F.col(_Y) - F.col(_P)
    r = data.agg(
        F.min(res).alias("rmin"),
        F.max(res).alias("rmax"),
        F.min(_Y).alias("ymin"),
        F.max(_Y).alias("ymax"),
    ).first()
    if r["rmin"] is None:
        raise TrainingError("regression_curves: no row has a label")

    def edges(lo: float, hi: float) -> list[float]:
        return np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1).tolist()

    r_edges, y_edges = edges(r["rmin"], r["rmax"]), edges(r["ymin"], r["ymax"])

    def bucket(value: Column, e: list[float]) -> Column:
        width = (e[-1] - e[0]) / bins
        return F.least(F.floor((value - F.lit(e[0])) / F.lit(width)), F.lit(bins - 1)).cast("int")

    kinds = F.explode(
        F.array(
            F.struct(F.lit("r").alias("k"), bucket(res, r_edges).alias("b")),
            F.struct(F.lit("y").alias("k"), bucket(F.col(_Y), y_edges).alias("b")),
        )
    ).alias("__kb")
    rows = (
        data.select(_Y, _P, kinds)
        .groupBy(F.col("__kb.k").alias("k"), F.col("__kb.b").alias("b"))
        .agg(F.count(F.lit(1)).alias("n"), F.sum(_Y).alias("sy"), F.sum(_P).alias("sp"))
        .collect()
    )
    counts = [0] * bins
    binned = {}
    for row in rows:
        if row["k"] == "r":
            counts[row["b"]] = row["n"]
        else:
            binned[row["b"]] = (row["n"], row["sy"] / row["n"], row["sp"] / row["n"])
    order = sorted(binned)
    return {
        "residual_edges": r_edges,
        "residual_counts": counts,
        "actual_edges": y_edges,
        "count": [binned[b][0] for b in order],
        "actual_mean": [binned[b][1] for b in order],
        "predicted_mean": [binned[b][2] for b in order],
    }


# --------------------------------------------------------------------------- features


def feature_names(schema: T.StructType) -> list[str]:
    """Names of the slots of the feature vector, from the assembler's ML attributes.

    Numeric features keep their column name; a one-hot slot is ``<column>=<category>``
    (``<column>=__unknown`` for null, unseen and dropped categories); a slot without a name in
    the metadata is ``f<index>``.

    Args:
        schema: the schema of any DataFrame transformed by the fitted feature stages
            (``FitResult.model.transform(df).schema``; reading it runs no Spark job).

    Raises:
        TrainingError: the schema has no assembled feature vector.
    """
    names = {f.name: f for f in schema.fields}
    col = ASSEMBLED_COL if ASSEMBLED_COL in names else FEATURES_COL
    if col not in names:
        raise TrainingError(
            f"feature_names: the schema has no {ASSEMBLED_COL} or {FEATURES_COL} column; pass "
            f"the schema of data transformed by the training pipeline"
        )
    ml_attr = names[col].metadata.get("ml_attr", {})
    size = ml_attr.get("num_attrs", 0)
    slots = [f"f{i}" for i in range(size)]
    attrs = [a for group in ml_attr.get("attrs", {}).values() for a in group]
    onehot = sorted(
        (c[len(ONEHOT_PREFIX) :] for c in names if c.startswith(ONEHOT_PREFIX)),
        key=len,
        reverse=True,
    )
    for a in attrs:
        name = a.get("name")
        if name is None:
            continue
        if name.startswith(IMPUTED_PREFIX):
            display = name[len(IMPUTED_PREFIX) :]
        else:
            display = name
            for c in onehot:
                prefix = f"{ONEHOT_PREFIX}{c}_"
                if name.startswith(prefix):
                    display = f"{c}={name[len(prefix) :]}"
                    break
        if a["idx"] >= len(slots):
            slots += [f"f{i}" for i in range(len(slots), a["idx"] + 1)]
        slots[a["idx"]] = display
    return slots


def estimator_model(model: PipelineModel) -> Transformer:
    """The fitted estimator inside a training ``PipelineModel`` (the stage that predicts).

    Raises:
        TrainingError: no stage has a ``predictionCol`` set to ``prediction``.
    """
    for stage in model.stages:
        if stage.hasParam("featuresCol") and stage.hasParam("predictionCol"):
            if stage.getOrDefault("featuresCol") == FEATURES_COL:
                return stage
    raise TrainingError("the pipeline has no estimator stage reading the feature vector")


def feature_importances(model: PipelineModel | Transformer, names: Sequence[str]) -> dict[str, Any]:
    """How much each feature counts, by the estimator's own measure.

    * trees (random forest, GBT): ``featureImportances`` (``kind="importance"``, sums to 1);
    * XGBoost: total gain per feature (``kind="gain"``, features never split on are 0);
    * linear and binary logistic regression: the coefficients (``kind="coefficient"``, signed,
      in the units of the features as the model sees them, so only comparable across
      features when ``train.scaling`` is set);
    * multinomial logistic regression: per feature the Euclidean norm of its coefficients over
      the classes (``kind="coefficient_norm"``).

    Args:
        model: the training ``PipelineModel`` or the fitted estimator itself.
        names: the feature names (:func:`feature_names`, ``FitResult.feature_names``).

    Returns:
        ``{"kind", "names", "values"}`` sorted by decreasing absolute value.

    Raises:
        TrainingError: the model has no importances or their count differs from ``names``.
    """
    est = estimator_model(model) if isinstance(model, PipelineModel) else model
    if hasattr(est, "featureImportances"):
        kind, values = "importance", est.featureImportances.toArray()
    elif hasattr(est, "get_feature_importances"):
        gain = est.get_feature_importances(importance_type="total_gain")
        values = np.zeros(len(names))
        for key, v in gain.items():
            values[int(key[1:])] = v
        kind = "gain"
    elif hasattr(est, "coefficientMatrix") and est.coefficientMatrix.numRows > 1:
        kind = "coefficient_norm"
        values = np.linalg.norm(est.coefficientMatrix.toArray(), axis=0)
    elif hasattr(est, "coefficients"):
        kind, values = "coefficient", est.coefficients.toArray()
    else:
        raise TrainingError(f"{type(est).__name__} has no feature importances or coefficients")
    values = np.asarray(values, dtype=float)
    if len(values) != len(names):
        raise TrainingError(
            f"the model has {len(values)} feature weights but {len(names)} names were given"
        )
    order = sorted(range(len(names)), key=lambda i: (-abs(values[i]), i))
    return {
        "kind": kind,
        "names": [names[i] for i in order],
        "values": [float(values[i]) for i in order],
    }
