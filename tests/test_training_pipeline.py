"""The training pipeline: feature spec, feature stages, estimators, grids, split and fit.

Inputs are small training-set-shaped frames (label id, key, label_time, label, feature_time,
features, versions). Models are fitted with few iterations; where a test needs a known answer
the data is built so the answer is obvious (an exactly linear target, separable classes, a
grid point that cannot win).
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import Imputer, OneHotEncoder, StringIndexer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import DetectorConfig, SplitConfig, TrainConfig
from ml_engine.outliers import build_outlier_pipeline, with_outlier_flags
from ml_engine.session import JobCounter
from ml_engine.training import TrainingError
from ml_engine.training.pipeline import (
    FeatureSpec,
    TopCategoryIndexer,
    estimator,
    feature_spec,
    feature_stages,
    param_grid,
    tuning_metric,
)
from ml_engine.training.tuning import class_weights, fit, split, training_partitions

UTC = timezone.utc
INT = T.IntegerType()
T0 = datetime(2026, 1, 1, tzinfo=UTC)
IDS = ["tx_id", "customer"]


def schema(label_type: T.DataType = INT, **features: T.DataType) -> T.StructType:
    """A training set's schema: ids, times, label ``y``, the features, versions."""
    fields = [
        ("tx_id", T.StringType()),
        ("customer", T.StringType()),
        ("label_time", T.TimestampType()),
        ("y", label_type),
        ("feature_time", T.TimestampType()),
        *features.items(),
        ("features_version", T.LongType()),
        ("labels_version", T.LongType()),
    ]
    return T.StructType([T.StructField(n, t, True) for n, t in fields])


BASIC = schema(x1=T.DoubleType(), x2=T.IntegerType(), colour=T.StringType())
X1, X2, Y = 5, 6, 3  # positions in a row of training_rows
COLOURS = ["red", "green", "blue", None]


def training_rows(n: int = 200, seed: int = 0, label=None) -> list[tuple]:
    """Rows of :data:`BASIC` (x1 double with some nulls, x2 int, colour with nulls).

    Default label: 1 when ``x1 + 1.5 * [colour = red] + noise > 0.7``; ``label(x1, x2, colour,
    noise)`` replaces it.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        x1 = float(rng.normal())
        x2 = int(rng.integers(0, 5))
        colour = COLOURS[i % 4]
        noise = float(rng.normal()) * 0.3
        if label is None:
            y = int(x1 + 1.5 * (colour == "red") + noise > 0.7)
        else:
            y = label(x1, x2, colour, noise)
        t = T0 + timedelta(minutes=i)
        rows.append((f"t{i:04d}", f"c{i % 17}", t, y, t, x1 if i % 13 else None, x2, colour, 3, 2))
    return rows


def training_set(spark, n: int = 200, seed: int = 0, label=None, label_type=INT):
    """The rows of :func:`training_rows` as a DataFrame, the label of type ``label_type``."""
    struct = schema(label_type, x1=T.DoubleType(), x2=T.IntegerType(), colour=T.StringType())
    return spark.createDataFrame(training_rows(n, seed, label), struct)


def cfg_of(**kw) -> TrainConfig:
    return TrainConfig(**{"params": {"maxIter": 5}, **kw})


# ---------------------------------------------------------------------------------- spec


def test_spec_takes_numeric_and_string_columns_besides_ids_times_label_and_versions():
    wide = schema(
        amount=T.DoubleType(), n=T.IntegerType(), flag=T.BooleanType(), channel=T.StringType()
    )
    spec = feature_spec(wide, TrainConfig(), "y", IDS)
    assert spec == FeatureSpec(
        numeric=["amount", "n", "flag"],
        categorical=["channel"],
        label="y",
        task="classification",
        label_type="int",
    )


@pytest.mark.parametrize(
    ("label_type", "task"),
    [
        (T.StringType(), "classification"),
        (T.BooleanType(), "classification"),
        (T.LongType(), "classification"),
        (T.DoubleType(), "regression"),
        (T.FloatType(), "regression"),
        (T.DecimalType(10, 2), "regression"),
    ],
)
def test_auto_task_follows_the_label_type(label_type, task):
    assert feature_spec(schema(label_type, x=T.DoubleType()), TrainConfig(), "y", IDS).task == task


def test_listed_feature_missing_from_the_training_set_names_the_key():
    cfg = TrainConfig(numeric_features=["x1", "amonut"])
    with pytest.raises(TrainingError) as err:
        feature_spec(schema(x1=T.DoubleType(), amount=T.DoubleType()), cfg, "y", IDS)
    assert str(err.value).startswith(
        "train.numeric_features: column 'amonut' is not in the training set (did you mean 'amount'?)"
    )


def test_string_column_listed_as_numeric_names_the_key():
    cfg = TrainConfig(numeric_features=["colour"])
    with pytest.raises(
        TrainingError,
        match=r"^train.numeric_features: column 'colour' has type string, not numeric or boolean$",
    ):
        feature_spec(BASIC, cfg, "y", IDS)


def test_outlier_columns_are_not_default_features_when_the_detector_computes_them():
    struct = schema(x1=T.DoubleType(), is_outlier=T.BooleanType(), outlier_score=T.DoubleType())
    spec = feature_spec(struct, TrainConfig(outlier_features=True), "y", IDS)
    assert (spec.numeric, spec.categorical) == (["x1"], [])


HINT = (
    "the model's outputs take these names (prediction, probability, rawPrediction, "
    "predicted_label, score, score_<class>); rename the column in the schema file (a CSV file "
    "is read by position when its header differs from the schema only in renamed columns; "
    "a JSON key or Parquet column keeps its name as the column's input_name)"
)


def test_a_column_named_like_a_model_output_is_refused_before_the_fit(spark):
    with pytest.raises(TrainingError) as err:
        feature_spec(schema(x1=T.DoubleType(), score=T.DoubleType()), TrainConfig(), "y", IDS)
    assert str(err.value) == f"the training set has column(s) ['score']: {HINT}"
    from ml_engine.results import JobError
    from ml_engine.training.job import check_training_set

    df = spark.createDataFrame(
        [("low", 1.0, 2.0), ("high", 3.0, 4.0), ("mid", 5.0, 6.0)],
        "y string, score_high double, score_total double",
    )
    with pytest.raises(JobError) as err:
        check_training_set(df, "y", True, "/t")
    assert str(err.value) == (
        "train: the training set has column(s) ['score_high'], named like the probability of a "
        f"class of label 'y': {HINT}"
    )
    # no class named 'total': the same columns beside another label are fine
    assert check_training_set(df.where("y != 'high'"), "y", True, "/t") == {
        "rows": 2,
        "labelled": 2,
    }


def test_metric_of_the_other_task_names_train_metric():
    spec = feature_spec(schema(T.DoubleType(), x=T.DoubleType()), TrainConfig(), "y", IDS)
    with pytest.raises(TrainingError, match=r"^train.metric: auc_roc is not a regression metric"):
        tuning_metric(spec, TrainConfig(metric="auc_roc"))


# ---------------------------------------------------------------------------------- estimator


def test_unknown_grid_param_names_the_key_the_estimator_and_close_matches(spark):
    spec = feature_spec(BASIC, TrainConfig(), "y", IDS)
    est = estimator(spec, TrainConfig())
    with pytest.raises(TrainingError) as err:
        param_grid(est, {"regparam": [0.1, 1.0]})
    message = str(err.value)
    assert message.startswith(
        "train.grid.regparam: LogisticRegression has no parameter 'regparam'. "
        "Did you mean 'regParam'? Its parameters: "
    )
    assert "elasticNetParam" in message and "featuresCol" not in message


def test_unknown_fixed_param_names_train_params(spark):
    spec = feature_spec(BASIC, TrainConfig(), "y", IDS)
    with pytest.raises(
        TrainingError,
        match=r"^train.params.numTree: RandomForestClassifier has no parameter 'numTree'. Did you mean 'numTrees'",
    ):
        estimator(spec, TrainConfig(estimator="random_forest", params={"numTree": 5}))


def test_gbt_refuses_more_than_two_classes(spark):
    spec = feature_spec(BASIC, TrainConfig(), "y", IDS).with_classes(["a", "b", "c"])
    with pytest.raises(
        TrainingError, match=r"^train.estimator: gbt \(Spark's GBTClassifier\) is binary only"
    ):
        estimator(spec, TrainConfig(estimator="gbt"))


def test_xgboost_without_its_package_names_the_extra(spark, monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost.spark", None)
    spec = feature_spec(BASIC, TrainConfig(), "y", IDS)
    with pytest.raises(TrainingError, match=r"pip install 'ml-engine\[xgboost\]'"):
        estimator(spec, TrainConfig(estimator="xgboost"))


# About 15 s (Python workers for XGBoost's barrier fit and pandas UDF): run with make test-slow.
@pytest.mark.slow
def test_xgboost_classifier_learns_the_label_and_reports_gain_by_feature_name(spark):
    pytest.importorskip("xgboost.spark")
    from ml_engine.training.evaluation import feature_importances

    def red(x1, x2, colour, noise):
        return int(colour == "red")

    train = training_set(spark, n=60, label=red)
    cfg = TrainConfig(estimator="xgboost", params={"n_estimators": 3, "max_depth": 2})
    result = fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg)
    out = result.model.transform(train).select("tx_id", F.col("predicted_label").alias("y"))
    assert_df_equality(out, train.select("tx_id", "y"), ignore_row_order=True, ignore_nullable=True)
    importances = feature_importances(result.model, result.feature_names)
    assert (importances["kind"], importances["names"][0]) == ("gain", "colour=red")


def test_estimator_gets_the_seed_and_balanced_weights(spark):
    spec = feature_spec(BASIC, TrainConfig(), "y", IDS)
    est = estimator(spec, TrainConfig(estimator="random_forest", seed=7, class_weight="balanced"))
    assert (est.getSeed(), est.getWeightCol(), est.getLabelCol()) == (7, "__weight", "__label")


# ---------------------------------------------------------------------------------- stages


@pytest.fixture(scope="module")
def binary_fit(spark):
    """The default binary data, fitted once with balanced class weights."""
    train = training_set(spark)
    cfg = cfg_of(class_weight="balanced")
    return train, fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg, id_col="tx_id")


def test_null_and_unseen_categories_share_the_unknown_slot(spark, binary_fit):
    _, result = binary_fit
    score = spark.createDataFrame(
        [("u1", 0.5, 2, "purple"), ("u2", 0.5, 2, None), ("u3", 0.5, 2, "red")],
        "tx_id string, x1 double, x2 int, colour string",
    )
    out = result.model.transform(score).select(
        "tx_id", vector_to_array("__ohe__colour").alias("onehot")
    )
    # Categories in alphabetical order, then __unknown.
    expected = spark.createDataFrame(
        [("u1", [0.0, 0.0, 0.0, 1.0]), ("u2", [0.0, 0.0, 0.0, 1.0]), ("u3", [0.0, 0.0, 1.0, 0.0])],
        "tx_id string, onehot array<double>",
    )
    assert_df_equality(
        out, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True
    )


def test_null_and_unseen_categories_get_the_same_prediction(spark, binary_fit):
    _, result = binary_fit
    score = spark.createDataFrame(
        [("unseen", 0.5, 2, "purple"), ("null", 0.5, 2, None)],
        "tx_id string, x1 double, x2 int, colour string",
    )
    out = result.model.transform(score).select(
        "tx_id", vector_to_array("probability").alias("p"), "predicted_label"
    )
    assert_df_equality(
        out.where("tx_id = 'unseen'").drop("tx_id"), out.where("tx_id = 'null'").drop("tx_id")
    )


def test_numeric_nulls_are_imputed_with_the_training_median(spark, binary_fit):
    _, result = binary_fit
    rows = training_rows()
    x1 = np.array([r[X1] for r in rows if r[X1] is not None])
    x2 = np.array([r[X2] for r in rows], dtype=float)
    score = spark.createDataFrame(
        [("n1", None, None, "red")], "tx_id string, x1 double, x2 int, colour string"
    )
    row = result.model.transform(score).select("__imp__x1", "__imp__x2").first()
    # Spark's median is approxQuantile(0.5): an observed value, exact on small data.
    assert (row[0], row[1]) == (
        np.quantile(x1, 0.5, method="inverted_cdf"),
        np.quantile(x2, 0.5, method="inverted_cdf"),
    )


def test_max_categories_keeps_the_most_frequent_and_maps_the_rest_to_unknown(spark):
    df = spark.createDataFrame(
        [(v, 0) for v in ["a"] * 3 + ["b"] * 2 + ["c"] * 2 + ["d"]], "colour string, y int"
    )
    cfg = TrainConfig(max_categories=2)
    spec = feature_spec(df.schema, cfg, "y")
    out = Pipeline(stages=feature_stages(spec, cfg)).fit(df).transform(df)
    got = out.select("colour", F.col("__idx__colour").alias("index")).distinct()
    # a (3) wins; b and c tie (2) and the alphabetically first stays; index 2 is __unknown.
    # Kept categories are indexed by decreasing frequency (ties alphabetical).
    expected = spark.createDataFrame(
        [("a", 0.0), ("b", 1.0), ("c", 2.0), ("d", 2.0)], "colour string, index double"
    )
    assert_df_equality(
        got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True
    )


def test_columns_with_different_numbers_of_categories_keep_their_own(spark):
    # Two columns above the limit with 4 and 2 kept categories: no column is padded with
    # empty categories (Spark's from_arrays_of_labels would pad the shorter one with nulls).
    rows = [("a", "x"), ("a", "x"), ("b", "y"), ("c", "y"), ("d", "z"), ("e", "z")]
    df = spark.createDataFrame([(*r, 0) for r in rows], "p string, q string, y int")
    model = TopCategoryIndexer(inputCols=["p", "q"], outputCols=["ip", "iq"], maxCategories=4)
    fitted = model.fit(df)
    assert fitted.labelsArray == [["a", "b", "c", "d"], ["x", "y", "z"]]
    out = fitted.transform(df)
    vals = {c: out.schema[c].metadata["ml_attr"]["vals"] for c in ("ip", "iq")}
    assert vals == {"ip": ["a", "b", "c", "d", "__unknown"], "iq": ["x", "y", "z", "__unknown"]}
    assert [r.ip for r in out.orderBy("p").collect()] == [0.0, 0.0, 1.0, 2.0, 3.0, 4.0]


def test_top_category_indexer_saves_and_loads_with_its_params(spark, tmp_path):
    stage = TopCategoryIndexer(inputCols=["a", "b"], outputCols=["ia", "ib"], maxCategories=7)
    stage.write().save(str(tmp_path / "indexer"))
    loaded = TopCategoryIndexer.load(str(tmp_path / "indexer"))
    assert (loaded.getInputCols(), loaded.getOutputCols(), loaded.getMaxCategories()) == (
        ["a", "b"],
        ["ia", "ib"],
        7,
    )


def test_multiclass_string_labels_come_back_as_predicted_label(spark):
    def animal(x1, x2, colour, noise):
        return ["cat", "dog", "eel"][x2 % 3]

    train = training_set(spark, n=150, label=animal, label_type=T.StringType())
    # x2 one-hot encoded separates the classes exactly.
    cfg = cfg_of(params={"maxIter": 4}, numeric_features=[], categorical_features=["x2"])
    result = fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg)
    assert result.spec.classes == ["cat", "dog", "eel"]
    out = result.model.transform(train)
    assert_df_equality(
        out.select("tx_id", F.col("predicted_label").alias("y")),
        train.select("tx_id", "y"),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_regression_recovers_an_exactly_linear_target(spark):
    def linear(x1, x2, colour, noise):
        return 3.0 + 2.0 * x2 - 1.5 * (colour == "blue")

    train = training_set(spark, n=80, label=linear, label_type=T.DoubleType())
    # Without an intercept the one-hot colour slots (one per row) carry it: full rank, so the
    # normal equations solve the fit exactly.
    cfg = TrainConfig(params={"regParam": 0.0, "fitIntercept": False}, numeric_features=["x2"])
    result = fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg)
    # The model's ML attributes on prediction are not part of the comparison.
    out = result.model.transform(train).select("tx_id", F.col("prediction").alias("y", metadata={}))
    assert_approx_df_equality(
        out, train.select("tx_id", "y"), 1e-6, ignore_row_order=True, ignore_nullable=True
    )


@pytest.mark.parametrize("tuning", ["none", "train_validation_split"])
def test_a_forest_fitted_on_the_same_rows_in_any_order_and_partitioning_is_the_same(spark, tuning):
    # A random forest draws its bootstrap samples per partition, in row order: reproduce
    # rebuilds the same rows in another layout than the stored training set.
    train = training_set(spark, n=400, seed=3)
    cfg = TrainConfig(
        estimator="random_forest",
        params={"numTrees": 5, "maxDepth": 4, "subsamplingRate": 0.7},
        tuning={"method": tuning},
        **({"grid": {"maxDepth": [2, 4]}} if tuning != "none" else {}),
    )
    spec = feature_spec(train.schema, cfg, "y", IDS)
    layouts = [
        train.coalesce(1),
        train.orderBy(F.desc("tx_id")).repartition(3),
        train.repartition(5, "customer"),
    ]
    probabilities = [
        fit(df, spec, cfg, id_col="tx_id")
        .model.transform(train)
        .select("tx_id", vector_to_array("probability")[1].alias("p"))
        for df in layouts
    ]
    assert_df_equality(probabilities[0], probabilities[1], ignore_row_order=True)
    assert_df_equality(probabilities[0], probabilities[2], ignore_row_order=True)


@pytest.mark.parametrize(
    ("labelled", "setting", "expected"),
    [(1, None, 1), (100_000, None, 1), (100_001, None, 2), (1_000_000, None, 10), (10, 3, 3)],
)
def test_training_partitions_are_one_per_100k_labelled_rows_unless_set(labelled, setting, expected):
    assert training_partitions(TrainConfig(partitions=setting), labelled) == expected


def test_a_fit_lays_the_rows_out_in_the_partitions_it_is_given_whatever_the_session_says(spark):
    train = training_set(spark, n=400, seed=3)
    cfg = TrainConfig(estimator="random_forest", params={"numTrees": 3, "maxDepth": 3})
    spec = feature_spec(train.schema, cfg, "y", IDS)
    before = spark.conf.get("spark.sql.shuffle.partitions")
    results = []
    try:
        for session_partitions in ("2", "7"):
            spark.conf.set("spark.sql.shuffle.partitions", session_partitions)
            result = fit(train, spec, cfg, id_col="tx_id", partitions=3)
            p = result.model.transform(train).select(
                "tx_id", vector_to_array("probability")[1].alias("p")
            )
            results.append((result.partitions, p))
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)
    assert [n for n, _ in results] == [3, 3]
    assert_df_equality(results[0][1], results[1][1], ignore_row_order=True)


# ---------------------------------------------------------------------------------- weights


def test_balanced_class_weights_are_n_over_k_times_class_count(spark):
    labels = ["a"] * 6 + ["b"] * 3 + ["c"]
    df = spark.createDataFrame([(v,) for v in labels], "y string")
    counts = Counter(labels)
    n, k = len(labels), len(counts)
    assert class_weights(df, "y") == pytest.approx({c: n / (k * m) for c, m in counts.items()})


def test_fit_reports_balanced_weights_by_class_label(binary_fit):
    _, result = binary_fit
    y = np.array([r[Y] for r in training_rows()])
    expected = {str(c): len(y) / (2 * np.sum(y == c)) for c in (0, 1)}
    assert result.class_weights == pytest.approx(expected)


def test_positive_class_is_class_index_1_and_the_binary_metrics_are_about_it(spark):
    from ml_engine.training.evaluation import evaluate

    # "ja" is alphabetically first: without positive_class the metrics are about "nein"
    def ja_nein(x1, x2, colour, noise):
        return "ja" if x1 + 1.5 * (colour == "red") + noise > 0.7 else "nein"

    train = training_set(spark, label=ja_nein, label_type=T.StringType())
    default_cfg, ja_cfg = cfg_of(), cfg_of(positive_class="ja")
    default = fit(train, feature_spec(train.schema, default_cfg, "y", IDS), default_cfg)
    ja = fit(train, feature_spec(train.schema, ja_cfg, "y", IDS), ja_cfg)
    assert (default.spec.classes, ja.spec.classes) == (["ja", "nein"], ["nein", "ja"])

    out = ja.model.transform(train).select(
        "tx_id", "y", "predicted_label", vector_to_array("probability").alias("p")
    )
    rows = out.collect()
    y = np.array([r.y == "ja" for r in rows])
    hit = np.array([r.predicted_label == "ja" for r in rows])
    tp, fp, fn = np.sum(y & hit), np.sum(~y & hit), np.sum(y & ~hit)
    metrics = evaluate(ja.model.transform(train), ja.spec)
    assert (metrics["precision"], metrics["recall"]) == pytest.approx(
        (tp / (tp + fp), tp / (tp + fn))
    )
    # the same model up to the class order: P(ja) is the other's first probability
    others = {
        r.tx_id: r
        for r in default.model.transform(train)
        .select("tx_id", "predicted_label", vector_to_array("probability").alias("p"))
        .collect()
    }
    assert [r.predicted_label for r in rows] == [others[r.tx_id].predicted_label for r in rows]
    np.testing.assert_allclose(
        [r.p for r in rows], [others[r.tx_id].p[::-1] for r in rows], rtol=0, atol=1e-9
    )


@pytest.mark.parametrize(
    ("positive", "label", "message"),
    [
        ("yes", None, "train.positive_class 'yes' is not one of them: label 'y' has the classes "
         "['0', '1'] in the training split; set it to one of two classes, or remove it"),
        ("1", lambda x1, x2, colour, noise: x2 % 3, "train.positive_class '1' needs a label of "
         "two classes: label 'y' has the classes ['0', '1', '2'] in the training split"),
        (True, lambda x1, x2, colour, noise: "yes" if x1 > 0 else "no", "train.positive_class "
         "'true' is not one of them: label 'y' has the classes ['no', 'yes'] in the training "
         "split; set it to one of two classes, or remove it (YAML reads an unquoted yes, no, on "
         "or off as true or false: quote it)"),
    ],
)  # fmt: skip
def test_a_positive_class_that_is_not_one_of_two_classes_is_refused(
    spark, positive, label, message
):
    text = isinstance(positive, bool)
    train = training_set(spark, label=label, label_type=T.StringType() if text else INT)
    cfg = cfg_of(positive_class=positive)
    with pytest.raises(TrainingError) as err:
        fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg)
    assert str(err.value).startswith(message)


def test_a_positive_class_for_a_quantity_is_refused(spark):
    with pytest.raises(ValueError, match="positive_class names a class of a classification label"):
        TrainConfig(task="regression", positive_class="1")
    train = training_set(
        spark, label=lambda x1, x2, c, noise: x1 + noise, label_type=T.DoubleType()
    )
    cfg = cfg_of(positive_class=1)
    with pytest.raises(TrainingError, match=r"^train.positive_class is set, but label 'y' is a "):
        fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg)


# ---------------------------------------------------------------------------------- split


def test_random_split_is_the_same_on_every_run_and_partitioning(spark):
    df = training_set(spark, n=300)
    cfg = SplitConfig(test_fraction=0.25, seed=5)
    _, test_a, _ = split(df, cfg, "tx_id", "label_time")
    _, test_b, _ = split(df.repartition(7, "customer"), cfg, "tx_id", "label_time")
    _, test_c, _ = split(df.coalesce(1), cfg, "tx_id", "label_time")
    ids = [t.select("tx_id") for t in (test_a, test_b, test_c)]
    assert_df_equality(ids[0], ids[1], ignore_row_order=True)
    assert_df_equality(ids[0], ids[2], ignore_row_order=True)


def test_random_split_partitions_the_rows(spark):
    df = training_set(spark, n=300)
    train, test, info = split(df, SplitConfig(test_fraction=0.25), None, "label_time")
    assert_df_equality(train.unionByName(test), df, ignore_row_order=True)
    assert train.join(test, "tx_id", how="inner").isEmpty()
    assert 0.15 < test.count() / 300 < 0.35
    assert info["hashed_columns"] == df.columns[:-2]  # not the input versions


def test_time_split_boundary_is_the_quantile_rounded_down_to_the_second(spark):
    times = [T0 + timedelta(seconds=10.3 * i, microseconds=250) for i in range(100)]
    df = spark.createDataFrame(
        [(f"t{i}", t) for i, t in enumerate(times)], "tx_id string, label_time timestamp"
    )
    _, test, info = split(df, SplitConfig(method="time", test_fraction=0.2), "tx_id", "label_time")
    micros = np.array([int((t - T0) / timedelta(microseconds=1)) for t in times])
    q = int(np.quantile(micros, 0.8, method="inverted_cdf"))
    boundary = T0 + timedelta(seconds=q // 1_000_000)
    assert info["boundary"] == boundary.isoformat()
    expected = [(f"t{i}",) for i, t in enumerate(times) if t >= boundary]
    assert_df_equality(
        test.select("tx_id"), spark.createDataFrame(expected, "tx_id string"), ignore_row_order=True
    )


def test_time_split_uses_the_configured_boundary(spark):
    df = training_set(spark, n=30)
    cfg = SplitConfig(method="time", boundary="2026-01-01T00:20:00")
    train, test, info = split(df, cfg, "tx_id", "label_time")
    expected = [(f"t{i:04d}",) for i in range(20, 30)]
    assert_df_equality(
        test.select("tx_id"), spark.createDataFrame(expected, "tx_id string"), ignore_row_order=True
    )
    assert info == {
        "method": "time",
        "test_fraction": 0.2,
        "boundary": "2026-01-01T00:20:00",
        "boundary_source": "config",
    }


# ---------------------------------------------------------------------------------- tuning


def _outputs(stage) -> tuple[str, ...]:
    """The output column(s) a stage was given, () for an estimator without any."""
    for name in ("outputCols", "outputCol"):
        if stage.hasParam(name) and stage.isSet(name):
            value = stage.getOrDefault(name)
            return tuple(value) if isinstance(value, list) else (value,)
    return ()


SPIED = (StringIndexer, TopCategoryIndexer, Imputer, OneHotEncoder, LogisticRegression)


@pytest.fixture(scope="module")
def cv_fit(spark):
    """A 2 x 2 grid, 3 folds, metric log loss, with every fit of the spied stages counted.

    The grid point regParam=0, maxIter=1 must win: maxIter=0 keeps the initial, intercept-only
    model and regParam=100 shrinks the coefficients to nearly nothing.
    """
    fits: Counter = Counter()
    train = training_set(spark, n=180, seed=4)
    cfg = TrainConfig(
        grid={"regParam": [100.0, 0.0], "maxIter": [0, 1]},
        tuning={"method": "cross_validation", "folds": 3, "parallelism": 2},
        metric="log_loss",
    )
    with pytest.MonkeyPatch.context() as mp:
        for cls in SPIED:

            def spy(self, dataset, params=None, _real=cls.fit, _cls=cls):
                fits[(_cls.__name__, _outputs(self))] += 1
                return _real(self, dataset, params)

            mp.setattr(cls, "fit", spy)
        result = fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg, id_col="tx_id")
    return result, fits


def test_cross_validation_fits_the_feature_stages_once(cv_fit):
    _, fits = cv_fit
    assert fits == {
        ("StringIndexer", ("__label",)): 1,
        ("TopCategoryIndexer", ("__idx__colour",)): 1,
        ("StringIndexer", ("__idx__colour",)): 1,  # inside TopCategoryIndexer
        ("Imputer", ("__imp__x1", "__imp__x2")): 1,
        ("OneHotEncoder", ("__ohe__colour",)): 1,
        # 4 grid points x 3 folds, then the best point on all rows.
        ("LogisticRegression", ()): 13,
    }


def test_cross_validation_picks_the_best_grid_point(cv_fit):
    result, _ = cv_fit
    assert result.best_params == {"regParam": 0.0, "maxIter": 1}
    assert result.estimator_model.getMaxIter() == 1


def test_cross_validation_reports_each_fold(cv_fit):
    result, _ = cv_fit
    assert [p["params"] for p in result.grid] == [
        {"regParam": 100.0, "maxIter": 0},
        {"regParam": 100.0, "maxIter": 1},
        {"regParam": 0.0, "maxIter": 0},
        {"regParam": 0.0, "maxIter": 1},
    ]
    for point in result.grid:
        assert len(point["fold_metrics"]) == 3
        assert point["metric"] == pytest.approx(np.mean(point["fold_metrics"]), rel=1e-12)


def test_train_validation_split_picks_the_best_grid_point(spark):
    def linear(x1, x2, colour, noise):
        return 2.0 * x2 + noise

    train = training_set(spark, n=120, label=linear, label_type=T.DoubleType())
    cfg = TrainConfig(grid={"regParam": [1000.0, 0.0]}, tuning={"method": "train_validation_split"})
    result = fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg)
    assert (result.metric, result.best_params) == ("rmse", {"regParam": 0.0})
    assert [len(p["fold_metrics"]) for p in result.grid] == [1, 1]
    assert result.grid[1]["metric"] < result.grid[0]["metric"]


def test_spark_jobs_of_a_fit_do_not_grow_with_the_number_of_features(spark):
    """maxIter 0: L-BFGS's line search evaluates the loss a data-dependent number of times per
    iteration, so only a fit without iterations runs a number of estimator jobs (its summary
    and the initial loss) that is the same for any data."""
    counts = []
    for k in (5, 40):
        rng = np.random.default_rng(k)
        cols = [f"x{i}" for i in range(k)]
        rows = [
            (*map(float, rng.normal(size=k)), ["a", "b", None][i % 3], int(rng.integers(0, 2)))
            for i in range(40)
        ]
        df = spark.createDataFrame(
            rows, ", ".join(f"{c} double" for c in cols) + ", c string, y int"
        )
        cfg = TrainConfig(params={"maxIter": 0})
        spec = feature_spec(df.schema, cfg, "y")
        with JobCounter(spark) as jobs:
            fit(df, spec, cfg)
        counts.append(jobs.count)
    assert counts[0] == counts[1]


# ---------------------------------------------------------------------------------- outliers, save


@pytest.fixture(scope="module")
def outlier_fit(spark, tmp_path_factory):
    """A boolean label, the outlier detector as features, saved and loaded again."""

    def flag(x1, x2, colour, noise):
        return x1 + noise > 0

    train = training_set(spark, n=120, label=flag, label_type=T.BooleanType())
    detector = build_outlier_pipeline(
        [
            DetectorConfig(method="iqr", k=1.0, columns=["x1"]),
            DetectorConfig(method="zscore", threshold=1.0, columns=["x2"]),
        ],
        [],
    ).fit(train)
    cfg = cfg_of(outlier_features=True, params={"maxIter": 2})
    result = fit(train, feature_spec(train.schema, cfg, "y", IDS), cfg, outlier_model=detector)
    path = str(tmp_path_factory.mktemp("model") / "pipeline")
    result.model.write().save(path)
    return train, detector, result, PipelineModel.load(path)


def test_loaded_pipeline_with_outlier_stage_predicts_the_same_without_the_label(outlier_fit):
    train, _, result, loaded = outlier_fit
    scoring = train.drop("y")

    def predictions(model):
        return model.transform(scoring).select(
            "tx_id", vector_to_array("probability").alias("p"), "predicted_label"
        )

    assert_approx_df_equality(
        predictions(loaded), predictions(result.model), 1e-12, ignore_row_order=True
    )


def test_outlier_features_are_the_detector_flag_and_score(outlier_fit):
    train, detector, result, _ = outlier_fit
    got = result.model.transform(train).select(
        "tx_id",
        F.col("__num__is_outlier").alias("flag"),
        F.col("__num__outlier_score").alias("score"),
    )
    expected = with_outlier_flags(train, detector).select(
        "tx_id",
        F.col("is_outlier").cast("double").alias("flag"),
        F.col("outlier_score").alias("score"),
    )
    assert_df_equality(
        got, expected, ignore_row_order=True, ignore_nullable=True, ignore_metadata=True
    )
    assert result.feature_names[:4] == ["x1", "x2", "is_outlier", "outlier_score"]


def test_predicted_label_has_the_label_type(outlier_fit):
    train, _, result, _ = outlier_fit
    out = result.model.transform(train)
    assert out.schema["predicted_label"].dataType == T.BooleanType()
    assert result.spec.classes == ["false", "true"]
    assert result.spec.positive_class == "true"
