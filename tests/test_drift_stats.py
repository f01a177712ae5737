"""Drift profiles (one Spark aggregation) and drift statistics (on the driver).

Expected values are computed independently with numpy/scipy on the same raw values:
quantile edges with ``np.quantile(method="inverted_cdf")``, bin shares by counting values per
bin ``(e_{i-1}, e_i]``, PSI with the same epsilon (1e-4, no renormalisation),
``scipy.stats.ks_2samp(method="asymp")``, ``scipy.stats.wasserstein_distance`` divided by the
reference's sample standard deviation, ``scipy.stats.chi2_contingency(correction=False)`` and
``scipy.spatial.distance.jensenshannon(base=2)``. Samples hold fewer values than the sketch's
k (4096), where the KLL sketch keeps every value, so the values agree to about 1e-12 (the
tolerance of each test says so); sample sizes are primes so that no quantile rank falls exactly
on a value's rank.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from datasketches import kll_doubles_sketch
from pyspark.sql import functions as F
from pyspark.sql import types as T
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, kstwobign, wasserstein_distance

from ml_engine import sample_data as sd
from ml_engine.config import DriftThresholds
from ml_engine.drift import DatasetProfile, compare, profile_dataframe, profile_groups
from ml_engine.drift.job import merge_profiles, profile_outputs
from ml_engine.drift.stats import (
    DRIFT,
    KS_EXACT_MAX_N,
    MISSING,
    NO_DATA,
    NO_REFERENCE,
    OK,
    bin_fractions,
    ks_test,
)
from ml_engine.session import JobCounter

REF_N, CUR_N = 997, 1013
EPS = 1e-4
THRESHOLDS = DriftThresholds()
NUMERIC = [
    "shifted",
    "stable",
    "ties",
    "constant",
    "constant_moved",
    "odd",
    "null_in_batch",
    "null_in_reference",
]
CATEGORICAL = ["color", "size", "code", "cat_null_in_batch"]


def _values(rng: np.random.Generator, n: int, current: bool) -> dict[str, list]:
    """Raw columns of one side; ``None`` is a null, ``nan`` a NaN."""
    stable = rng.normal(0.0, 1.0, n).tolist()
    for i in range(0, n, 50):
        stable[i] = None
    odd = rng.normal(5.0, 1.0, n).tolist()
    odd[:4] = [math.nan, math.inf, -math.inf, None]
    if current:
        odd[4:8] = [math.inf] * 4
    colors = ["red", "green", "blue", "grey"]
    color_p = [0.2, 0.3, 0.2, 0.1, 0.2] if current else [0.4, 0.3, 0.2, 0.1, 0.0]
    color = rng.choice([*colors, "purple"], n, p=color_p).tolist()
    color[::37] = [None] * len(color[::37])
    return {
        # Mean moved by one standard deviation in the batch.
        "shifted": rng.normal(12.0 if current else 10.0, 2.0, n).tolist(),
        "stable": stable,
        "ties": rng.choice([0.0, 1.0, 2.0], n, p=[0.5, 0.3, 0.2]).tolist(),
        "constant": [3.0] * n,
        "constant_moved": [4.0 if current else 3.0] * n,
        "odd": odd,
        "null_in_batch": [None] * n if current else rng.normal(0, 1, n).tolist(),
        "null_in_reference": rng.normal(0, 1, n).tolist() if current else [None] * n,
        "color": color,
        "size": rng.choice(["S", "M", "L"], n).tolist(),
        "code": rng.choice(["1", "2", "3"], n, p=[0.6, 0.3, 0.1]).tolist(),
        "cat_null_in_batch": [None] * n if current else rng.choice(["u", "v"], n).tolist(),
    }


def _frame(spark, columns: dict[str, list], strings=CATEGORICAL):
    schema = T.StructType(
        [
            T.StructField(c, T.StringType() if c in strings else T.DoubleType(), True)
            for c in columns
        ]
    )
    return spark.createDataFrame(list(zip(*columns.values(), strict=True)), schema)


def _clean(values: list) -> np.ndarray:
    """The values a numeric profile keeps: not null, not NaN."""
    x = np.array([v for v in values if v is not None], dtype=float)
    return x[~np.isnan(x)]


def _edges(x: np.ndarray, bins: int = 10) -> np.ndarray:
    q = np.quantile(x, np.arange(1, bins) / bins, method="inverted_cdf")
    q = np.unique(q)
    return q[q < x.max()]


def _shares(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    # searchsorted "left" counts the edges below x: bin i is (e_{i-1}, e_i].
    return np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) / len(x)


def _psi(r: np.ndarray, c: np.ndarray) -> float:
    r, c = np.maximum(r, EPS), np.maximum(c, EPS)
    return float(np.sum((c - r) * np.log(c / r)))


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(20261128)
    return _values(rng, REF_N, current=False), _values(rng, CUR_N, current=True)


@pytest.fixture(scope="module")
def profiles(spark, raw):
    ref, cur = raw
    return (
        profile_dataframe(_frame(spark, ref), NUMERIC, CATEGORICAL, source={"table": "ref"}),
        profile_dataframe(_frame(spark, cur), NUMERIC, CATEGORICAL),
    )


@pytest.fixture(scope="module")
def result(profiles):
    return compare(*profiles, THRESHOLDS, drift_share=0.5)


# ---------------------------------------------------------------------------------- profiles


@pytest.mark.parametrize("features", [5, 40])
def test_profile_is_one_spark_job_whatever_the_number_of_features(spark, features):
    rng = np.random.default_rng(features)
    numeric = [f"x{i}" for i in range(features - features // 5)]
    categorical = [f"c{i}" for i in range(features // 5)]
    columns = {c: rng.normal(size=50).tolist() for c in numeric}
    columns |= {c: rng.choice(["a", "b"], 50).tolist() for c in categorical}
    df = _frame(spark, columns, strings=categorical)
    with JobCounter(spark) as jobs:
        profile = profile_dataframe(df, numeric, categorical)
    assert jobs.count == 1
    assert list(profile.columns) == numeric + categorical


def test_numeric_profile_matches_numpy(raw, profiles):
    """Counts, moments and extremes exact; exact sketch; tolerance 1e-12 on the moments."""
    values = raw[0]["stable"]
    x = _clean(values)
    p = profiles[0].columns["stable"]
    assert (p.count, p.null_count, p.nan_count) == (len(x), values.count(None), 0)
    assert p.mean == pytest.approx(np.mean(x), abs=1e-12)
    assert p.std == pytest.approx(np.std(x, ddof=1), abs=1e-12)
    assert (p.min, p.max) == (x.min(), x.max())
    assert p.exact
    assert profiles[0].rows == REF_N


def test_reference_bins_are_inverted_cdf_deciles_with_their_shares(raw, profiles):
    x = _clean(raw[0]["shifted"])
    p = profiles[0].columns["shifted"]
    np.testing.assert_array_equal(p.edges, _edges(x))
    assert len(p.edges) == 9
    np.testing.assert_allclose(p.fractions, _shares(x, _edges(x)), rtol=0, atol=1e-12)


def test_ties_merge_bins_and_never_leave_one_empty(raw, profiles):
    """{0: 50 %, 1: 30 %, 2: 20 %}: edges 0 and 1, bins (-inf, 0], (0, 1], (1, +inf)."""
    x = _clean(raw[0]["ties"])
    p = profiles[0].columns["ties"]
    assert p.edges == (0.0, 1.0)
    np.testing.assert_allclose(
        p.fractions, [np.mean(x == 0), np.mean(x == 1), np.mean(x == 2)], rtol=0, atol=1e-12
    )
    constant = profiles[0].columns["constant"]
    assert (constant.edges, constant.fractions) == ((), (1.0,))


def test_nan_is_counted_apart_and_infinities_are_values(raw, profiles):
    """NaN: nan_count, outside count and moments; +-inf: in count and sketch, not in moments."""
    values = raw[0]["odd"]
    p = profiles[0].columns["odd"]
    finite = np.array([v for v in values if v is not None and math.isfinite(v)])
    assert (p.null_count, p.nan_count, p.count) == (1, 1, len(values) - 2)
    assert (p.min, p.max) == (-math.inf, math.inf)
    assert p.mean == pytest.approx(finite.mean(), abs=1e-12)
    assert p.std == pytest.approx(finite.std(ddof=1), abs=1e-12)


def test_moments_match_numpy_and_moments_false_leaves_only_them_out(spark, raw):
    """Counts, mean and sample std of every numeric column against numpy (tolerance 1e-12
    relative); no finite value gives no moments, one gives no std. ``moments=False`` gives
    the same profile with ``mean`` and ``std`` None."""
    cur = {**raw[1], "single": [None] * (CUR_N - 1) + [7.5]}
    numeric = [*NUMERIC, "single"]
    df = _frame(spark, cur)
    full = profile_dataframe(df, numeric, CATEGORICAL)
    lean = profile_dataframe(df, numeric, CATEGORICAL, moments=False)
    for c in numeric:
        values = cur[c]
        nan = sum(1 for v in values if v is not None and math.isnan(v))
        finite = np.array([v for v in values if v is not None and math.isfinite(v)])
        for got in (full.columns[c], lean.columns[c]):
            assert (got.null_count, got.nan_count) == (values.count(None), nan), c
            assert got.count == len(values) - values.count(None) - nan, c
        assert (lean.columns[c].mean, lean.columns[c].std) == (None, None), c
        got = full.columns[c]
        if len(finite) == 0:
            assert (got.mean, got.std) == (None, None), c
            continue
        assert got.mean == pytest.approx(finite.mean(), rel=1e-12, abs=1e-12), c
        if len(finite) == 1:
            assert got.std is None, c
        else:
            assert got.std == pytest.approx(finite.std(ddof=1), rel=1e-12, abs=1e-12), c
    without = {
        c: {**p, "mean": None, "std": None} if c in numeric else p
        for c, p in full.to_dict()["columns"].items()
    }
    assert lean.to_dict()["columns"] == without


def test_categorical_profile_counts_every_category(raw, profiles):
    values = raw[0]["color"]
    p = profiles[0].columns["color"]
    names, counts = np.unique([v for v in values if v is not None], return_counts=True)
    assert p.counts == dict(zip(names.tolist(), counts.tolist(), strict=True))
    assert (p.count, p.null_count, p.other_count, p.complete) == (
        len(values) - values.count(None),
        values.count(None),
        0,
        True,
    )


def test_numbers_profiled_as_categories_are_cast_to_strings(spark):
    df = spark.createDataFrame([(1,), (1,), (2,), (None,)], "k int")
    p = profile_dataframe(df, [], ["k"]).columns["k"]
    assert (p.counts, p.null_count) == ({"1": 2, "2": 1}, 1)


def test_more_categories_than_top_k_lump_the_rest_as_other(spark):
    values = [("a",)] * 5 + [("b",)] * 3 + [("c",)] * 2 + [("d",)]
    p = profile_dataframe(spark.createDataFrame(values, "s string"), [], ["s"], top_k=2)
    p = p.columns["s"]
    assert (p.counts, p.other_count, p.complete) == ({"a": 5, "b": 3}, 3, False)


def test_profile_on_given_edges_reads_shares_from_its_own_sketch(spark, raw, profiles):
    ref = profiles[0]
    cur = profile_dataframe(
        _frame(spark, {"shifted": raw[1]["shifted"]}), ["shifted"], [], bins=ref.edges()
    )
    p = cur.columns["shifted"]
    edges = np.array(ref.columns["shifted"].edges)
    assert p.edges == ref.columns["shifted"].edges
    np.testing.assert_allclose(
        p.fractions, _shares(_clean(raw[1]["shifted"]), edges), rtol=0, atol=1e-12
    )
    assert p.fractions == bin_fractions(p.kll, p.edges)


@pytest.mark.parametrize(
    ("numeric", "categorical", "message"),
    [
        (["nope"], [], "profile_dataframe: columns ['nope'] are not in ['x', 's']"),
        (["x"], ["x"], "profile_dataframe: columns ['x'] are named more than once"),
        (["s"], [], "profile_dataframe: numeric columns ['s'] have types ['string']"),
    ],
)
def test_profile_rejects_wrong_columns(spark, numeric, categorical, message):
    df = spark.createDataFrame([(1.0, "a")], "x double, s string")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        profile_dataframe(df, numeric, categorical)


def test_profile_groups_needs_its_group_column(spark):
    df = spark.createDataFrame([(1.0,)], "x double")
    with pytest.raises(ValueError, match=r"profile_groups: the group column 'g' is not in \['x'\]"):
        profile_groups(df, "g", ["x"], [])


def test_profile_rejects_bins_that_do_not_increase(spark):
    df = spark.createDataFrame([(1.0,)], "x double")
    with pytest.raises(ValueError, match=r"bins\['x'\]: edges \[2.0, 1.0\] must be strictly"):
        profile_dataframe(df, ["x"], [], bins={"x": [2.0, 1.0]})


def test_json_round_trip_keeps_the_profile_and_the_comparison(profiles, result):
    ref, cur = profiles
    text = ref.to_json()
    # Strict JSON: infinities (min/max of "odd") are strings, not Infinity literals.
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    again = DatasetProfile.from_json(text)
    assert again == ref
    assert again.source == {"table": "ref"}
    assert compare(again, DatasetProfile.from_json(cur.to_json()), THRESHOLDS, 0.5) == result


def test_from_json_rejects_other_documents():
    with pytest.raises(ValueError, match="not a drift profile: format is None"):
        DatasetProfile.from_json('{"rows": 3}')


# ---------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("feature", ["shifted", "stable", "ties"])
def test_numeric_statistics_match_numpy_and_scipy(raw, result, feature):
    """Exact sketches: PSI, KS statistic and p-value within 1e-12, Wasserstein within 1e-9 relative."""
    r, c = _clean(raw[0][feature]), _clean(raw[1][feature])
    edges = _edges(r)
    ks = ks_2samp(r, c, method="asymp")
    f = result.feature(feature)
    assert f.value("psi") == pytest.approx(_psi(_shares(r, edges), _shares(c, edges)), abs=1e-12)
    assert f.value("ks_statistic") == pytest.approx(ks.statistic, abs=1e-12)
    assert f.value("ks_p_value") == pytest.approx(ks.pvalue, abs=1e-12)
    expected_w = wasserstein_distance(r, c) / np.std(r, ddof=1)
    assert f.value("wasserstein_norm") == pytest.approx(expected_w, rel=1e-9)
    assert f.value("null_share") == pytest.approx(raw[1][feature].count(None) / CUR_N, abs=1e-15)
    assert f.value("rows") == CUR_N


@pytest.mark.parametrize("feature", ["color", "size", "code"])
def test_categorical_statistics_match_scipy(raw, result, feature):
    """PSI, chi-square p-value and Jensen-Shannon distance within 1e-12."""
    r = [v for v in raw[0][feature] if v is not None]
    c = [v for v in raw[1][feature] if v is not None]
    cats = sorted(set(r) | set(c))
    table = np.array([[side.count(k) for k in cats] for side in (r, c)], dtype=float)
    shares = table / table.sum(axis=1, keepdims=True)
    f = result.feature(feature)
    assert f.value("psi") == pytest.approx(_psi(shares[0], shares[1]), abs=1e-12)
    expected_p = chi2_contingency(table, correction=False).pvalue
    assert f.value("chi2_p_value") == pytest.approx(expected_p, abs=1e-12)
    assert f.value("js_distance") == pytest.approx(
        jensenshannon(shares[0], shares[1], base=2), abs=1e-12
    )


def test_new_categories_are_named_with_their_share_of_the_batch(raw, result):
    c = [v for v in raw[1]["color"] if v is not None]
    f = result.feature("color")
    assert f.new_categories == pytest.approx({"purple": c.count("purple") / len(c)}, abs=1e-15)
    assert f.note == f"new categories: purple ({c.count('purple') / len(c):.1%})"
    assert result.feature("size").new_categories == {}


def test_shifted_features_drift_and_unchanged_ones_do_not(result):
    statuses = {f.feature: f.status for f in result.features}
    assert statuses["shifted"] == DRIFT  # mean moved by one standard deviation
    assert statuses["color"] == DRIFT  # red 40 % -> 20 %, purple new at 20 %
    assert {statuses[c] for c in ("stable", "ties", "constant", "size", "code")} == {OK}


def test_single_value_reference_distance_is_zero_or_infinite(result):
    """Reference std 0: W/std is 0 when the batch holds the same value only, else infinite."""
    same, moved = result.feature("constant"), result.feature("constant_moved")
    assert (same.value("wasserstein_norm"), same.value("psi"), same.status) == (0.0, 0.0, OK)
    assert moved.value("wasserstein_norm") == math.inf
    assert moved.value("ks_statistic") == 1.0
    assert moved.status == DRIFT


def test_different_shares_of_infinity_give_an_infinite_distance(result):
    assert result.feature("odd").value("wasserstein_norm") == math.inf


def test_a_feature_whose_values_stop_coming_drifts(result, profiles):
    batch, reference = result.feature("null_in_batch"), result.feature("null_in_reference")
    assert (batch.status, batch.note) == (DRIFT, "the batch has no values (all null or NaN)")
    # the reference has no nulls there: the share moved by the whole batch
    assert (batch.value("null_share"), batch.value("null_share_change")) == (1.0, 1.0)
    assert batch.severity == pytest.approx(3 + 10 / 11)  # 1.0 is 10 times the 0.1 threshold
    categorical = result.feature("cat_null_in_batch")
    assert (categorical.status, categorical.value("null_share")) == (DRIFT, 1.0)
    empty = profiles[1].columns["cat_null_in_batch"]
    assert (empty.count, empty.null_count, empty.counts, empty.complete) == (0, CUR_N, {}, True)
    # a reference without values cannot be compared, whatever the batch holds
    assert (reference.status, reference.note) == (
        NO_REFERENCE,
        "the reference has no values (all null or NaN)",
    )
    assert reference.value("null_share_change") == -1.0


@pytest.mark.parametrize("nulls", [0.05, 0.25], ids=["5 points", "25 points"])
def test_a_change_of_the_null_share_drifts_at_its_threshold(spark, nulls):
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 1000).tolist()
    cur = rng.normal(0, 1, 800).tolist()
    ref[:20] = [None] * 20  # 2 % null
    cur[: int(800 * (0.02 + nulls))] = [None] * int(800 * (0.02 + nulls))
    reference = profile_dataframe(_frame(spark, {"x": ref}, []), ["x"], [])
    current = profile_dataframe(_frame(spark, {"x": cur}, []), ["x"], [])

    f = compare(reference, current, THRESHOLDS, 0.5).feature("x")

    expected = cur.count(None) / 800 - ref.count(None) / 1000
    assert f.value("null_share_change") == pytest.approx(expected, abs=1e-15)
    change = f.metric("null_share_change")
    assert (change.threshold, change.drifted) == (0.1, nulls > 0.1)
    assert (f.status == DRIFT) == (nulls > 0.1)


def test_features_missing_on_one_side_get_a_status(profiles):
    ref, cur = profiles
    only_ref = DatasetProfile(ref.rows, {"stable": ref.columns["stable"]})
    only_cur = DatasetProfile(cur.rows, {"size": cur.columns["size"]})
    result = compare(only_ref, only_cur, THRESHOLDS, 0.5)
    assert [(f.feature, f.status) for f in result.features] == [
        ("size", NO_REFERENCE),
        ("stable", MISSING),
    ]
    assert (result.status, result.drifted, result.drifted_share) == (NO_DATA, False, None)


def test_kind_changed_between_profiles_is_not_compared(profiles):
    ref, cur = profiles
    renamed = DatasetProfile(cur.rows, {"stable": cur.columns["size"]})
    f = compare(ref, renamed, THRESHOLDS, 0.5, features=["stable"]).feature("stable")
    assert (f.status, f.note) == (
        NO_REFERENCE,
        "profiled as numeric in the reference but categorical in the batch",
    )


def test_empty_batch_has_no_data_for_every_feature(spark, raw, profiles):
    empty = _frame(spark, raw[1]).limit(0)
    current = profile_dataframe(empty, NUMERIC, CATEGORICAL)
    result = compare(profiles[0], current, THRESHOLDS, 0.5)
    assert current.rows == 0
    assert {f.status for f in result.features} == {NO_DATA}
    assert (result.status, result.drifted, result.compared_count) == (NO_DATA, False, 0)


def test_dataset_verdict_is_the_share_of_compared_features_that_drift(result):
    compared = [f for f in result.features if f.status in ("ok", "warn", "drift")]
    drifting = [f for f in compared if f.status == DRIFT]
    assert (result.compared_count, result.drifted_count) == (len(compared), len(drifting))
    assert result.drifted_share == len(drifting) / len(compared)
    assert result.drifted == (result.drifted_share >= 0.5)
    severities = [f.severity for f in result.features]
    assert severities == sorted(severities, reverse=True)
    assert all(3 <= f.severity < 4 for f in drifting)


def test_metric_rows_name_every_metric_with_its_threshold(result):
    rows = {(r["feature"], r["metric"]): r for r in result.metric_rows()}
    assert {m for f, m in rows if f == "shifted"} == {
        "psi",
        "ks_statistic",
        "ks_p_value",
        "wasserstein_norm",
        "null_share",
        "null_share_change",
        "rows",
    }
    assert {m for f, m in rows if f == "color"} == {
        "psi",
        "chi2_p_value",
        "js_distance",
        "null_share",
        "null_share_change",
        "rows",
    }
    psi = rows[("shifted", "psi")]
    assert (psi["threshold"], psi["drifted"]) == (THRESHOLDS.psi_drift, psi["value"] >= 0.25)
    assert (rows[("shifted", "rows")]["threshold"], rows[("shifted", "rows")]["drifted"]) == (
        None,
        None,
    )


def test_same_distribution_rarely_gives_a_dataset_drift_verdict(spark):
    """40 seeded trials of two samples of one distribution (3 numeric, 2 categorical
    features): no data set drift in at least 95 % of them. All trials in ONE Spark job."""
    trials, n = 40, 401
    rng = np.random.default_rng(5)
    rows = []
    for t in range(trials):
        for side in ("reference", "current"):
            rows += zip(
                [f"{t}:{side}"] * n,
                rng.normal(50, 10, n).tolist(),
                rng.lognormal(0, 1, n).tolist(),
                rng.poisson(3, n).astype(float).tolist(),
                rng.choice(list("ABCDEFG"), n).tolist(),
                rng.choice(["y", "n"], n, p=[0.1, 0.9]).tolist(),
                strict=True,
            )
    schema = "trial string, normal double, skewed double, count double, city string, flag string"
    with JobCounter(spark) as jobs:
        profiles = profile_groups(
            spark.createDataFrame(rows, schema),
            "trial",
            ["normal", "skewed", "count"],
            ["city", "flag"],
        )
    assert jobs.count == 1
    assert profiles["0:reference"].source == {"trial": "0:reference"}
    drifted = [
        compare(profiles[f"{t}:reference"], profiles[f"{t}:current"], THRESHOLDS, 0.5).drifted
        for t in range(trials)
    ]
    assert sum(drifted) <= 2  # at most 5 % of 40


def test_large_sketches_stay_within_their_rank_error(spark):
    """20 000 values per side (estimation mode): KS statistic within 0.005 and PSI within 2e-3
    of the exact values (the sketch's rank error at k = 4096 is about 0.1 %)."""
    rng = np.random.default_rng(11)
    r, c = rng.normal(0, 1, 20_000), rng.normal(0.1, 1, 20_000)
    ref = profile_dataframe(_frame(spark, {"x": r.tolist(), "y": c.tolist()}), ["x", "y"], [])
    assert not ref.columns["x"].exact
    x, y = ref.columns["x"], ref.columns["y"]
    cur = DatasetProfile(ref.rows, {"x": y})
    f = compare(DatasetProfile(ref.rows, {"x": x}), cur, THRESHOLDS, 0.5).feature("x")
    # The edges are the sketch's deciles: each within the rank error of i/10 in the data.
    edges = np.array(x.edges)
    np.testing.assert_allclose(
        np.searchsorted(np.sort(r), edges, side="right") / r.size, np.arange(1, 10) / 10, atol=5e-3
    )
    assert f.value("ks_statistic") == pytest.approx(ks_2samp(r, c).statistic, abs=5e-3)
    assert f.value("psi") == pytest.approx(_psi(_shares(r, edges), _shares(c, edges)), abs=2e-3)


def test_ks_p_value_of_large_samples_is_the_limiting_distribution():
    """Above KS_EXACT_MAX_N the p-value is kstwobign's, within 0.003 of scipy's exact kstwo."""
    rng = np.random.default_rng(7)
    r, c = rng.normal(0.0, 1.0, 25_000), rng.normal(0.02, 1.0, 24_000)
    sketches = []
    for values in (r, c):
        sketch = kll_doubles_sketch(65535)  # retains every value at this size: exact CDFs
        for v in values:
            sketch.update(float(v))
        sketches.append(sketch)
    d, p = ks_test(*sketches)
    exact = ks_2samp(r, c, method="asymp")
    n = round(len(r) * len(c) / (len(r) + len(c)))
    assert n > KS_EXACT_MAX_N
    assert d == pytest.approx(exact.statistic, abs=1e-12)
    assert p == pytest.approx(kstwobign.sf(exact.statistic * np.sqrt(n)), abs=1e-12)
    assert 0.01 < exact.pvalue < 0.99
    assert p == pytest.approx(exact.pvalue, abs=3e-3)


def _kll(values, k: int) -> kll_doubles_sketch:
    sketch = kll_doubles_sketch(k)
    for v in values:
        sketch.update(float(v))
    return sketch


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_ks_p_value_of_compacted_sketches_discounts_their_rank_error(shift):
    """A compacted sketch's CDF is off by up to its rank error: the p-value is that of D less
    both errors, so two samples of one distribution are not 'significant' by sketch error."""
    rng = np.random.default_rng(11)
    ref, cur = _kll(rng.normal(0, 1, 30_000), 200), _kll(rng.normal(shift, 1, 30_000), 200)
    assert ref.is_estimation_mode() and cur.is_estimation_mode()
    points = np.union1d([x for x, _ in ref], [x for x, _ in cur])
    d_expected = float(
        np.max(np.abs(np.array(ref.get_cdf(points)[:-1]) - cur.get_cdf(points)[:-1]))
    )
    error = kll_doubles_sketch.get_normalized_rank_error(200, True)
    n = 15_000  # round(30,000 * 30,000 / 60,000)

    d, p = ks_test(ref, cur)

    assert d == pytest.approx(d_expected, abs=1e-12)
    assert p == pytest.approx(kstwobign.sf(max(d_expected - 2 * error, 0) * np.sqrt(n)), abs=1e-12)
    if shift == 0.0:
        assert p == 1.0
    else:
        assert p < 1e-6


def _sample_amounts(rng: np.random.Generator, n: int, factor: float) -> np.ndarray:
    """Amounts drawn as ml_engine.sample_data documents them: lognormal (median x factor), and
    the ``amount_outlier`` dirt multiplying its share of them by U(50, 200)."""
    x = np.exp(np.log(sd.AMOUNT_MEDIAN * factor) + sd.AMOUNT_SIGMA * rng.standard_normal(n))
    hit = rng.random(n) < sd.DIRT_FRACTIONS["amount_outlier"]
    x[hit] *= rng.uniform(50, 200, hit.sum())
    return x


def test_sample_amount_drift_is_flagged_whatever_compacted_sketches_keep(spark):
    """The demo's sizes (19,591 training rows, 6,531 scored rows) put both sketches in
    estimation mode, where the kept weight of the few largest amounts is random. Eight
    profiles of the same values (eight independent compactions, one aggregation): the sample's
    documented amount drift is flagged by every one, the same draw without the drift by none;
    PSI stays within the rank error of the exact PSI on the same edges, and the distance
    within its own bound, rank error times the range, however far it moves."""
    rng = np.random.default_rng(17)
    ref = _sample_amounts(rng, 19_591, 1.0)
    cur = {"drifted": _sample_amounts(rng, 6_531, sd.AMOUNT_DRIFT_FACTOR)}
    cur["stable"] = _sample_amounts(rng, 6_531, 1.0)
    trials = 8
    rows = [("reference", float(v), float(v)) for v in ref]
    rows += [("current", float(a), float(b)) for a, b in zip(*cur.values(), strict=True)]
    once = spark.createDataFrame(rows, "side string, drifted double, stable double")
    # The same values once per trial, each trial a group of its own (its own sketches).
    repeated = once.crossJoin(spark.range(trials)).select(
        F.concat_ws(":", F.col("id").cast("string"), "side").alias("side"), "drifted", "stable"
    )
    profiles = profile_groups(repeated, "side", ["drifted", "stable"], [])
    error = 2 * kll_doubles_sketch.get_normalized_rank_error(4096, True)
    for t in range(trials):
        result = compare(profiles[f"{t}:reference"], profiles[f"{t}:current"], THRESHOLDS, 0.5)
        for name, drifts in [("drifted", True), ("stable", False)]:
            r_prof, f = profiles[f"{t}:reference"].columns[name], result.feature(name)
            assert not r_prof.exact and not profiles[f"{t}:current"].columns[name].exact
            assert (f.status == "drift") == drifts, (t, name, f.status)
            edges = np.array(r_prof.edges)
            exact_psi = _psi(_shares(ref, edges), _shares(cur[name], edges))
            assert f.value("psi") == pytest.approx(exact_psi, abs=3e-3), (t, name)
            w_exact = wasserstein_distance(ref, cur[name]) / ref.std(ddof=1)
            bound = error * (max(ref.max(), cur[name].max()) - ref.min()) / ref.std(ddof=1)
            assert abs(f.value("wasserstein_norm") - w_exact) <= bound, (t, name)
        assert result.feature("drifted").value("psi") >= THRESHOLDS.psi_drift + 0.1


def test_a_multiclass_model_output_is_profiled_per_class_probability(spark):
    """Every class's probability is an output of its own (binary: the positive class's as
    ``score``), profiled on its own values; ``predicted_label`` as categories."""
    rng = np.random.default_rng(7)
    classes = ["low", "mid", "high"]
    raw = rng.dirichlet([1.0, 2.0, 3.0], size=101)
    labels = [classes[i] for i in raw.argmax(axis=1)]
    schema = "probability array<double>, predicted_label string"
    df = spark.createDataFrame(
        [(p.tolist(), lab) for p, lab in zip(raw, labels, strict=True)], schema
    )
    spec = {"task": "classification", "classes": classes}

    profile = profile_outputs(df, spec, F.col("probability"), bins=4)

    assert list(profile.columns) == ["score_low", "score_mid", "score_high", "predicted_label"]
    for i, name in enumerate(classes):
        column = profile.columns[f"score_{name}"]
        values = raw[:, i]
        expected_edges = _edges(values, 4)
        assert (column.count, column.min, column.max) == (101, values.min(), values.max())
        assert column.edges == pytest.approx(expected_edges, abs=1e-12)
    counts = profile.columns["predicted_label"].counts
    assert counts == {c: labels.count(c) for c in classes if c in labels}
    binary = profile_outputs(
        df, {"task": "classification", "classes": ["no", "yes"]}, F.col("probability"), bins=4
    )
    assert list(binary.columns) == ["score", "predicted_label"]
    assert binary.columns["score"].max == raw[:, 1].max()


def test_a_feature_named_like_a_class_probability_stops_the_profile_naming_it(spark):
    """A feature ``score_high`` beside a class ``high``: one profile would hide the other."""
    df = spark.createDataFrame(
        [([0.1, 0.8, 0.1], "high", 0.5), ([0.9, 0.05, 0.05], "low", 1.5)],
        "probability array<double>, predicted_label string, score_high double",
    )
    spec = {"task": "classification", "classes": ["low", "high", "other"]}
    features = profile_dataframe(df, ["score_high"], [], bins=2)
    outputs = profile_outputs(df, spec, F.col("probability"), bins=2)
    with pytest.raises(ValueError) as err:
        merge_profiles(features, outputs)
    assert str(err.value) == (
        "feature column(s) ['score_high'] have the name of a model output the drift profiles "
        "hold: the model's outputs take these names (prediction, probability, rawPrediction, "
        "predicted_label, score, score_<class>); rename the column in the schema file (a CSV "
        "file is read by position when its header differs from the schema only in renamed "
        "columns; a JSON key or Parquet column keeps its name as the column's input_name)"
    )
