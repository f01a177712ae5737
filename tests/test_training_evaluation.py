"""Held-out metrics, curve aggregates, feature names and importances, and their figures.

Predictions are built directly as DataFrames shaped like a fitted training pipeline's output
(class index ``__label``, ``prediction``, ``probability``), so every expected value is
computed by scikit-learn or numpy on exactly the same numbers.

Tolerances: the areas are exact below ``AUC_EXACT_SCORES`` distinct scores (these tests have a
few hundred or a few thousand) and compared at 1e-9 (floating-point order only). The PR area
starts the curve at ``(recall 0, precision of the highest threshold)``, as Spark's evaluator,
where scikit-learn's curve starts at ``(0, 1)``; the expected value below replaces that first
point accordingly.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression, RandomForestClassifier
from pyspark.ml.linalg import Vectors, VectorUDT
from pyspark.sql import functions as F
from pyspark.sql import types as T
from sklearn import metrics as skm

from ml_engine.config import TrainConfig
from ml_engine.training import TrainingError, evaluation
from ml_engine.training.evaluation import (
    classification_curves,
    confusion_matrix,
    evaluate,
    feature_importances,
    feature_names,
    regression_curves,
)
from ml_engine.training.pipeline import (
    FEATURES_COL,
    LABEL_COL,
    FeatureSpec,
    feature_spec,
    feature_stages,
)
from ml_engine.training.plots import (
    CHANCE_LABEL,
    confusion_matrix_figure,
    feature_importance_figure,
    pr_figure,
    residuals_figure,
    roc_figure,
)

PREDICTIONS = T.StructType(
    [
        T.StructField(LABEL_COL, T.DoubleType()),
        T.StructField("prediction", T.DoubleType()),
        T.StructField("probability", VectorUDT()),
    ]
)
VECTORS = T.StructType(
    [T.StructField(FEATURES_COL, VectorUDT()), T.StructField(LABEL_COL, T.DoubleType())]
)
BINARY = FeatureSpec([], [], "y", "classification", "int", classes=["0", "1"])
MULTI = FeatureSpec([], [], "y", "classification", "string", classes=["cat", "dog", "eel"])
REGRESSION = FeatureSpec([], [], "y", "regression", "double")


def _predictions(spark, y: np.ndarray, proba: np.ndarray):
    """A predictions frame: class index, argmax prediction, probability vector."""
    rows = [
        (float(label), float(np.argmax(p)), Vectors.dense([float(v) for v in p]))
        for label, p in zip(y, proba, strict=True)
    ]
    return spark.createDataFrame(rows, PREDICTIONS)


def _binary_data(n: int = 300, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.3 * y + rng.random(n) * 0.7, 0.001, 0.999)
    return y, np.column_stack([1 - p1, p1])


def _multi_data(n: int = 300, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def _spark_pr_area(y: np.ndarray, score: np.ndarray) -> float:
    """Spark's PR area: trapezoids over sklearn's curve with its first point set to
    (recall 0, precision at the highest threshold)."""
    precision, recall, _ = skm.precision_recall_curve(y, score)
    precision, recall = precision[::-1].copy(), recall[::-1].copy()
    precision[0] = precision[1]
    return float(np.trapezoid(precision, recall))


# ---------------------------------------------------------------------------------- metrics


def test_binary_metrics_match_sklearn(spark):
    y, proba = _binary_data()
    got = evaluate(_predictions(spark, y, proba), BINARY)
    pred = proba.argmax(axis=1)
    assert got == pytest.approx(
        {
            "auc_roc": skm.roc_auc_score(y, proba[:, 1]),
            "auc_pr": _spark_pr_area(y, proba[:, 1]),
            "accuracy": skm.accuracy_score(y, pred),
            "f1": skm.f1_score(y, pred, pos_label=1),
            "precision": skm.precision_score(y, pred, pos_label=1),
            "recall": skm.recall_score(y, pred, pos_label=1),
            "log_loss": skm.log_loss(y, proba),
        },
        rel=1e-9,
    )


def test_multiclass_metrics_match_sklearn(spark):
    y, proba = _multi_data()
    got = evaluate(_predictions(spark, y, proba), MULTI)
    pred = proba.argmax(axis=1)
    f1 = skm.f1_score(y, pred, average=None)
    precision = skm.precision_score(y, pred, average=None)
    recall = skm.recall_score(y, pred, average=None)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, average="weighted"),
        "log_loss": skm.log_loss(y, proba),
        "auc_roc": skm.roc_auc_score(y, proba, multi_class="ovr", average="macro"),
        "auc_pr": np.mean([_spark_pr_area(y == c, proba[:, c]) for c in range(3)]),
    }
    for c, name in enumerate(MULTI.classes):
        expected[f"f1_{name}"] = f1[c]
        expected[f"precision_{name}"] = precision[c]
        expected[f"recall_{name}"] = recall[c]
        expected[f"auc_roc_{name}"] = skm.roc_auc_score(y == c, proba[:, c])
    assert got == pytest.approx(expected, rel=1e-9)


def test_rows_with_a_label_unknown_to_the_model_are_left_out(spark):
    y, proba = _binary_data(n=200)
    known = _predictions(spark, y, proba)
    # Class index 2 is the label indexer's slot for a label the training split never saw.
    unknown = _predictions(spark, np.array([2, 2]), np.array([[0.9, 0.1], [0.2, 0.8]]))
    some = ["accuracy", "f1", "log_loss", "auc_roc"]
    assert evaluate(known.unionByName(unknown), BINARY, some) == pytest.approx(
        evaluate(known, BINARY, some), rel=1e-12
    )


def test_regression_metrics_match_sklearn(spark):
    rng = np.random.default_rng(11)
    y = rng.normal(10, 3, 250)
    pred = y + rng.normal(0, 1, 250)
    df = spark.createDataFrame(
        [(float(a), float(b)) for a, b in zip(y, pred, strict=True)], "y double, prediction double"
    )
    assert evaluate(df, REGRESSION) == pytest.approx(
        {
            "rmse": math.sqrt(skm.mean_squared_error(y, pred)),
            "mae": skm.mean_absolute_error(y, pred),
            "r2": skm.r2_score(y, pred),
        },
        rel=1e-9,
    )


def _shuffled(df, partitions: int, seed: int):
    return df.orderBy(F.rand(seed)).repartition(partitions)


def test_metrics_are_the_same_to_the_last_bit_however_the_rows_are_partitioned(spark):
    # 2,500 distinct scores: enough rows that a double sum's order would show in the last bits.
    y, proba = _binary_data(n=2500, seed=21)
    binary = _predictions(spark, y, proba)
    rng = np.random.default_rng(12)
    target = rng.normal(1e4, 3e3, 2500)
    regression = spark.createDataFrame(
        [(float(a), float(a + rng.normal(0, 700))) for a in target], "y double, prediction double"
    )
    for df, spec in ((binary, BINARY), (regression, REGRESSION)):
        runs = [evaluate(df.coalesce(1), spec)]
        runs += [evaluate(_shuffled(df, n, seed), spec) for n, seed in ((7, 1), (3, 2), (5, 3))]
        assert runs[1:] == [runs[0]] * 3  # exactly equal, not approximately
    pred = proba.argmax(axis=1)
    actual, predicted = _regression_columns(regression)
    assert runs[0] == pytest.approx(  # runs of the regression frame, the loop's last
        {
            "rmse": math.sqrt(skm.mean_squared_error(actual, predicted)),
            "mae": skm.mean_absolute_error(actual, predicted),
            "r2": skm.r2_score(actual, predicted),
        },
        rel=1e-9,
    )
    assert skm.accuracy_score(y, pred) == evaluate(binary, BINARY, ["accuracy"])["accuracy"]


def test_above_the_exact_limit_areas_are_those_of_scores_on_the_grid(spark, monkeypatch):
    monkeypatch.setattr(evaluation, "AUC_EXACT_SCORES", 40)
    y, proba = _binary_data(n=300, seed=8)
    got = evaluate(_predictions(spark, y, proba), BINARY, ["auc_roc", "auc_pr"])
    on_grid = np.minimum(np.floor(proba[:, 1] * 40), 39)
    assert got == pytest.approx(
        {"auc_roc": skm.roc_auc_score(y, on_grid), "auc_pr": _spark_pr_area(y, on_grid)},
        rel=1e-12,
    )
    assert len(np.unique(on_grid)) == 40 < len(np.unique(proba[:, 1]))  # the grid path ran


def _regression_columns(df) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.array([(r.y, r.prediction) for r in df.collect()])
    return pairs[:, 0], pairs[:, 1]


def test_classification_metrics_need_the_fitted_classes(spark):
    y, proba = _binary_data(n=20)
    unfitted = FeatureSpec([], [], "y", "classification", "int")
    with pytest.raises(TrainingError, match=r"classes are None; .*FitResult.spec"):
        evaluate(_predictions(spark, y, proba), unfitted)


# ---------------------------------------------------------------------------------- curves


def test_confusion_matrix_matches_sklearn(spark):
    y, proba = _multi_data(n=150)
    got = confusion_matrix(_predictions(spark, y, proba), MULTI)
    assert got == {
        "labels": MULTI.classes,
        "matrix": skm.confusion_matrix(y, proba.argmax(axis=1), labels=[0, 1, 2]).tolist(),
    }


def _expected_curve(y_pos: np.ndarray, score: np.ndarray, bins: int) -> dict[str, list[float]]:
    """ROC/PR points at the thresholds b / bins of the non-empty buckets, by numpy."""
    bucket = np.minimum(np.floor(score * bins), bins - 1)
    fpr, tpr, precision, thresholds = [0.0], [0.0], [math.nan], [math.inf]
    for b in sorted(set(bucket.tolist()), reverse=True):
        chosen = bucket >= b
        tp, fp = np.sum(chosen & y_pos), np.sum(chosen & ~y_pos)
        thresholds.append(b / bins)
        tpr.append(tp / y_pos.sum())
        fpr.append(fp / (~y_pos).sum())
        precision.append(tp / (tp + fp))
    return {"thresholds": thresholds, "fpr": fpr, "tpr": tpr, "precision": precision}


def test_roc_and_pr_points_are_counts_per_probability_bucket(spark):
    y, proba = _binary_data(n=200)
    got = classification_curves(_predictions(spark, y, proba), BINARY, bins=20)
    expected = _expected_curve(y == 1, proba[:, 1], 20)
    assert list(got) == ["1"]
    for key in ("thresholds", "fpr", "tpr", "precision"):
        np.testing.assert_allclose(got["1"][key], expected[key], rtol=1e-12)
    np.testing.assert_allclose(got["1"]["recall"], expected["tpr"], rtol=1e-12)


def test_multiclass_curves_are_one_vs_rest_per_class(spark):
    y, proba = _multi_data(n=150)
    got = classification_curves(_predictions(spark, y, proba), MULTI, bins=10)
    assert list(got) == MULTI.classes
    for c, name in enumerate(MULTI.classes):
        expected = _expected_curve(y == c, proba[:, c], 10)
        np.testing.assert_allclose(got[name]["fpr"], expected["fpr"], rtol=1e-12)
        np.testing.assert_allclose(got[name]["tpr"], expected["tpr"], rtol=1e-12)


def test_regression_curves_match_numpy_histograms(spark):
    rng = np.random.default_rng(2)
    y = rng.uniform(0, 10, 200)
    pred = y + rng.normal(0, 1, 200)
    df = spark.createDataFrame(
        [(float(a), float(b)) for a, b in zip(y, pred, strict=True)], "y double, prediction double"
    )
    got = regression_curves(df, REGRESSION, bins=8)
    residual = y - pred
    counts, edges = np.histogram(residual, bins=8)
    np.testing.assert_allclose(got["residual_edges"], edges, rtol=1e-12)
    assert got["residual_counts"] == counts.tolist()
    y_edges = np.linspace(y.min(), y.max(), 9)
    which = np.minimum(np.floor((y - y.min()) / ((y.max() - y.min()) / 8)), 7)
    present = sorted(set(which.tolist()))
    assert got["count"] == [int(np.sum(which == b)) for b in present]
    np.testing.assert_allclose(got["actual_edges"], y_edges, rtol=1e-12)
    np.testing.assert_allclose(got["actual_mean"], [y[which == b].mean() for b in present])
    np.testing.assert_allclose(got["predicted_mean"], [pred[which == b].mean() for b in present])


# ---------------------------------------------------------------------------------- features


def test_feature_names_follow_the_assembled_vector(spark):
    """Names come from the assembler's output, also when a scaler follows it."""
    df = spark.createDataFrame(
        [(1.0, 2, "b", 0), (None, 3, "a", 1), (3.0, None, "a", 0), (4.0, 5, None, 1)],
        "x1 double, x2 int, colour string, y int",
    )
    cfg = TrainConfig(scaling="standard")
    model = Pipeline(stages=feature_stages(feature_spec(df.schema, cfg, "y"), cfg)).fit(df)
    assert feature_names(model.transform(df).schema) == [
        "x1",
        "x2",
        "colour=a",
        "colour=b",
        "colour=__unknown",
    ]


def test_multinomial_logistic_importance_is_coefficient_norm_over_classes(spark):
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 120)
    X = rng.normal(size=(120, 3)) + np.eye(3)[y] * 2
    df = spark.createDataFrame(
        [(Vectors.dense(x.tolist()), float(c)) for x, c in zip(X, y, strict=True)],
        VECTORS,
    )
    model = LogisticRegression(featuresCol=FEATURES_COL, labelCol=LABEL_COL, maxIter=5).fit(df)
    norms = np.linalg.norm(model.coefficientMatrix.toArray(), axis=0)
    order = np.argsort(-norms, kind="stable")
    got = feature_importances(model, ["a", "b", "c"])
    assert got["kind"] == "coefficient_norm"
    assert got["names"] == [["a", "b", "c"][i] for i in order]
    np.testing.assert_allclose(got["values"], norms[order], rtol=1e-12)


def test_tree_importance_is_feature_importances(spark):
    rng = np.random.default_rng(6)
    X = rng.normal(size=(100, 2))
    y = (X[:, 1] > 0).astype(float)
    df = spark.createDataFrame(
        [(Vectors.dense(x.tolist()), float(c)) for x, c in zip(X, y, strict=True)],
        VECTORS,
    )
    model = RandomForestClassifier(
        featuresCol=FEATURES_COL, labelCol=LABEL_COL, numTrees=3, maxDepth=2, seed=1
    ).fit(df)
    expected = model.featureImportances.toArray()
    got = feature_importances(model, ["noise", "signal"])
    assert got["kind"] == "importance"
    assert got["names"][0] == "signal"
    assert dict(zip(got["names"], got["values"], strict=True)) == pytest.approx(
        {"noise": expected[0], "signal": expected[1]}
    )


def test_importances_need_one_name_per_feature(spark):
    df = spark.createDataFrame(
        [(Vectors.dense([0.0, 1.0]), 0.0), (Vectors.dense([1.0, 0.0]), 1.0)],
        VECTORS,
    )
    model = LogisticRegression(featuresCol=FEATURES_COL, labelCol=LABEL_COL, maxIter=2).fit(df)
    with pytest.raises(TrainingError, match="has 2 feature weights but 3 names"):
        feature_importances(model, ["a", "b", "c"])


# ---------------------------------------------------------------------------------- plots


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


CURVES = {
    "1": {
        "thresholds": [math.inf, 0.8, 0.5, 0.2],
        "fpr": [0.0, 0.1, 0.4, 1.0],
        "tpr": [0.0, 0.6, 0.9, 1.0],
        "precision": [math.nan, 0.9, 0.7, 0.5],
        "recall": [0.0, 0.6, 0.9, 1.0],
    }
}


def _line(ax, label: str):
    return next(line for line in ax.lines if line.get_label().startswith(label))


def test_roc_figure_draws_the_curve_points():
    fig = roc_figure(CURVES, {"1": 0.85})
    assert _png(fig).startswith(b"\x89PNG")
    ax = fig.axes[0]
    line = _line(ax, "1 (AUC 0.850)")
    np.testing.assert_array_equal(line.get_xdata(), CURVES["1"]["fpr"])
    np.testing.assert_array_equal(line.get_ydata(), CURVES["1"]["tpr"])
    np.testing.assert_array_equal(_line(ax, CHANCE_LABEL).get_xdata(), [0, 1])


def test_pr_figure_draws_recall_against_precision():
    fig = pr_figure(CURVES)
    assert _png(fig).startswith(b"\x89PNG")
    line = _line(fig.axes[0], "1")
    np.testing.assert_array_equal(line.get_xdata(), CURVES["1"]["recall"])
    np.testing.assert_array_equal(line.get_ydata(), CURVES["1"]["precision"])


def test_confusion_matrix_figure_shows_every_count():
    confusion = {"labels": ["cat", "dog"], "matrix": [[5, 2], [1, 7]]}
    fig = confusion_matrix_figure(confusion)
    assert _png(fig).startswith(b"\x89PNG")
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), confusion["matrix"])
    cells = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert cells == {((0, 0), "5"), ((1, 0), "2"), ((0, 1), "1"), ((1, 1), "7")}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]


def test_residuals_figure_draws_histogram_and_binned_means():
    curves = {
        "residual_edges": [-2.0, -1.0, 0.0, 1.0, 2.0],
        "residual_counts": [1, 4, 5, 2],
        "actual_edges": [0.0, 5.0, 10.0],
        "count": [3, 9],
        "actual_mean": [2.0, 7.5],
        "predicted_mean": [2.5, 7.0],
    }
    fig = residuals_figure(curves)
    assert _png(fig).startswith(b"\x89PNG")
    hist, scatter = fig.axes[:2]
    assert [p.get_height() for p in hist.patches] == curves["residual_counts"]
    assert [p.get_x() for p in hist.patches] == curves["residual_edges"][:-1]
    line = _line(scatter, "binned means")
    np.testing.assert_array_equal(line.get_xdata(), curves["actual_mean"])
    np.testing.assert_array_equal(line.get_ydata(), curves["predicted_mean"])


def test_importance_figure_shows_top_n_by_name_largest_on_top():
    importances = {
        "kind": "coefficient",
        "names": ["amount", "channel=web", "age", "x"],
        "values": [2.0, -1.5, 0.5, 0.1],
    }
    fig = feature_importance_figure(importances, top_n=3)
    assert _png(fig).startswith(b"\x89PNG")
    ax = fig.axes[0]
    bars = sorted(ax.patches, key=lambda p: -p.get_y())
    assert [p.get_width() for p in bars] == [2.0, -1.5, 0.5]
    labels = sorted(ax.get_yticklabels(), key=lambda t: -t.get_position()[1])
    assert [t.get_text() for t in labels] == ["amount", "channel=web", "age"]
