"""Drift: reference profiles, statistical tests, drift verdicts and the HTML report.

* :mod:`ml_engine.drift.profile` - :func:`profile_dataframe` summarises any number of columns
  in ONE Spark aggregation into a small, storable :class:`DatasetProfile` (KLL sketches,
  quantile bins, moments, category counts); :func:`profile_groups` does the same per group;
* :mod:`ml_engine.drift.stats` - :func:`compare` computes PSI, Kolmogorov-Smirnov,
  Wasserstein, chi-square and Jensen-Shannon from two profiles on the driver and gives each
  feature and the data set a verdict;
* :mod:`ml_engine.drift.report` - :func:`render_report` writes a self-contained HTML report.

Importing this package starts no Spark session.
"""

from ml_engine.drift.profile import (
    CategoricalProfile,
    DatasetProfile,
    NumericProfile,
    profile_dataframe,
    profile_groups,
)
from ml_engine.drift.report import render_report
from ml_engine.drift.stats import DriftResult, FeatureDrift, Metric, compare

__all__ = [
    "CategoricalProfile",
    "DatasetProfile",
    "DriftResult",
    "FeatureDrift",
    "Metric",
    "NumericProfile",
    "compare",
    "profile_dataframe",
    "profile_groups",
    "render_report",
]
