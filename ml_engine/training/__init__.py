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


__all__ = ["TrainingError"]
