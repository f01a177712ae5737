"""The training library: feature pipeline, estimators, tuning, evaluation and plots.

A pure library (the ``train`` job, MLflow logging, registry and gate are built on top of it):

* :mod:`ml_engine.training.pipeline` — :class:`~ml_engine.training.pipeline.FeatureSpec`
  (which columns, which task), the feature stages that scoring repeats, the estimator and its
  parameter grid, all from the ``train`` config section;
* :mod:`ml_engine.training.tuning` — the train/test split, class weights and
  :func:`~ml_engine.training.tuning.fit` (feature stages fitted once, the estimator tuned by
  cross validation or a train/validation split);
* :mod:`ml_engine.training.evaluation` — held-out metrics and the small aggregates behind
  curves, confusion matrices, residuals and feature importances;
* :mod:`ml_engine.training.plots` — matplotlib figures of those aggregates.

Importing this package starts nothing (no Spark session, no JVM); the submodules import
PySpark's ML classes when they are imported themselves.
"""

from __future__ import annotations


class TrainingError(ValueError):
    """Training cannot go ahead as configured; the message names the config key and column."""


# The columns a fitted model adds to the rows it scores, and the name the drift report gives
# the positive class's probability (``score_<class>`` for each class of a multiclass model):
# no column of the data a model is trained on may have one of these names.
PREDICTION_COL = "prediction"
PROBABILITY_COL = "probability"
RAW_PREDICTION_COL = "rawPrediction"
PREDICTED_LABEL_COL = "predicted_label"
SCORE_COL = "score"
OUTPUT_COLUMNS = (PREDICTION_COL, PROBABILITY_COL, RAW_PREDICTION_COL, PREDICTED_LABEL_COL)
RESERVED_COLUMNS = (*OUTPUT_COLUMNS, SCORE_COL)


def reserved_column_hint() -> str:
    """What to do about a data column named like a model output, for error messages."""
    names = ", ".join([*RESERVED_COLUMNS, f"{SCORE_COL}_<class>"])
    return (
        f"the model's outputs take these names ({names}); rename the column in the schema "
        "file (a CSV file is read by position when its header differs from the schema only "
        "in renamed columns; a JSON key or Parquet column keeps its name as the column's "
        "input_name)"
    )


__all__ = [
    "OUTPUT_COLUMNS",
    "PREDICTED_LABEL_COL",
    "PREDICTION_COL",
    "PROBABILITY_COL",
    "RAW_PREDICTION_COL",
    "RESERVED_COLUMNS",
    "SCORE_COL",
    "TrainingError",
    "reserved_column_hint",
]
