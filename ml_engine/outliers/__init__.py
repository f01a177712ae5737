"""Outlier detection: persistable MLlib stages and the ``detect_outliers`` job.

Detectors, each an ``Estimator``/``Model`` pair written like Spark's own stages, one module per
family:

* :mod:`~ml_engine.outliers.iqr`: :class:`IQROutlierDetector` -> :class:`IQROutlierModel`,
  Tukey fences ``Q1 - k*IQR`` and ``Q3 + k*IQR``.
* :mod:`~ml_engine.outliers.mad`: :class:`MADOutlierDetector` -> :class:`MADOutlierModel`,
  robust z-score ``0.6745 * (x - median) / MAD`` against ``threshold``.
* :mod:`~ml_engine.outliers.zscore`: :class:`ZScoreOutlierDetector` ->
  :class:`ZScoreOutlierModel`, ``(x - mean) / std`` against ``threshold``.
* :mod:`~ml_engine.outliers.mahalanobis`: :class:`MahalanobisOutlierDetector` ->
  :class:`MahalanobisOutlierModel`, the multivariate detector.

What they share (output columns, normalised scores, null and degenerate columns, fitting in a
number of Spark jobs that does not grow with the columns, learned state as JSON Params) is in
:mod:`~ml_engine.outliers.base`; a new detector is a module of its own plus its entry in
:data:`DETECTORS`. Combining fitted detectors into the job's policies is
:mod:`~ml_engine.outliers.policies`, the ``outlier_stats`` rows :mod:`~ml_engine.outliers.stats`
and the job with its saved model :mod:`~ml_engine.outliers.job`.

Example::

    model = IQROutlierDetector(inputCols=["amount"], k=3.0).fit(df)
    model.transform(df)   # + <uid>__output, <uid>__score, <uid>__reasons
"""

from ml_engine.outliers.base import (
    IS_OUTLIER,
    OUTLIER_COLUMNS,
    OUTLIER_FIELDS,
    OUTLIER_REASONS,
    OUTLIER_SCORE,
    ROBUST_Z_FACTOR,
    STAGE,
    OutlierFitError,
    OutlierModel,
    fit_detectors,
)
from ml_engine.outliers.iqr import IQROutlierDetector, IQROutlierModel
from ml_engine.outliers.job import (
    check_detector_columns,
    load_outlier_model,
    outlier_model_path,
    run_detect_outliers,
)
from ml_engine.outliers.mad import MADOutlierDetector, MADOutlierModel
from ml_engine.outliers.mahalanobis import MahalanobisOutlierDetector, MahalanobisOutlierModel
from ml_engine.outliers.policies import (
    DETECTORS,
    apply_outlier_policy,
    build_outlier_pipeline,
    detector_models,
    outlier_reason,
    split_outliers,
    with_capped_values,
    with_outlier_flags,
)
from ml_engine.outliers.stats import OUTLIER_STATS_SCHEMA, outlier_statistics
from ml_engine.outliers.zscore import ZScoreOutlierDetector, ZScoreOutlierModel

# Saved pipelines record each stage's class by its module (DefaultParamsWriter writes
# ``__module__``). The public path keeps saved detectors loadable whichever module defines
# the class, by this version and by older ones.
for _stage in (
    IQROutlierDetector,
    IQROutlierModel,
    MADOutlierDetector,
    MADOutlierModel,
    ZScoreOutlierDetector,
    ZScoreOutlierModel,
    MahalanobisOutlierDetector,
    MahalanobisOutlierModel,
):
    _stage.__module__ = __name__
del _stage

__all__ = [
    "DETECTORS",
    "IS_OUTLIER",
    "OUTLIER_COLUMNS",
    "OUTLIER_FIELDS",
    "OUTLIER_REASONS",
    "OUTLIER_SCORE",
    "OUTLIER_STATS_SCHEMA",
    "ROBUST_Z_FACTOR",
    "STAGE",
    "IQROutlierDetector",
    "IQROutlierModel",
    "MADOutlierDetector",
    "MADOutlierModel",
    "MahalanobisOutlierDetector",
    "MahalanobisOutlierModel",
    "OutlierFitError",
    "OutlierModel",
    "ZScoreOutlierDetector",
    "ZScoreOutlierModel",
    "apply_outlier_policy",
    "build_outlier_pipeline",
    "check_detector_columns",
    "detector_models",
    "fit_detectors",
    "load_outlier_model",
    "outlier_model_path",
    "outlier_reason",
    "outlier_statistics",
    "run_detect_outliers",
    "split_outliers",
    "with_capped_values",
    "with_outlier_flags",
]
