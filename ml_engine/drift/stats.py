"""Drift statistics between a reference profile and a batch profile, on the driver.

Nothing here touches Spark: every value comes from two :class:`DatasetProfile`s.

Numeric features (values and bins as :mod:`ml_engine.drift.profile` defines them):

* ``psi``: population stability index over the reference's quantile bins,
  ``sum((c_i - r_i) * ln(c_i / r_i))`` where ``r_i``/``c_i`` are the reference/batch shares per
  bin, each floored at ``EPSILON = 1e-4`` (an empty bin counts as 0.01 %) and NOT renormalised
  afterwards (every term is >= 0 on its own, so PSI stays >= 0 and 0 for equal shares).
* ``ks_statistic``: Kolmogorov-Smirnov ``sup |F_ref(x) - F_cur(x)|``, the CDFs (``P(X <= x)``)
  evaluated at every value either sketch retains; ``ks_p_value``: two-sided, as
  ``scipy.stats.ks_2samp(method="asymp")`` computes it, the Kolmogorov distribution of
  ``N = round(n * m / (n + m))`` values, ``scipy.stats.kstwo.sf(D, N)`` (``N`` at least 1),
  with ``n``, ``m`` the value counts, up to ``N = KS_EXACT_MAX_N`` (10,000). Above it, the
  limiting distribution ``scipy.stats.kstwobign.sf(D * sqrt(N))``: ``kstwo.sf`` takes up to
  2 s per feature at ``N = 500,000`` (a million rows each side) and the two differ by less
  than 0.003 in absolute p-value from ``N = 10,000`` on, shrinking like ``1 / sqrt(N)``.
  The p-value is that of ``D`` less the sketches' rank error (:func:`sketch_rank_error`; 0
  while a sketch holds every value): at a million rows a sketch's CDF may be off by about
  0.001, which alone would make identical distributions "significant", so the test only
  counts the part of ``D`` the sketches cannot explain. ``ks_statistic`` stays ``D``.
* ``wasserstein_norm``: Wasserstein-1 distance, the integral of ``|F_ref - F_cur|`` between
  the retained values, divided by the reference's standard deviation. A reference of one
  value (std 0 or undefined) gives 0 when the batch holds that value only, else infinity.

All three are exact when both sketches are exact (at most ``sketch_k`` values each). Otherwise
PSI's shares and KS's CDFs are within the sketches' rank error, but the distance is only within
that error times the range of the values: it integrates the CDFs' error over the range, so on
a heavy tail it moves with the weight a compacted sketch happens to keep for the few largest
values (a test shows it on the sample data's amounts). PSI, which uses ranks only, is the
stable part of the verdict there.

Categorical features: the bins are the categories whose count is known on both sides (listed
in both, or listed in one and absent from the other's complete listing), categories of the
batch that the reference's complete listing lacks (``new``), and one ``other`` bin for all that
is not listed on one side. Shares are of the non-null values.

* ``psi``: as above over those bins (a new category's reference share is the epsilon).
* ``chi2_p_value``: Pearson's chi-square test of homogeneity on the 2 x K table of counts,
  without Yates' correction (``scipy.stats.chi2_contingency(table, correction=False)``).
* ``js_distance``: Jensen-Shannon distance of the shares, base 2 (0 to 1,
  ``scipy.spatial.distance.jensenshannon``).

PSI is biased upwards on small samples: two samples of one distribution give about
``(K - 1) * (1/n + 1/m)`` over K bins, so a categorical feature with hundreds of categories
and a few thousand rows can reach ``psi_drift`` without any drift (its chi-square p-value,
which accounts for the sample sizes, does not fall); profile such columns with a smaller
``top_k`` or compare larger batches.

Both kinds also report ``null_share`` (the batch's share of null or NaN values) and ``rows``
(the batch's rows), without a threshold, and ``null_share_change``: the batch's null share less
the reference's, which drifts when its size reaches ``null_share`` (values that stop coming, or
start to, whatever the distribution of the values that still come). A feature with no values
in the batch is then ``drift``, not ``no_data``.

Verdict per feature (:class:`DriftThresholds`): ``drift`` when ``psi >= psi_drift``, or the
p-value is below ``p_value`` AND the distance (``wasserstein_norm`` or ``js_distance``) reaches
``distance``, or the null share changed by ``null_share`` or more; else ``warn`` when
``psi >= psi_warn`` or the p-value alone is below ``p_value``; else ``ok``. Features that
cannot be compared: ``no_data`` (the batch has no rows, or no values of the feature while the
reference had about as few), ``missing`` (the batch's profile lacks the feature), ``no_reference`` (the
reference lacks it, has no values of it, or profiles it as the other kind). A metric's own
``drifted`` says that it crossed its threshold (PSI: ``psi_drift``).

The data set drifts when at least ``drift_share`` of the compared features (status ``ok``,
``warn`` or ``drift``) drift.

Example::

    result = compare(reference, current, cfg.drift.thresholds, cfg.drift.drift_share)
    result.drifted, [(f.feature, f.status) for f in result.features]
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, kstwo, kstwobign

from ml_engine.config import DriftThresholds
from ml_engine.drift.profile import (
    CategoricalProfile,
    DatasetProfile,
    NumericProfile,
    bin_fractions,
)

EPSILON = 1e-4
# Largest N = round(n * m / (n + m)) whose KS p-value is scipy's kstwo (exact); above it the
# limiting Kolmogorov distribution (module doc).
KS_EXACT_MAX_N = 10_000

OK = "ok"
WARN = "warn"
DRIFT = "drift"
NO_DATA = "no_data"
MISSING = "missing"
NO_REFERENCE = "no_reference"
COMPARED = (OK, WARN, DRIFT)
# Sorting order: the integer part of a feature's severity.
STATUS_RANK = {DRIFT: 3, WARN: 2, MISSING: 1, NO_DATA: 1, NO_REFERENCE: 1, OK: 0}

PSI = "psi"
KS_STATISTIC = "ks_statistic"
KS_P_VALUE = "ks_p_value"
WASSERSTEIN_NORM = "wasserstein_norm"
CHI2_P_VALUE = "chi2_p_value"
JS_DISTANCE = "js_distance"
NULL_SHARE = "null_share"
NULL_SHARE_CHANGE = "null_share_change"
ROWS = "rows"

# Bin kinds: a numeric range, a category of both sides, a category the reference never had,
# and everything a side did not list.
RANGE = "range"
CATEGORY = "category"
NEW = "new"
OTHER = "other"


@dataclass(frozen=True)
class Metric:
    """One statistic of one feature; ``threshold``/``drifted`` are None when it has no verdict."""

    name: str
    value: float | None
    threshold: float | None = None
    drifted: bool | None = None


@dataclass(frozen=True)
class Bin:
    """One bin of a feature's distribution: its label, kind and the share of each side."""

    label: str
    kind: str
    reference: float
    current: float


@dataclass(frozen=True)
class FeatureDrift:
    """The drift of one feature.

    Attributes:
        feature: the column name.
        kind: ``numeric``, ``categorical``, or ``unknown`` when neither profile has it.
        status: ``ok``, ``warn``, ``drift``, ``no_data``, ``missing`` or ``no_reference``.
        severity: sorts features, most severe first: the status rank (drift 3, warn 2,
            not comparable 1, ok 0) plus a fraction below 1 that grows with the largest of
            ``psi / psi_drift`` and ``distance / distance threshold``.
        metrics: the statistics (names as in the module docstring).
        bins: both distributions on common bins (reference bins for numeric features).
        note: why a feature could not be compared, and new categories.
    """

    feature: str
    kind: str
    status: str
    severity: float
    metrics: tuple[Metric, ...]
    bins: tuple[Bin, ...] = ()
    note: str = ""

    def metric(self, name: str) -> Metric | None:
        """The metric called ``name``, or None."""
        return next((m for m in self.metrics if m.name == name), None)

    def value(self, name: str) -> float | None:
        """The value of the metric called ``name``, or None."""
        m = self.metric(name)
        return None if m is None else m.value

    @property
    def new_categories(self) -> dict[str, float]:
        """Categories the reference never had -> their share of the batch's values."""
        return {b.label: b.current for b in self.bins if b.kind == NEW}


@dataclass(frozen=True)
class DriftResult:
    """The drift of a data set: every feature, most severe first, and the verdict.

    Attributes:
        features: per-feature results sorted by severity (then name).
        status: ``drift`` (the verdict), ``warn`` (some feature drifts, warns or is missing),
            ``ok``, or ``no_data`` (no feature could be compared).
        drifted: the data set verdict, ``drifted_share >= drift_share``.
        drifted_count, compared_count: drifting features, and features compared.
        drifted_share: ``drifted_count / compared_count`` (None when nothing was compared).
        drift_share: the threshold of the verdict.
        thresholds: the per-metric thresholds used.
        reference_rows, current_rows: rows of each side.
    """

    features: tuple[FeatureDrift, ...]
    status: str
    drifted: bool
    drifted_count: int
    compared_count: int
    drifted_share: float | None
    drift_share: float
    thresholds: DriftThresholds
    reference_rows: int
    current_rows: int

    def feature(self, name: str) -> FeatureDrift:
        """The result of feature ``name``.

        Raises:
            KeyError: no such feature.
        """
        for f in self.features:
            if f.feature == name:
                return f
        raise KeyError(f"feature {name!r} is not in the drift result")

    def counts_text(self, outputs: Collection[str] = ()) -> str:
        """How many compared columns drift, e.g. ``2 of 5 features drift``; with model
        ``outputs`` among them, ``3 of 7 columns drift, 5 features and 2 model outputs``: the
        verdict's share counts both."""
        compared = [f for f in self.features if f.status in COMPARED]
        produced = sum(f.feature in outputs for f in compared)
        if not produced:
            return f"{self.drifted_count} of {self.compared_count} features drift"
        return (
            f"{self.drifted_count} of {self.compared_count} columns drift, "
            f"{len(compared) - produced} features and {produced} model output"
            f"{'s' if produced > 1 else ''}"
        )

    def metric_rows(self) -> list[dict[str, Any]]:
        """One dict per (feature, metric): ``feature, metric, value, threshold, drifted``.

        The rows of the ``drift_metrics`` table before the job adds ``model_version``,
        ``batch_id`` and ``computed_at``. Values may be None or infinite.
        """
        return [
            {
                "feature": f.feature,
                "metric": m.name,
                "value": None if m.value is None else float(m.value),
                "threshold": m.threshold,
                "drifted": m.drifted,
            }
            for f in self.features
            for m in f.metrics
        ]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for logging (e.g. ``mlflow.log_dict``); floats may be infinite."""
        return {
            "status": self.status,
            "drifted": self.drifted,
            "drifted_count": self.drifted_count,
            "compared_count": self.compared_count,
            "drifted_share": self.drifted_share,
            "drift_share": self.drift_share,
            "thresholds": self.thresholds.model_dump(),
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "features": [
                {
                    "feature": f.feature,
                    "kind": f.kind,
                    "status": f.status,
                    "severity": f.severity,
                    "note": f.note,
                    "metrics": {m.name: m.value for m in f.metrics},
                    "new_categories": f.new_categories,
                }
                for f in self.features
            ],
        }


# --------------------------------------------------------------------------- statistics


def psi(reference: Sequence[float], current: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors on the same bins.

    Args:
        reference: the reference's shares per bin.
        current: the batch's shares per bin.
        epsilon: the floor of every share (not renormalised afterwards).

    Raises:
        ValueError: the vectors differ in length.
    """
    r = np.maximum(np.asarray(reference, dtype=float), epsilon)
    c = np.maximum(np.asarray(current, dtype=float), epsilon)
    if r.shape != c.shape:
        raise ValueError(f"psi: {r.size} reference bins but {c.size} current bins")
    return float(np.sum((c - r) * np.log(c / r)))


def _sorted_items(sketch: kll_doubles_sketch) -> tuple[np.ndarray, np.ndarray]:
    """The sketch's retained values, sorted, with their cumulative weights."""
    pairs = sorted(sketch)
    items = np.array([p[0] for p in pairs], dtype=float)
    cum = np.cumsum(np.array([p[1] for p in pairs], dtype=float))
    return items, cum


def _cdf_at(items: np.ndarray, cum: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``P(X <= p)`` for each point, from sorted retained values and cumulative weights."""
    idx = np.searchsorted(items, points, side="right")
    out = np.zeros(points.shape, dtype=float)
    out[idx > 0] = cum[idx[idx > 0] - 1] / cum[-1]
    return out


def sketch_cdfs(
    reference: kll_doubles_sketch, current: kll_doubles_sketch
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both CDFs at every value either sketch retains.

    Returns:
        ``(points, F_ref, F_cur)``: the sorted distinct retained values and ``P(X <= point)``
        of each side there.

    Raises:
        ValueError: a sketch is empty.
    """
    if reference.is_empty() or current.is_empty():
        raise ValueError("sketch_cdfs: a sketch is empty; there is no distribution to compare")
    ref_items, ref_cum = _sorted_items(reference)
    cur_items, cur_cum = _sorted_items(current)
    points = np.union1d(ref_items, cur_items)
    return points, _cdf_at(ref_items, ref_cum, points), _cdf_at(cur_items, cur_cum, points)


def sketch_rank_error(sketch: kll_doubles_sketch) -> float:
    """How far the sketch's CDF may be from the data's, at every point at once (99 %
    confidence, DataSketches' a priori bound); 0 while the sketch holds every value."""
    if not sketch.is_estimation_mode():
        return 0.0
    return float(kll_doubles_sketch.get_normalized_rank_error(sketch.k, True))


def ks_test(reference: kll_doubles_sketch, current: kll_doubles_sketch) -> tuple[float, float]:
    """Two-sided Kolmogorov-Smirnov statistic and asymptotic p-value of two sketches.

    Returns:
        ``(D, p)`` as ``scipy.stats.ks_2samp(ref, cur, method="asymp")`` gives them for exact
        sketches up to ``N = KS_EXACT_MAX_N``; above it ``p`` is the limiting distribution's,
        and ``p`` is computed for ``D`` less the sketches' rank error (module doc).

    Raises:
        ValueError: a sketch is empty.
    """
    _, f_ref, f_cur = sketch_cdfs(reference, current)
    d = float(np.max(np.abs(f_ref - f_cur)))
    n, m = float(reference.n), float(current.n)
    # round() like scipy's, but at least 1: kstwo is undefined for 0 (one value each side).
    en = max(float(np.round(n * m / (n + m))), 1.0)
    d_test = max(d - sketch_rank_error(reference) - sketch_rank_error(current), 0.0)
    p = kstwo.sf(d_test, en) if en <= KS_EXACT_MAX_N else kstwobign.sf(d_test * np.sqrt(en))
    return d, float(np.clip(p, 0.0, 1.0))


def wasserstein(reference: kll_doubles_sketch, current: kll_doubles_sketch) -> float:
    """Wasserstein-1 distance of two sketches: the integral of ``|F_ref - F_cur|``.

    Infinite when the sides hold different shares of ``+inf`` or ``-inf``.

    Raises:
        ValueError: a sketch is empty.
    """
    points, f_ref, f_cur = sketch_cdfs(reference, current)
    gaps = np.abs(f_ref[:-1] - f_cur[:-1])
    widths = np.diff(points)
    # Only where the CDFs differ: an infinite width times a zero difference adds nothing.
    differ = gaps > 0
    return float(np.sum(gaps[differ] * widths[differ]))


def chi2_p_value(reference: Sequence[float], current: Sequence[float]) -> float:
    """Pearson chi-square test of homogeneity of two count vectors (no Yates' correction).

    Bins empty on both sides are left out; one bin left gives 1.0.
    """
    table = np.array([reference, current], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(table, correction=False).pvalue)


def js_distance(reference: Sequence[float], current: Sequence[float]) -> float:
    """Jensen-Shannon distance (base 2, 0 to 1) of two share (or count) vectors."""
    return float(jensenshannon(np.asarray(reference, float), np.asarray(current, float), base=2))


# --------------------------------------------------------------------------- compare


def compare(
    reference: DatasetProfile,
    current: DatasetProfile,
    thresholds: DriftThresholds,
    drift_share: float,
    features: Sequence[str] | None = None,
) -> DriftResult:
    """Compares a batch profile with a reference profile, feature by feature.

    Never raises for data reasons: features that cannot be compared get a status saying why
    (module docstring).

    Args:
        reference: the reference profile (e.g. the model's training set, read from storage).
        current: the batch's profile, made with the same column lists.
        thresholds: per-metric thresholds (``drift.thresholds`` of the config).
        drift_share: the data set drifts when at least this share of compared features drift.
        features: the features to compare (default: the reference's columns, then the
            batch's columns the reference lacks).

    Returns:
        The :class:`DriftResult`.

    Raises:
        ValueError: ``drift_share`` is not in (0, 1].
    """
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    if features is None:
        features = [*reference.columns, *(c for c in current.columns if c not in reference.columns)]
    results = [_feature(name, reference, current, thresholds) for name in features]
    results.sort(key=lambda f: (-f.severity, f.feature))
    compared = [f for f in results if f.status in COMPARED]
    drifting = sum(f.status == DRIFT for f in compared)
    share = drifting / len(compared) if compared else None
    drifted = share is not None and share >= drift_share
    if not compared:
        status = NO_DATA
    elif drifted:
        status = DRIFT
    elif any(f.status in (DRIFT, WARN, MISSING) for f in results):
        status = WARN
    else:
        status = OK
    return DriftResult(
        features=tuple(results),
        status=status,
        drifted=drifted,
        drifted_count=drifting,
        compared_count=len(compared),
        drifted_share=share,
        drift_share=drift_share,
        thresholds=thresholds,
        reference_rows=reference.rows,
        current_rows=current.rows,
    )


def _feature(
    name: str, reference: DatasetProfile, current: DatasetProfile, th: DriftThresholds
) -> FeatureDrift:
    ref = reference.columns.get(name)
    cur = current.columns.get(name)
    kind = (ref or cur).kind if (ref or cur) is not None else "unknown"
    counts = [Metric(ROWS, float(current.rows))]
    if cur is not None and current.rows > 0:
        counts.append(Metric(NULL_SHARE, _null_share(cur, current.rows)))
    change = None
    if cur is not None and ref is not None and current.rows > 0 and reference.rows > 0:
        shift = _null_share(cur, current.rows) - _null_share(ref, reference.rows)
        change = Metric(NULL_SHARE_CHANGE, shift, th.null_share, abs(shift) >= th.null_share)
        counts.append(change)

    def uncompared(status: str, note: str) -> FeatureDrift:
        return FeatureDrift(name, kind, status, float(STATUS_RANK[status]), tuple(counts), (), note)

    if ref is None:
        return uncompared(NO_REFERENCE, "not in the reference profile")
    if cur is None:
        return uncompared(MISSING, "not in the batch's profile")
    if ref.kind != cur.kind:
        return uncompared(
            NO_REFERENCE, f"profiled as {ref.kind} in the reference but {cur.kind} in the batch"
        )
    if current.rows == 0:
        return uncompared(NO_DATA, "the batch has no rows")
    if ref.count == 0:
        return uncompared(NO_REFERENCE, "the reference has no values (all null or NaN)")
    if cur.count == 0:
        note = "the batch has no values (all null or NaN)"
        if change is not None and change.drifted:  # the values stopped coming: drift
            severity = STATUS_RANK[DRIFT] + _bounded(_ratio(abs(change.value), th.null_share))
            return FeatureDrift(name, kind, DRIFT, severity, tuple(counts), (), note)
        return uncompared(NO_DATA, note)
    compared = _numeric if isinstance(ref, NumericProfile) else _categorical
    stats, bins, note = compared(ref, cur, th)
    status = _status([*stats, *([change] if change else [])], th)
    return FeatureDrift(
        name, kind, status, _severity(status, [*stats, *counts], th), (*stats, *counts), bins, note
    )


def _null_share(column: NumericProfile | CategoricalProfile, rows: int) -> float:
    """The share of ``rows`` whose value is null (or NaN)."""
    return (column.null_count + getattr(column, "nan_count", 0)) / rows


def range_labels(edges: Sequence[float]) -> list[str]:
    """Labels of the bins ``(-inf, e_1], (e_1, e_2], ..., (e_m, +inf)`` (4 significant digits)."""
    if not edges:
        return ["all values"]
    e = [f"{x:.4g}" for x in edges]
    return [f"≤ {e[0]}", *(f"({a}, {b}]" for a, b in pairwise(e)), f"> {e[-1]}"]


def _numeric(
    ref: NumericProfile, cur: NumericProfile, th: DriftThresholds
) -> tuple[list[Metric], tuple[Bin, ...], str]:
    shares = bin_fractions(cur.kll, ref.edges)
    psi_value = psi(ref.fractions, shares)
    d, p = ks_test(ref.kll, cur.kll)
    w = wasserstein(ref.kll, cur.kll)
    std = ref.std or 0.0
    w_norm = w / std if std > 0 else (0.0 if w == 0 else math.inf)
    stats = [
        Metric(PSI, psi_value, th.psi_drift, psi_value >= th.psi_drift),
        Metric(KS_STATISTIC, d),
        Metric(KS_P_VALUE, p, th.p_value, p < th.p_value),
        Metric(WASSERSTEIN_NORM, w_norm, th.distance, w_norm >= th.distance),
    ]
    bins = tuple(
        Bin(label, RANGE, r, c)
        for label, r, c in zip(range_labels(ref.edges), ref.fractions, shares, strict=True)
    )
    return stats, bins, ""


def _categorical(
    ref: CategoricalProfile, cur: CategoricalProfile, th: DriftThresholds
) -> tuple[list[Metric], tuple[Bin, ...], str]:
    # (label, kind, reference count, batch count) per bin.
    table: list[tuple[str, str, int, int]] = [
        (cat, CATEGORY, n, cur.counts.get(cat, 0))
        for cat, n in ref.counts.items()
        if cat in cur.counts or cur.complete
    ]
    if ref.complete:
        table += [(cat, NEW, 0, n) for cat, n in cur.counts.items() if cat not in ref.counts]
    # Whatever a side did not list, or listed where the other side's count is unknown.
    ref_other = max(ref.count - sum(t[2] for t in table), 0)
    cur_other = max(cur.count - sum(t[3] for t in table), 0)
    if ref_other or cur_other:
        table.append(("other", OTHER, ref_other, cur_other))
    labels, kinds, ref_counts, cur_counts = zip(*table, strict=True)
    r = np.array(ref_counts, dtype=float) / sum(ref_counts)
    c = np.array(cur_counts, dtype=float) / sum(cur_counts)
    psi_value = psi(r, c)
    p = chi2_p_value(ref_counts, cur_counts)
    js = js_distance(r, c)
    stats = [
        Metric(PSI, psi_value, th.psi_drift, psi_value >= th.psi_drift),
        Metric(CHI2_P_VALUE, p, th.p_value, p < th.p_value),
        Metric(JS_DISTANCE, js, th.distance, js >= th.distance),
    ]
    bins = tuple(
        Bin(label, kind, float(a), float(b))
        for label, kind, a, b in zip(labels, kinds, r, c, strict=True)
    )
    new = [f"{b.label} ({b.current:.1%})" for b in bins if b.kind == NEW]
    note = f"new categories: {', '.join(new)}" if new else ""
    return stats, bins, note


def _status(stats: list[Metric], th: DriftThresholds) -> str:
    values = {m.name: m.value for m in stats}
    p = values.get(KS_P_VALUE, values.get(CHI2_P_VALUE))
    distance = values.get(WASSERSTEIN_NORM, values.get(JS_DISTANCE))
    low_p = p < th.p_value
    nulls = abs(values.get(NULL_SHARE_CHANGE, 0.0)) >= th.null_share
    if values[PSI] >= th.psi_drift or (low_p and distance >= th.distance) or nulls:
        return DRIFT
    if values[PSI] >= th.psi_warn or low_p:
        return WARN
    return OK


def _ratio(value: float, threshold: float) -> float:
    if threshold > 0:
        return value / threshold
    return math.inf if value > 0 else 0.0


def _severity(status: str, stats: list[Metric], th: DriftThresholds) -> float:
    values = {m.name: m.value for m in stats}
    distance = values.get(WASSERSTEIN_NORM, values.get(JS_DISTANCE))
    nulls = abs(values.get(NULL_SHARE_CHANGE, 0.0))
    r = max(
        _ratio(values[PSI], th.psi_drift),
        _ratio(distance, th.distance),
        _ratio(nulls, th.null_share),
    )
    return STATUS_RANK[status] + _bounded(r)


def _bounded(r: float) -> float:
    """r / (1 + r), kept below 1 so the status rank stays the integer part of a severity."""
    return min(1.0 - 1.0 / (1.0 + r), 0.999999)
