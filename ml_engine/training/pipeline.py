"""Feature spec, feature stages, estimator and parameter grid of a training run.

Everything scoring must repeat is an MLlib stage, so the fitted ``PipelineModel`` turns a raw
training-set-shaped DataFrame (or a features batch without the label) into predictions:

1. the fitted outlier detector's stages, when ``train.outlier_features`` is set;
2. one ``SQLTransformer``: numeric features cast to double (booleans become 0/1), categorical
   features cast to string, and, with the outlier detector, its ``is_outlier`` (0/1) and
   ``outlier_score`` computed as two more numeric features (the detector's own per-stage
   columns are dropped; a row no detector could score has a null score, imputed below);
3. ``Imputer`` (``train.impute``: mean or median) on all numeric features at once: null and NaN
   are missing;
4. :class:`TopCategoryIndexer` (a multi-column ``StringIndexer`` keeping the
   ``train.max_categories`` most frequent categories of each column, ties to the
   alphabetically first, indexed in alphabetical order) and a multi-column
   ``OneHotEncoder``, both ``handleInvalid="keep"``: null, a category never seen in training
   and a category beyond ``max_categories`` all share the column's ``__unknown`` slot, so
   scoring never fails on them;
5. ``VectorAssembler(handleInvalid="keep")`` and, with ``train.scaling``, ``StandardScaler``
   (unit variance, not centred, so sparse one-hot vectors stay sparse) or ``MinMaxScaler``;
6. classification only: the label as a ``StringIndexer`` in alphabetical order of the label's
   string form (``stringOrderType="alphabetAsc"``), so for 0/1, false/true and no/yes labels
   the positive class is index 1; a boolean label is first cast to string by
   :class:`CastIfPresent`. Scoring data without the label column passes through both.

After the estimator (see :func:`estimator`), :func:`label_decoder` adds ``predicted_label``:
the predicted class as a value of the label's own type.

Column names: the estimator reads :data:`FEATURES_COL` and :data:`LABEL_COL` (the class index,
or the label as double for regression) and writes :data:`PREDICTION_COL` (for classifiers the
class index as double), :data:`PROBABILITY_COL` and :data:`RAW_PREDICTION_COL` (vectors in
class-index order). Every other column the pipeline adds starts with ``__``.

Example::

    spec = feature_spec(training_set.schema, cfg.train, label="is_fraud", exclude=["customer_id"])
    stages = feature_stages(spec, cfg.train)
    est = estimator(spec, cfg.train)
    grid = param_grid(est, cfg.train.grid)
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pyspark import keyword_only
from pyspark.ml import Estimator, PipelineModel, Transformer
from pyspark.ml.feature import (
    Imputer,
    IndexToString,
    MinMaxScaler,
    OneHotEncoder,
    SQLTransformer,
    StandardScaler,
    StringIndexer,
    StringIndexerModel,
    VectorAssembler,
)
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasInputCols, HasOutputCol, HasOutputCols
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import CLASSIFICATION_METRICS, REGRESSION_METRICS, TrainConfig
from ml_engine.outliers import IS_OUTLIER, OUTLIER_REASONS, OUTLIER_SCORE, detector_models
from ml_engine.tables.base import quote_name
from ml_engine.training import (
    PREDICTED_LABEL_COL,
    PREDICTION_COL,
    PROBABILITY_COL,
    RAW_PREDICTION_COL,
    RESERVED_COLUMNS,
    TrainingError,
    reserved_column_hint,
)
from ml_engine.training_set import FEATURE_TIME, FEATURES_VERSION, LABEL_TIME, LABELS_VERSION

__all__ = [
    "FEATURES_COL",
    "LABEL_COL",
    "PREDICTED_LABEL_COL",
    "PREDICTION_COL",
    "PROBABILITY_COL",
    "RAW_PREDICTION_COL",
    "WEIGHT_COL",
    "CastIfPresent",
    "FeatureSpec",
    "TopCategoryIndexer",
    "TrainingError",
    "estimator",
    "estimator_name",
    "feature_spec",
    "feature_stages",
    "label_decoder",
    "param_grid",
    "set_params",
    "tuning_metric",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"

# The internal columns the fitted pipeline reads and writes (its public output columns are
# defined in ml_engine.training).
FEATURES_COL = "__features"
ASSEMBLED_COL = "__assembled"
LABEL_COL = "__label"
LABEL_STRING_COL = "__label_string"
WEIGHT_COL = "__weight"
FOLD_COL = "__fold"
NUM_PREFIX = "__num__"
STR_PREFIX = "__str__"
IMPUTED_PREFIX = "__imp__"
INDEX_PREFIX = "__idx__"
ONEHOT_PREFIX = "__ohe__"
UNKNOWN_CATEGORY = "__unknown"  # StringIndexer's name of the "keep" slot

# Training-set columns that are never features by default (see ml_engine.training_set).
TRAINING_SET_METADATA = (LABEL_TIME, FEATURE_TIME, FEATURES_VERSION, LABELS_VERSION)
# Estimator params that name the columns above: ml_engine sets them, a config may not.
RESERVED_PARAMS = (
    "featuresCol",
    "labelCol",
    "weightCol",
    "predictionCol",
    "probabilityCol",
    "rawPredictionCol",
    "features_cols",
)

ESTIMATOR_LABELS = {
    "logistic_regression": "LogisticRegression",
    "linear_regression": "LinearRegression",
    "random_forest": "RandomForest",
    "gbt": "GBT",
    "xgboost": "SparkXGB",
}

# A stage of a Pipeline (pyspark only names this type in its stubs).
PipelineStage = Estimator | Transformer

_CATEGORICAL_TYPES = (T.StringType, T.BooleanType, T.IntegralType)
_NUMERIC_TYPES = (T.NumericType, T.BooleanType)


# --------------------------------------------------------------------------- the spec


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """What a model learns from: feature columns, label and task.

    Attributes:
        numeric: numeric feature columns (booleans count as 0/1), in training-set order.
        categorical: categorical feature columns (string, boolean or integral), one-hot encoded.
        label: the label column.
        task: ``"classification"`` or ``"regression"``.
        label_type: the label's Spark type (``simpleString``: ``"int"``, ``"string"``...).
        classes: classification only, once the label indexer is fitted: the label values as
            strings in class-index order (alphabetical), e.g. ``["0", "1"]``; None before.
    """

    numeric: list[str]
    categorical: list[str]
    label: str
    task: str
    label_type: str
    classes: list[str] | None = None

    @property
    def is_classification(self) -> bool:
        """True for a classification task."""
        return self.task == CLASSIFICATION

    @property
    def is_binary(self) -> bool:
        """True for a classification task with exactly two classes (known after fitting)."""
        return self.is_classification and self.classes is not None and len(self.classes) == 2

    @property
    def positive_class(self) -> str | None:
        """The positive class of a binary task (class index 1), else None."""
        return self.classes[1] if self.is_binary else None

    def with_classes(self, classes: Sequence[str]) -> FeatureSpec:
        """A copy with ``classes`` set (the fitted label indexer's labels)."""
        return dataclasses.replace(self, classes=list(classes))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values, for logging on a run."""
        return {**dataclasses.asdict(self), "positive_class": self.positive_class}


def _type_name(dtype: T.DataType) -> str:
    return dtype.simpleString()


def _task(label_type: T.DataType, cfg: TrainConfig, label: str) -> str:
    if cfg.task == "auto":
        if isinstance(label_type, (T.StringType, T.BooleanType, T.IntegralType)):
            return CLASSIFICATION
        if isinstance(label_type, (T.FloatType, T.DoubleType, T.DecimalType)):
            return REGRESSION
        raise TrainingError(
            f"train.task: auto cannot tell the task from label '{label}' of type "
            f"{_type_name(label_type)}; set train.task to classification or regression"
        )
    if cfg.task == REGRESSION and not isinstance(label_type, T.NumericType):
        raise TrainingError(
            f"train.task: regression needs a numeric label, but '{label}' has type "
            f"{_type_name(label_type)}"
        )
    if cfg.task == CLASSIFICATION and not isinstance(
        label_type, (T.StringType, T.BooleanType, T.NumericType)
    ):
        raise TrainingError(
            f"train.task: classification needs a string, boolean or numeric label, but "
            f"'{label}' has type {_type_name(label_type)}"
        )
    return cfg.task


def feature_spec(
    schema: T.StructType, cfg: TrainConfig, label: str, exclude: Sequence[str] = ()
) -> FeatureSpec:
    """Decides the task and the feature columns from the training set's schema (no Spark job).

    ``train.task: auto`` is classification for a string, boolean or integral label and
    regression for a float, double or decimal label. Without ``train.numeric_features`` the
    numeric features are the numeric and boolean columns, without
    ``train.categorical_features`` the categorical ones are the string columns; both leave out
    the label, ``exclude``, the training set's ``label_time``, ``feature_time``,
    ``features_version`` and ``labels_version``, and with ``train.outlier_features`` the
    ``is_outlier``/``outlier_score``/``outlier_reasons`` columns (the detector computes them).

    Args:
        schema: the training set's schema.
        cfg: the ``train`` config section.
        label: the label column.
        exclude: columns that are never default features (label id, entity key).

    Returns:
        The spec; ``classes`` is None until the label indexer is fitted.

    Raises:
        TrainingError: the label or a listed feature is missing, a listed feature has a type
            that cannot be used that way, a column is listed twice or as the label, a column
            has the name of an output column, or no feature column is left.
    """
    fields = {f.name: f.dataType for f in schema.fields}
    if label not in fields:
        raise TrainingError(
            f"label column '{label}' is not in the training set (columns: {list(fields)}); "
            f"set training_set.label or the schema's label role"
        )
    task = _task(fields[label], cfg, label)
    clash = [c for c in RESERVED_COLUMNS if c in fields]
    if clash:
        raise TrainingError(f"the training set has column(s) {clash}: {reserved_column_hint()}")
    outlier_cols = (IS_OUTLIER, OUTLIER_SCORE, OUTLIER_REASONS) if cfg.outlier_features else ()
    skip = {label, *exclude, *TRAINING_SET_METADATA, *outlier_cols}

    def listed(key: str, columns: list[str], allowed: tuple[type, ...], what: str) -> list[str]:
        for c in columns:
            if c not in fields:
                close = difflib.get_close_matches(c, list(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise TrainingError(
                    f"train.{key}: column '{c}' is not in the training set{hint}; its columns: "
                    f"{list(fields)}"
                )
            if not isinstance(fields[c], allowed):
                raise TrainingError(
                    f"train.{key}: column '{c}' has type {_type_name(fields[c])}, not {what}"
                )
            if c == label:
                raise TrainingError(f"train.{key}: '{c}' is the label; it cannot be a feature")
            if c in outlier_cols[:2]:
                raise TrainingError(
                    f"train.{key}: '{c}' is computed by train.outlier_features; remove it from "
                    f"the list or set train.outlier_features: false"
                )
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise TrainingError(f"train.{key}: column(s) {repeated} are listed more than once")
        return list(columns)

    if cfg.numeric_features is not None:
        numeric = listed(
            "numeric_features", cfg.numeric_features, _NUMERIC_TYPES, "numeric or boolean"
        )
    else:
        numeric = [c for c, t in fields.items() if isinstance(t, _NUMERIC_TYPES) and c not in skip]
    if cfg.categorical_features is not None:
        categorical = listed(
            "categorical_features",
            cfg.categorical_features,
            _CATEGORICAL_TYPES,
            "string, boolean or integral (list other numeric columns in train.numeric_features)",
        )
    else:
        categorical = [
            c for c, t in fields.items() if isinstance(t, T.StringType) and c not in skip
        ]
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise TrainingError(
            f"train.numeric_features / train.categorical_features: column(s) {both} are in both"
        )
    if not numeric and not categorical and not cfg.outlier_features:
        raise TrainingError(
            "no feature columns: the training set has no numeric or string column besides the "
            "label and excluded ones; set train.numeric_features or train.categorical_features"
        )
    return FeatureSpec(
        numeric=numeric,
        categorical=categorical,
        label=label,
        task=task,
        label_type=_type_name(fields[label]),
    )


# --------------------------------------------------------------------------- custom stages


class _MaxCategoriesParams(Params):
    maxCategories: Param[int] = Param(
        Params._dummy(),
        "maxCategories",
        "how many of each column's most frequent categories get their own index (>= 1)",
        typeConverter=TypeConverters.toInt,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(maxCategories=50)

    def getMaxCategories(self) -> int:
        """Gets the value of maxCategories or its default value."""
        return self.getOrDefault(self.maxCategories)


class TopCategoryIndexer(
    Estimator,
    HasInputCols,
    HasOutputCols,
    _MaxCategoriesParams,
    DefaultParamsReadable,
    DefaultParamsWritable,
):
    """A multi-column ``StringIndexer`` that keeps each column's most frequent categories.

    Fitting runs ONE ``StringIndexer`` (``frequencyDesc``, all columns in one Spark job), keeps
    the ``maxCategories`` most frequent values of each column (equal counts: alphabetical), in
    that order, and returns Spark's own ``StringIndexerModel`` with ``handleInvalid="keep"``:
    null, unseen and dropped categories get index ``len(labels)``, whose ML attribute is named
    ``__unknown``. The fitted model is a plain Spark stage.
    """

    @keyword_only
    def __init__(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCols: list[str] | None = None,
        maxCategories: int = 50,
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCols: list[str] | None = None,
        outputCols: list[str] | None = None,
        maxCategories: int = 50,
    ) -> TopCategoryIndexer:
        """Sets params for this stage."""
        return self._set(**self._input_kwargs)

    def setMaxCategories(self, value: int) -> TopCategoryIndexer:
        """Sets the value of :py:attr:`maxCategories`."""
        return self._set(maxCategories=value)

    def _fit(self, dataset: DataFrame) -> StringIndexerModel:
        k = self.getMaxCategories()
        if k < 1:
            raise ValueError(f"TopCategoryIndexer: maxCategories must be >= 1, got {k}")
        inputs, outputs = self.getInputCols(), self.getOutputCols()
        counted = StringIndexer(
            inputCols=inputs,
            outputCols=outputs,
            handleInvalid="keep",
            stringOrderType="frequencyDesc",
        ).fit(dataset)
        labels = counted.labelsArray
        if all(len(col) <= k for col in labels):
            return counted
        return _indexer_model([col[:k] for col in labels], inputs, outputs)


def _indexer_model(
    labels: Sequence[Sequence[str]], inputs: list[str], outputs: list[str]
) -> StringIndexerModel:
    """A multi-column ``StringIndexerModel`` (``handleInvalid="keep"``) of these labels.

    ``StringIndexerModel.from_arrays_of_labels`` pads columns with fewer labels with nulls
    (it builds a rectangular Java array), which breaks the ML attributes; the model is built
    here from a ragged ``String[][]``.
    """
    from pyspark import SparkContext

    jvm = SparkContext._jvm
    gateway = SparkContext._gateway
    string_array = jvm.java.lang.Class.forName("[Ljava.lang.String;")
    ragged = jvm.java.lang.reflect.Array.newInstance(string_array, len(labels))
    for i, col in enumerate(labels):
        row = gateway.new_array(jvm.java.lang.String, len(col))
        for j, value in enumerate(col):
            row[j] = value
        ragged[i] = row
    uid = f"TopCategoryIndexer_{jvm.java.util.UUID.randomUUID().toString()[-12:]}"
    java_model = jvm.org.apache.spark.ml.feature.StringIndexerModel(uid, ragged)
    model = StringIndexerModel(java_model)
    return model.setInputCols(inputs).setOutputCols(outputs).setHandleInvalid("keep")


class _DataTypeParam(Params):
    dataType: Param[str] = Param(
        Params._dummy(),
        "dataType",
        "Spark SQL type name the column is cast to",
        typeConverter=TypeConverters.toString,
    )

    def getDataType(self) -> str:
        """Gets the value of dataType or its default value."""
        return self.getOrDefault(self.dataType)


class CastIfPresent(
    Transformer,
    HasInputCol,
    HasOutputCol,
    _DataTypeParam,
    DefaultParamsReadable,
    DefaultParamsWritable,
):
    """Adds ``outputCol`` = ``inputCol`` cast to ``dataType`` when ``inputCol`` exists.

    Scoring data has no label column: like Spark's ``StringIndexerModel``, this stage then
    passes the rows through unchanged, so a pipeline that indexes its label still scores.
    """

    @keyword_only
    def __init__(
        self,
        *,
        inputCol: str | None = None,
        outputCol: str | None = None,
        dataType: str | None = None,
    ):
        super().__init__()
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(
        self,
        *,
        inputCol: str | None = None,
        outputCol: str | None = None,
        dataType: str | None = None,
    ) -> CastIfPresent:
        """Sets params for this stage."""
        return self._set(**self._input_kwargs)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        name = self.getInputCol()
        if name not in dataset.columns:
            return dataset
        return dataset.withColumn(
            self.getOutputCol(), F.col(quote_name(name)).cast(self.getDataType())
        )


# --------------------------------------------------------------------------- feature stages


def feature_columns(spec: FeatureSpec, with_outliers: bool) -> tuple[list[str], list[str]]:
    """The numeric and categorical inputs of the feature stages (outlier features last)."""
    numeric = list(spec.numeric) + ([IS_OUTLIER, OUTLIER_SCORE] if with_outliers else [])
    return numeric, list(spec.categorical)


def _outlier_sql(outlier_model: PipelineModel) -> tuple[list[str], list[str]]:
    """(columns to drop, SQL expressions of ``__num__is_outlier``/``__num__outlier_score``)."""
    try:
        models = detector_models(outlier_model)
    except ValueError as exc:
        raise TrainingError(f"train.outlier_features: {exc}") from None
    reasons = ", ".join(quote_name(m.getReasonsCol()) for m in models)
    scores = [quote_name(m.getScoreCol()) for m in models]
    score = scores[0] if len(scores) == 1 else f"greatest({', '.join(scores)})"
    drop = [c for m in models for c in (m.getOutputCol(), m.getScoreCol(), m.getReasonsCol())]
    exprs = [
        f"CAST(size(array_distinct(concat({reasons}))) > 0 AS DOUBLE) AS "
        f"{quote_name(NUM_PREFIX + IS_OUTLIER)}",
        f"CAST({score} AS DOUBLE) AS {quote_name(NUM_PREFIX + OUTLIER_SCORE)}",
    ]
    return drop, exprs


def feature_stages(
    spec: FeatureSpec, cfg: TrainConfig, outlier_model: PipelineModel | None = None
) -> list[PipelineStage]:
    """The stages that turn training-set rows into the estimator's input (module docstring).

    Every stage is multi-column: fitting them runs a fixed number of Spark jobs (the label
    indexer, the category indexer, the imputer, a scaler: one each) whatever the number of
    feature columns.

    Args:
        spec: the feature spec (:func:`feature_spec`).
        cfg: the ``train`` config section (``impute``, ``scaling``, ``max_categories``,
            ``outlier_features``).
        outlier_model: the fitted detector pipeline saved by ``detect_outliers``
            (``ml_engine.outliers.load_outlier_model``); required when
            ``train.outlier_features`` is set, ignored otherwise.

    Returns:
        Unfitted and fitted stages for one ``Pipeline``; its output has
        :data:`FEATURES_COL` and, for classification when the label is present,
        :data:`LABEL_COL`.

    Raises:
        TrainingError: ``train.outlier_features`` is set without a detector model, or the
            model is not a detector pipeline.
    """
    with_outliers = cfg.outlier_features
    if with_outliers and outlier_model is None:
        raise TrainingError(
            "train.outlier_features is set but no outlier model was given; run detect_outliers "
            "(outliers.refit: true) first or set train.outlier_features: false"
        )
    numeric, categorical = feature_columns(spec, with_outliers)
    stages: list[PipelineStage] = []
    drop: list[str] = []
    exprs = [
        f"CAST({quote_name(c)} AS DOUBLE) AS {quote_name(NUM_PREFIX + c)}" for c in spec.numeric
    ]
    if with_outliers:
        stages += list(outlier_model.stages)
        drop, outlier_exprs = _outlier_sql(outlier_model)
        exprs += outlier_exprs
    exprs += [
        f"CAST({quote_name(c)} AS STRING) AS {quote_name(STR_PREFIX + c)}" for c in categorical
    ]
    if exprs:
        star = f"* EXCEPT ({', '.join(quote_name(c) for c in drop)})" if drop else "*"
        stages.append(SQLTransformer(statement=f"SELECT {star}, {', '.join(exprs)} FROM __THIS__"))

    assembled: list[str] = []
    if numeric:
        imputed = [IMPUTED_PREFIX + c for c in numeric]
        stages.append(
            Imputer(
                inputCols=[NUM_PREFIX + c for c in numeric],
                outputCols=imputed,
                strategy=cfg.impute,
            )
        )
        assembled += imputed
    if categorical:
        encoded = [ONEHOT_PREFIX + c for c in categorical]
        stages.append(
            TopCategoryIndexer(
                inputCols=[STR_PREFIX + c for c in categorical],
                outputCols=[INDEX_PREFIX + c for c in categorical],
                maxCategories=cfg.max_categories,
            )
        )
        stages.append(
            OneHotEncoder(
                inputCols=[INDEX_PREFIX + c for c in categorical],
                outputCols=encoded,
                handleInvalid="keep",
            )
        )
        assembled += encoded
    scaled = cfg.scaling != "none"
    stages.append(
        VectorAssembler(
            inputCols=assembled,
            outputCol=ASSEMBLED_COL if scaled else FEATURES_COL,
            handleInvalid="keep",
        )
    )
    if cfg.scaling == "standard":
        stages.append(
            StandardScaler(
                inputCol=ASSEMBLED_COL, outputCol=FEATURES_COL, withMean=False, withStd=True
            )
        )
    elif cfg.scaling == "minmax":
        stages.append(MinMaxScaler(inputCol=ASSEMBLED_COL, outputCol=FEATURES_COL))
    if spec.is_classification:
        label_in = spec.label
        if spec.label_type == "boolean":
            stages.append(
                CastIfPresent(inputCol=spec.label, outputCol=LABEL_STRING_COL, dataType="string")
            )
            label_in = LABEL_STRING_COL
        stages.append(
            StringIndexer(
                inputCol=label_in,
                outputCol=LABEL_COL,
                stringOrderType="alphabetAsc",
                handleInvalid="keep",
            )
        )
    return stages


def label_decoder(spec: FeatureSpec) -> list[Transformer]:
    """Stages after the estimator that add ``predicted_label`` (classification only).

    ``IndexToString`` maps the predicted class index to its label string; for a label that is
    not a string, a ``SQLTransformer`` casts it back to the label's type, so
    ``predicted_label`` compares with the label column directly.

    Raises:
        TrainingError: ``spec.classes`` is not known yet (fit the label indexer first).
    """
    if not spec.is_classification:
        return []
    if not spec.classes:
        raise TrainingError("label_decoder: the spec has no classes; fit the feature stages first")
    if spec.label_type == "string":
        return [
            IndexToString(
                inputCol=PREDICTION_COL, outputCol=PREDICTED_LABEL_COL, labels=spec.classes
            )
        ]
    text = "__predicted_label_string"
    return [
        IndexToString(inputCol=PREDICTION_COL, outputCol=text, labels=spec.classes),
        SQLTransformer(
            statement=f"SELECT * EXCEPT ({quote_name(text)}), CAST({quote_name(text)} AS "
            f"{spec.label_type}) AS {quote_name(PREDICTED_LABEL_COL)} FROM __THIS__"
        ),
    ]


# --------------------------------------------------------------------------- estimators


def estimator_name(spec: FeatureSpec, cfg: TrainConfig) -> str:
    """``train.estimator`` with ``auto`` resolved (logistic or linear regression).

    Raises:
        TrainingError: the estimator does not serve the task.
    """
    name = cfg.estimator
    if name == "auto":
        return "logistic_regression" if spec.is_classification else "linear_regression"
    if name == "logistic_regression" and not spec.is_classification:
        raise TrainingError(
            "train.estimator: logistic_regression is a classifier but the task is regression; "
            "use linear_regression, random_forest, gbt or xgboost"
        )
    if name == "linear_regression" and spec.is_classification:
        raise TrainingError(
            "train.estimator: linear_regression is a regressor but the task is classification; "
            "use logistic_regression, random_forest, gbt or xgboost"
        )
    return name


def _xgboost_classes():
    try:
        from xgboost.spark import SparkXGBClassifier, SparkXGBRegressor
    except ImportError as exc:
        raise TrainingError(
            "train.estimator: xgboost needs the xgboost package with its Spark estimators "
            "(xgboost.spark), which is not installed: pip install 'ml-engine[xgboost]' "
            f"({exc})"
        ) from None
    return SparkXGBClassifier, SparkXGBRegressor


def _new_estimator(name: str, classification: bool) -> Estimator:
    from pyspark.ml import classification as C
    from pyspark.ml import regression as R

    if name == "xgboost":
        clf, reg = _xgboost_classes()
        return clf() if classification else reg()
    classes = {
        "logistic_regression": (C.LogisticRegression, None),
        "linear_regression": (None, R.LinearRegression),
        "random_forest": (C.RandomForestClassifier, R.RandomForestRegressor),
        "gbt": (C.GBTClassifier, R.GBTRegressor),
    }[name]
    return classes[0 if classification else 1]()


def _param(est: Params, name: str, key: str) -> Param:
    """``est``'s param ``name``, or a TrainingError naming ``key`` and the valid names."""
    valid = sorted(p.name for p in est.params if p.name not in RESERVED_PARAMS)
    if name in RESERVED_PARAMS:
        raise TrainingError(
            f"{key}: {type(est).__name__}.{name} names a column that ml_engine sets itself; "
            f"remove it from the config"
        )
    if not est.hasParam(name):
        close = difflib.get_close_matches(name, valid, n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise TrainingError(
            f"{key}: {type(est).__name__} has no parameter '{name}'.{hint} Its parameters: "
            f"{', '.join(valid)}"
        )
    return est.getParam(name)


def _converted(param: Param, value: Any, key: str, est: Params) -> Any:
    try:
        return param.typeConverter(value)
    except (TypeError, ValueError) as exc:
        raise TrainingError(
            f"{key}: {value!r} is not a valid value of {type(est).__name__}.{param.name} "
            f"({param.doc}): {exc}"
        ) from None


def set_params(est: Estimator, params: Mapping[str, Any], key: str = "train.params") -> Estimator:
    """Sets fixed estimator parameters by their Spark (or XGBoost) names.

    Args:
        est: the estimator.
        params: parameter name -> value.
        key: config key prefix used in errors.

    Returns:
        ``est``, changed in place.

    Raises:
        TrainingError: naming ``<key>.<name>``: an unknown name (with close matches and the
            valid names), a column param ml_engine sets itself, or a value of the wrong type.
    """
    for name, value in params.items():
        param = _param(est, name, f"{key}.{name}")
        est.set(param, _converted(param, value, f"{key}.{name}", est))
    return est


def estimator(
    spec: FeatureSpec, cfg: TrainConfig, params: Mapping[str, Any] | None = None
) -> Estimator:
    """The configured estimator, reading :data:`FEATURES_COL` and :data:`LABEL_COL`.

    ``train.seed`` is set where the estimator has a seed (``seed``; XGBoost's
    ``random_state``); with ``train.class_weight: balanced`` it reads :data:`WEIGHT_COL`
    (:func:`ml_engine.training.tuning.fit` adds that column).

    Args:
        spec: the feature spec; with ``classes`` known, a multiclass ``gbt`` is refused.
        cfg: the ``train`` config section.
        params: fixed parameters (default ``cfg.params``).

    Raises:
        TrainingError: the estimator does not serve the task, ``gbt`` with more than two
            classes, xgboost is not installed, ``class_weight`` on a regression, or a bad
            parameter (see :func:`set_params`).
    """
    name = estimator_name(spec, cfg)
    classification = spec.is_classification
    if name == "gbt" and classification and spec.classes is not None and len(spec.classes) > 2:
        raise TrainingError(
            f"train.estimator: gbt (Spark's GBTClassifier) is binary only, but the label "
            f"'{spec.label}' has {len(spec.classes)} classes {spec.classes}; use random_forest, "
            f"xgboost or logistic_regression"
        )
    if cfg.class_weight == "balanced" and not classification:
        raise TrainingError(
            "train.class_weight: balanced weighs classes, but the task is regression; "
            "set it to none"
        )
    est = _new_estimator(name, classification)
    cols = {"featuresCol": FEATURES_COL, "labelCol": LABEL_COL, "predictionCol": PREDICTION_COL}
    if classification:
        cols |= {"probabilityCol": PROBABILITY_COL, "rawPredictionCol": RAW_PREDICTION_COL}
        if cfg.class_weight == "balanced":
            cols["weightCol"] = WEIGHT_COL
    for pname, value in cols.items():
        est.set(est.getParam(pname), value)
    for seed in ("seed", "random_state"):
        if est.hasParam(seed):
            est.set(est.getParam(seed), cfg.seed)
    return set_params(est, cfg.params if params is None else params)


def param_grid(est: Estimator, grid: Mapping[str, Sequence[Any]]) -> list[dict[Param, Any]]:
    """The parameter maps of ``train.grid`` (the cartesian product of the value lists).

    Args:
        est: the estimator (:func:`estimator`).
        grid: parameter name -> values to try.

    Returns:
        One ``ParamMap`` per grid point, in the order of ``ParamGridBuilder`` (empty grid: one
        empty map).

    Raises:
        TrainingError: naming ``train.grid.<name>``: an unknown name (with close matches and
            the valid names), a column param or a value of the wrong type.
    """
    from pyspark.ml.tuning import ParamGridBuilder

    builder = ParamGridBuilder()
    for name, values in grid.items():
        key = f"train.grid.{name}"
        param = _param(est, name, key)
        builder.addGrid(param, [_converted(param, v, key, est) for v in values])
    return builder.build()


def tuning_metric(spec: FeatureSpec, cfg: TrainConfig) -> str:
    """``train.metric``, or its default: ``auc_roc`` (binary), ``f1`` (multiclass), ``rmse``.

    Raises:
        TrainingError: the metric belongs to the other task.
    """
    if cfg.metric is None:
        if not spec.is_classification:
            return "rmse"
        return "f1" if spec.classes is not None and len(spec.classes) > 2 else "auc_roc"
    allowed = CLASSIFICATION_METRICS if spec.is_classification else REGRESSION_METRICS
    if cfg.metric not in allowed:
        raise TrainingError(
            f"train.metric: {cfg.metric} is not a {spec.task} metric; use one of {sorted(allowed)}"
        )
    return cfg.metric
