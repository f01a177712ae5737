"""Feature engineering: each transformation row by row, window aggregates against a brute-force
computation, the one-select property, feature selection, config checks and the job."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml.feature import Bucketizer
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import ConfigError, FeaturesConfig, SelectionConfig, build_config
from ml_engine.features import (
    FeatureError,
    bucket_columns,
    date_part_columns,
    expression_columns,
    feature_rows_predicate,
    filter_window_history,
    log_columns,
    ratio_columns,
    select_features,
    window_columns,
    with_features,
)
from ml_engine.schemas import schema_from_dict
from ml_engine.session import JobCounter

D = T.DoubleType()
S = T.StringType()
TS = T.TimestampType()
I = T.IntegerType()  # noqa: E741
L = T.LongType()


def struct(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(n, t, True) for n, t in fields])


UTC = timezone.utc


def t(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    """A UTC instant in January 2026 (aware, so the machine's zone does not matter)."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(
        days=day - 1, hours=hour, minutes=minute, seconds=second
    )


SCHEMA = schema_from_dict(
    {
        "name": "tx",
        "columns": [
            {"name": "tx_id", "type": "string", "nullable": False, "role": "record_id"},
            {"name": "cust", "type": "string", "nullable": False, "role": "key"},
            {"name": "ts", "type": "timestamp", "nullable": False, "role": "event_time"},
            {"name": "amount", "type": "double", "role": "numeric_feature"},
            {"name": "items", "type": "int", "role": "numeric_feature"},
            {"name": "channel", "type": "string", "role": "categorical_feature"},
            {"name": "fraud", "type": "int", "role": "label"},
        ],
    }
)
SILVER = struct(
    ("tx_id", S), ("cust", S), ("ts", TS), ("amount", D), ("items", I), ("channel", S),
    ("fraud", I), ("batch_id", S),
)  # fmt: skip


# --------------------------------------------------------------------------- row-level


def test_expression_columns_evaluate_sql_per_row(spark):
    df = spark.createDataFrame(
        [("a", 10.0, 2), ("b", None, 5), ("c", 3.5, 0)],
        struct(("id", S), ("amount", D), ("items", I)),
    )
    cols = expression_columns({"double_amount": "amount * 2", "big": "items >= 2"})
    got = df.select("id", *[c.alias(n) for n, c in cols.items()])
    expected = spark.createDataFrame(
        [("a", 20.0, True), ("b", None, True), ("c", 7.0, False)],
        struct(("id", S), ("double_amount", D), ("big", T.BooleanType())),
    )
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_expression_that_does_not_parse_names_its_config_key(spark):
    df = spark.createDataFrame([("t1", "c1", t(1), 1.0, 1, "web", 0, "b1")], SILVER)
    cfg = FeaturesConfig(expressions={"bad": "amount ** * 2"}, passthrough=[])
    with pytest.raises(FeatureError, match=r"column 'bad' \(features\.expressions\.bad\)"):
        with_features(df, cfg, SCHEMA)


def test_expression_over_unknown_column_names_config_key(spark):
    df = spark.createDataFrame([("t1", "c1", t(1), 1.0, 1, "web", 0, "b1")], SILVER)
    cfg = FeaturesConfig(expressions={"oops": "no_such_column + 1"}, passthrough=[])
    with pytest.raises(FeatureError, match=r"column 'oops' \(features\.expressions\.oops\)"):
        with_features(df, cfg, SCHEMA)


def test_log_signed_is_log1p_and_symmetric_for_negatives(spark):
    df = spark.createDataFrame(
        [("a", 0.0), ("b", math.e - 1), ("c", -(math.e - 1)), ("d", 99.0), ("e", None)],
        struct(("id", S), ("x", D)),
    )
    got = df.select("id", log_columns(["x"], "signed")["log_x"].alias("log_x"))
    expected = spark.createDataFrame(
        [("a", 0.0), ("b", 1.0), ("c", -1.0), ("d", math.log(100.0)), ("e", None)],
        struct(("id", S), ("log_x", D)),
    )
    assert_approx_df_equality(got, expected, 1e-12, ignore_nullable=True, ignore_row_order=True)


def test_log_null_mode_gives_null_for_negatives(spark):
    df = spark.createDataFrame(
        [("a", 0.0), ("b", 3.0), ("c", -0.5), ("d", -5.0)], struct(("id", S), ("x", D))
    )
    got = df.select("id", log_columns(["x"], "null")["log_x"].alias("log_x"))
    expected = spark.createDataFrame(
        [("a", 0.0), ("b", math.log(4.0)), ("c", None), ("d", None)],
        struct(("id", S), ("log_x", D)),
    )
    assert_approx_df_equality(got, expected, 1e-12, ignore_nullable=True, ignore_row_order=True)


def test_ratio_is_null_on_zero_or_null_denominator(spark):
    df = spark.createDataFrame(
        [("a", 10.0, 4), ("b", 10.0, 0), ("c", None, 2), ("d", 7.0, None), ("e", -3.0, 2)],
        struct(("id", S), ("amount", D), ("items", I)),
    )
    got = df.select(
        "id", ratio_columns({"per_item": ["amount", "items"]})["per_item"].alias("per_item")
    )
    expected = spark.createDataFrame(
        [("a", 2.5), ("b", None), ("c", None), ("d", None), ("e", -1.5)],
        struct(("id", S), ("per_item", D)),
    )
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_buckets_follow_split_boundaries(spark):
    splits = [0.0, 10.0, 100.0, 1000.0]
    df = spark.createDataFrame(
        [("lo", -0.1), ("a", 0.0), ("b", 9.99), ("c", 10.0), ("d", 100.0), ("e", 999.0),
         ("top", 1000.0), ("hi", 1000.1), ("nan", float("nan")), ("null", None)],
        struct(("id", S), ("x", D)),
    )  # fmt: skip
    got = df.select("id", bucket_columns({"x": splits})["x_bucket"].alias("x_bucket"))
    expected = spark.createDataFrame(
        [("lo", None), ("a", 0.0), ("b", 0.0), ("c", 1.0), ("d", 2.0), ("e", 2.0),
         ("top", 2.0), ("hi", None), ("nan", None), ("null", None)],
        struct(("id", S), ("x_bucket", D)),
    )  # fmt: skip
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_buckets_agree_with_bucketizer_inside_the_splits(spark):
    splits = [float("-inf"), -1.0, 0.0, 2.5, float("inf")]
    values = [-7.0, -1.0, -0.5, 0.0, 2.4999, 2.5, 1e9]
    df = spark.createDataFrame([(i, v) for i, v in enumerate(values)], struct(("i", L), ("x", D)))
    ours = df.select("i", bucket_columns({"x": splits})["x_bucket"].alias("b"))
    theirs = Bucketizer(splits=splits, inputCol="x", outputCol="b").transform(df).select("i", "b")
    assert_df_equality(
        ours, theirs, ignore_nullable=True, ignore_row_order=True, ignore_metadata=True
    )


def test_date_parts_of_known_timestamps(spark):
    # 2026-01-01 is a Thursday (Spark dayofweek 5); 2026-03-15 a Sunday (1).
    df = spark.createDataFrame(
        [("a", datetime(2026, 1, 1, 0, 30, tzinfo=UTC)), ("b", datetime(2026, 3, 15, 23, 59, 59, tzinfo=UTC)),
         ("c", None)],
        struct(("id", S), ("ts", TS)),
    )  # fmt: skip
    cols = date_part_columns({"ts": ["year", "month", "day", "dayofweek", "hour"]})
    got = df.select("id", *[c.alias(n) for n, c in cols.items()])
    expected = spark.createDataFrame(
        [("a", 2026, 1, 1, 5, 0), ("b", 2026, 3, 15, 1, 23), ("c", None, None, None, None, None)],
        struct(("id", S), ("ts_year", I), ("ts_month", I), ("ts_day", I), ("ts_dayofweek", I),
               ("ts_hour", I)),
    )  # fmt: skip
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


# --------------------------------------------------------------------------- windows

# Entities interleaved in time; c1 has events exactly 7 days apart (boundary) and two at the
# same instant; c2 one microsecond inside the 7-day frame; a null amount in c1.
EVENTS = [
    ("e01", "c1", t(1), 10.0),
    ("e02", "c2", t(1, 6), 1.0),
    ("e03", "c1", t(3), 20.0),
    ("e04", "c2", t(2, 6), 2.0),
    ("e05", "c1", t(8), 30.0),  # exactly 7 days after e01: e01 is out of its 7d frame
    ("e06", "c1", t(8), 5.0),  # same instant as e05: each sees the other
    ("e07", "c2", t(8, 5, 59, 59) + timedelta(microseconds=999_999), 4.0),  # e02 just inside
    ("e08", "c1", t(9), None),
    ("e09", "c3", t(2), 100.0),
    ("e10", "c1", t(31), 40.0),  # 30 days after e01: e01 out of the 30d frame, e03 in
]


def brute_force(events, days: int):
    """For each event: (count, sum, mean, max, min) of non-null amounts of the same entity with
    event time in (t - days, t], by a plain loop."""
    out = {}
    for eid, key, ts, _ in events:
        vals = [
            a
            for _, k2, ts2, a in events
            if k2 == key and ts - timedelta(days=days) < ts2 <= ts and a is not None
        ]
        if vals:
            out[eid] = (len(vals), sum(vals), sum(vals) / len(vals), max(vals), min(vals))
        else:
            out[eid] = (0, None, None, None, None)
    return out


def test_window_aggregates_match_brute_force(spark):
    df = spark.createDataFrame(EVENTS, struct(("id", S), ("cust", S), ("ts", TS), ("amount", D)))
    cols = window_columns("cust", "ts", ["amount"], [7, 30], ["count", "sum", "mean", "max", "min"])
    got = df.select("id", *[c.alias(n) for n, c in cols.items()])
    b7, b30 = brute_force(EVENTS, 7), brute_force(EVENTS, 30)
    rows = [(eid, *b7[eid], *b30[eid]) for eid, *_ in EVENTS]
    fields = [("id", S)] + [
        (f"amount_{a}_{d}d", L if a == "count" else D)
        for d in (7, 30)
        for a in ("count", "sum", "mean", "max", "min")
    ]
    expected = spark.createDataFrame(rows, struct(*fields))
    assert_approx_df_equality(got, expected, 1e-9, ignore_nullable=True, ignore_row_order=True)


def test_window_boundary_by_hand(spark):
    df = spark.createDataFrame(EVENTS, struct(("id", S), ("cust", S), ("ts", TS), ("amount", D)))
    cols = window_columns("cust", "ts", ["amount"], [7], ["count", "sum"])
    got = df.select("id", *[c.alias(n) for n, c in cols.items()]).where(
        F.col("id").isin("e05", "e06", "e07", "e08", "e10")
    )
    expected = spark.createDataFrame(
        [
            ("e05", 3, 55.0),  # e03, e05, e06 (e01 exactly 7 days earlier: excluded)
            ("e06", 3, 55.0),
            ("e07", 3, 7.0),  # e02 (1 us inside), e04, e07
            ("e08", 3, 55.0),  # null amount itself is not counted
            ("e10", 1, 40.0),
        ],
        struct(("id", S), ("amount_count_7d", L), ("amount_sum_7d", D)),
    )
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_window_over_an_expression_aggregates_the_expression(spark):
    df = spark.createDataFrame(
        [("a", "c1", t(1), 1.0), ("b", "c1", t(2), 2.0), ("c", "c2", t(2), 5.0)],
        struct(("id", S), ("cust", S), ("ts", TS), ("amount", D)),
    )
    cols = window_columns("cust", "ts", {"sq": F.expr("amount * amount")}, [3], ["sum"])
    got = df.select("id", cols["sq_sum_3d"].alias("sq_sum_3d"))
    expected = spark.createDataFrame(
        [("a", 1.0), ("b", 5.0), ("c", 25.0)], struct(("id", S), ("sq_sum_3d", D))
    )
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


# --------------------------------------------------------------------------- whole frame

FULL = FeaturesConfig(
    expressions={"amount_x2": "amount * 2"},
    log=["amount"],
    ratios={"amount_per_item": ["amount", "items"]},
    buckets={"amount": [0, 10, 100]},
    date_parts={"ts": ["hour", "dayofweek"]},
    windows={"columns": ["amount", "amount_x2"], "days": [2], "aggs": ["count", "max"]},
    passthrough=["channel"],
)


def test_with_features_states_output_columns_and_values(spark):
    df = spark.createDataFrame(
        [
            ("t1", "c1", t(1, 10), 9.0, 3, "web", 0, "b1"),
            ("t2", "c2", t(2, 11), 50.0, 0, "app", 1, "b1"),
            ("t3", "c1", t(3, 9), 99.0, 9, "web", None, "b2"),
        ],
        SILVER,
    )
    got = with_features(df, FULL, SCHEMA)
    expected = spark.createDataFrame(
        [
            # 2026-01-01 Thu (5), 01-02 Fri (6), 01-03 Sat (7). t3 is 1 day 23 h after t1.
            ("c1", t(1, 10), "t1", 0, "b1", "web", 18.0, math.log(10.0), 3.0, 0.0, 10, 5,
             1, 9.0, 1, 18.0),
            ("c2", t(2, 11), "t2", 1, "b1", "app", 100.0, math.log(51.0), None, 1.0, 11, 6,
             1, 50.0, 1, 100.0),
            ("c1", t(3, 9), "t3", None, "b2", "web", 198.0, math.log(100.0), 11.0, 1.0, 9, 7,
             2, 99.0, 2, 198.0),
        ],
        struct(
            ("cust", S), ("ts", TS), ("tx_id", S), ("fraud", I), ("batch_id", S), ("channel", S),
            ("amount_x2", D), ("log_amount", D), ("amount_per_item", D), ("amount_bucket", D),
            ("ts_hour", I), ("ts_dayofweek", I), ("amount_count_2d", L), ("amount_max_2d", D),
            ("amount_x2_count_2d", L), ("amount_x2_max_2d", D),
        ),
    )  # fmt: skip
    assert got.columns == expected.columns
    assert_approx_df_equality(got, expected, 1e-12, ignore_nullable=True, ignore_row_order=True)


def test_engineered_name_clashing_with_input_is_refused(spark):
    df = spark.createDataFrame([("t1", "c1", t(1), 1.0, 1, "web", 0, "b1")], SILVER)
    cfg = FeaturesConfig(expressions={"channel": "upper(channel)"}, passthrough=["channel"])
    with pytest.raises(FeatureError, match=r"engineered column\(s\) \['channel'\] clash"):
        with_features(df, cfg, SCHEMA)


def _wide_config(n: int) -> FeaturesConfig:
    exprs = {f"f{i}": f"amount + {i}" for i in range(n)}
    return FeaturesConfig(
        expressions=exprs,
        log=["amount"],
        windows={"columns": list(exprs), "days": [1, 7, 30], "aggs": ["count", "sum", "max"]},
        passthrough=[],
    )


def test_all_engineered_columns_come_from_one_projection_and_one_window(spark):
    df = spark.createDataFrame([("t1", "c1", t(1), 1.0, 1, "web", 0, "b1")], SILVER)
    plan = with_features(df, _wide_config(6), SCHEMA)._jdf.queryExecution().optimizedPlan()
    text = plan.toString()
    window_nodes = [ln for ln in text.splitlines() if ln.lstrip(" :+-").startswith("Window ")]
    assert len(window_nodes) == 1


def test_spark_jobs_do_not_grow_with_the_number_of_features(spark, tmp_path):
    df = spark.createDataFrame(
        [(f"t{i}", f"c{i % 3}", t(1 + i), float(i), i, "web", 0, "b1") for i in range(12)], SILVER
    )
    counts = []
    for n in (1, 12):
        with JobCounter(spark) as jobs:
            with_features(df, _wide_config(n), SCHEMA).write.format("noop").mode("overwrite").save()
        counts.append(jobs.count)
    assert counts[0] == counts[1]


def test_filter_window_history_keeps_reachable_earlier_rows_of_target_entities(spark):
    df = spark.createDataFrame(
        [
            ("old", "c1", t(1), 1.0, 1, "web", 0, "b0"),  # 7 days before c1's first target
            ("hist", "c1", t(2), 2.0, 1, "web", 0, "b0"),  # inside the 7-day reach
            ("other", "c9", t(7), 3.0, 1, "web", 0, "b0"),  # entity without target rows
            ("new1", "c1", t(8), 4.0, 1, "web", 0, "b1"),
            ("new2", "c1", t(9), 5.0, 1, "web", 0, "b1"),
            ("new3", "c2", t(9), 6.0, 1, "web", 0, "b1"),
        ],
        SILVER,
    )
    got = filter_window_history(df, F.col("batch_id") == "b1", "cust", "ts", 7).select("tx_id")
    expected = spark.createDataFrame([("hist",), ("new1",), ("new2",), ("new3",)], "tx_id string")
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_rows_predicate_is_batch_or_half_open_time_range():
    assert feature_rows_predicate(FeaturesConfig(), "b'1", "ts") == "batch_id = 'b\\'1'"
    rng = FeaturesConfig(start="2026-01-01", end="2026-02-01 12:00:00")
    assert feature_rows_predicate(rng, "ignored", "ts") == (
        "ts >= TIMESTAMP '2026-01-01 00:00:00' AND ts < TIMESTAMP '2026-02-01 12:00:00'"
    )


# --------------------------------------------------------------------------- selection


def test_variance_threshold_drops_constant_column(spark):
    rows = [(float(i), 5.0, float(i % 3), i % 2) for i in range(20)]
    df = spark.createDataFrame(rows, struct(("a", D), ("const", D), ("b", D), ("y", I)))
    got = select_features(df, ["a", "const", "b"], "y", SelectionConfig(variance_threshold=0.0))
    assert got == ["a", "b"]


def test_univariate_keeps_informative_column_over_noise(spark):
    rng = np.random.default_rng(7)
    y = np.array([0, 1] * 20)
    informative = y * 3.0 + rng.normal(0, 0.3, 40)
    noise1, noise2 = rng.normal(0, 1, 40), rng.normal(0, 1, 40)
    rows = [
        (float(a), float(b), float(c), 4.0, int(lbl))
        for a, b, c, lbl in zip(noise1, informative, noise2, y, strict=True)
    ]
    df = spark.createDataFrame(
        rows, struct(("noise1", D), ("signal", D), ("noise2", D), ("const", D), ("y", I))
    )
    sel = SelectionConfig(
        variance_threshold=0.0,
        univariate={"feature_type": "continuous", "label_type": "categorical",
                    "selection_mode": "numTopFeatures", "threshold": 1},
    )  # fmt: skip
    assert select_features(df, ["noise1", "signal", "noise2", "const"], "y", sel) == ["signal"]


def test_univariate_fpr_matches_scipy_anova(spark):
    from scipy.stats import f_oneway

    rng = np.random.default_rng(11)
    y = np.array([0, 1, 2] * 10)
    cols = {
        "strong": y * 2.0 + rng.normal(0, 1, 30),
        "weak": y * 0.3 + rng.normal(0, 1, 30),
        "noise": rng.normal(0, 1, 30),
    }
    pvals = {n: f_oneway(*[v[y == k] for k in (0, 1, 2)]).pvalue for n, v in cols.items()}
    alpha = 0.05
    expected = [n for n in cols if pvals[n] < alpha]
    rows = [tuple(float(cols[n][i]) for n in cols) + (int(y[i]),) for i in range(30)]
    df = spark.createDataFrame(rows, struct(*[(n, D) for n in cols], ("y", I)))
    sel = SelectionConfig(univariate={"selection_mode": "fpr", "threshold": alpha})
    assert "strong" in expected
    assert select_features(df, list(cols), "y", sel) == expected


def test_selection_refuses_non_numeric_candidates(spark):
    df = spark.createDataFrame([("x", 1.0, 0)], struct(("c", S), ("a", D), ("y", I)))
    with pytest.raises(
        FeatureError, match=r"features\.selection\.columns: \['c'\] missing or not numeric"
    ):
        select_features(df, ["c", "a"], "y", SelectionConfig(variance_threshold=0.0))


# --------------------------------------------------------------------------- config


TX_SCHEMA = Path(__file__).parent / "data" / "tx.yaml"


def _config(tmp_path: Path, features: dict, **extra):
    data = {
        "schema": str(TX_SCHEMA),
        "storage": {"root": str(tmp_path / "store")},
        "features": features,
        **extra,
    }
    return build_config(data, check_schema=True)


@pytest.mark.parametrize(
    ("features", "fragment"),
    [
        ({"log": ["amount", "nope"]}, "features.log: column 'nope' is not in schema 'tx'"),
        (
            {"ratios": {"r": ["amount", "nope"]}},
            "features.ratios.r: column 'nope' is not in schema",
        ),
        ({"buckets": {"nope": [0, 1]}}, "features.buckets.nope: column 'nope' is not in schema"),
        ({"date_parts": {"nope": ["hour"]}}, "features.date_parts.nope: column 'nope' is not in"),
        ({"windows": {"columns": ["nope"]}}, "features.windows.columns: column 'nope' is not in"),
        ({"passthrough": ["nope"]}, "features.passthrough: column 'nope' is not in schema"),
        (
            {"windows": {"columns": ["channel"]}},
            "features.windows.columns: column 'channel' has type string",
        ),
        (
            {"date_parts": {"amount": ["hour"]}},
            "features.date_parts.amount: column 'amount' has type double",
        ),
        ({"expressions": {"amount": "amount + 1"}}, "features: engineered column 'amount' clashes"),
    ],
)
def test_feature_config_naming_unknown_or_wrong_column_fails_with_key_path(
    tmp_path, features, fragment
):
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, features)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("features", "fragment"),
    [
        ({"buckets": {"amount": [0, 10, 5]}}, "buckets.amount: splits [0.0, 10.0, 5.0] must be"),
        ({"ratios": {"r": ["amount"]}}, "ratios.r: give [numerator, denominator]"),
        (
            {"ratios": {"amount per item": ["amount", "amount"]}},
            "ratios: feature 'amount per item': a column name cannot hold ' ' (Spark reads "
            "'a.b' as field b of column a; Delta tables refuse blanks and ,;{}()= in names); "
            "name it e.g. 'amount_per_item'",
        ),
        (
            {"expressions": {"amount.x2": "amount * 2"}},
            "expressions: feature 'amount.x2': a column name cannot hold '.' (Spark",
        ),
        ({"start": "2026-02-01", "end": "2026-01-01"}, "start 2026-02-01 must be before end"),
        ({"start": "yesterday"}, "start: 'yesterday' is not an ISO date"),
        ({"windows": {"days": [0]}}, "every window must be at least 1 day"),
        (
            {"selection": {"univariate": {"selection_mode": "fpr", "threshold": 3}}},
            "needs a value in [0, 1]",
        ),
    ],
)
def test_malformed_feature_config_fails_with_key_path(tmp_path, features, fragment):
    with pytest.raises(ConfigError, match=r"features") as info:
        _config(tmp_path, features)
    assert fragment in str(info.value)


def test_a_text_column_clean_coerces_to_a_number_is_numeric_to_the_checks_after_clean(tmp_path):
    # silver, which features and outliers read, holds channel as a double once coerced
    features = {"log": ["channel"], "windows": {"columns": ["channel"]}}
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, features)
    assert "features.log: column 'channel' has type string; log needs a numeric column" in str(
        info.value
    )
    cfg = _config(
        tmp_path,
        features,
        clean={"coerce": {"channel": "double"}},
        outliers={"detectors": [{"method": "iqr", "columns": ["amount", "channel"]}]},
    )
    assert (cfg.features.log, cfg.outliers.detectors[0].columns) == (
        ["channel"],
        ["amount", "channel"],
    )
    # a coerce to no type leaves the column text: its own error, and the log's
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, features, clean={"coerce": {"channel": "number"}})
    assert "clean.coerce.channel: unknown type 'number'" in str(info.value)
    assert "features.log: column 'channel' has type string" in str(info.value)


def test_window_over_an_expression_name_passes_the_schema_check(tmp_path):
    cfg = _config(
        tmp_path, {"expressions": {"x2": "amount * 2"}, "windows": {"columns": ["x2", "amount"]}}
    )
    assert cfg.features.windows.columns == ["x2", "amount"]


# --------------------------------------------------------------------------- the job

JOB_FEATURES = {
    "windows": {"columns": ["amount"], "days": [7], "aggs": ["count", "sum"]},
    "passthrough": ["amount"],
}
SILVER_TABLE = struct(
    *[(f.name, f.dataType) for f in SILVER.fields], ("source_file", S), ("ingested_at", TS)
)
# No outlier detector is saved in these tests: the flag columns are null.
FEATURE_TABLE = struct(
    ("cust", S), ("ts", TS), ("tx_id", S), ("fraud", I), ("batch_id", S),
    ("is_outlier", T.BooleanType()), ("outlier_score", D), ("outlier_reasons", T.ArrayType(S)),
    ("amount", D), ("amount_count_7d", L), ("amount_sum_7d", D),
)  # fmt: skip


def feature_rows(spark, rows):
    """Expected feature rows from (ids, label, batch, values) tuples: null flags added."""
    return spark.createDataFrame([(*r[:5], None, None, None, *r[5:]) for r in rows], FEATURE_TABLE)


B1 = [
    ("T1", "c1", t(1), 10.0, 1, "web", 0, "b1"),
    ("T2", "c2", t(2), 20.0, 1, "web", 1, "b1"),
    ("T3", "c1", t(4), 30.0, 1, "web", None, "b1"),
]
B2 = [
    ("T4", "c1", t(8), 40.0, 1, "app", 0, "b2"),  # T1 exactly 7 days earlier: out; T3 in
    ("T5", "c2", t(8, 12), 50.0, 1, "app", 1, "b2"),  # T2 (b1) 6.5 days earlier: in
    ("T6", "c3", t(9), 60.0, 1, "app", 0, "b2"),
    ("T7", "c1", t(9), 70.0, 1, "app", 1, "b2"),  # T3, T4, T7
]
# Hand-computed 7-day (count, sum) per event, (t - 7 days, t].
EXPECTED_B1 = [
    ("c1", t(1), "T1", 0, "b1", 10.0, 1, 10.0),
    ("c2", t(2), "T2", 1, "b1", 20.0, 1, 20.0),
    ("c1", t(4), "T3", None, "b1", 30.0, 2, 40.0),
]
EXPECTED_B2 = [
    ("c1", t(8), "T4", 0, "b2", 40.0, 2, 70.0),
    ("c2", t(8, 12), "T5", 1, "b2", 50.0, 2, 70.0),
    ("c3", t(9), "T6", 0, "b2", 60.0, 1, 60.0),
    ("c1", t(9), "T7", 1, "b2", 70.0, 3, 140.0),
]


@pytest.fixture
def tables(spark):
    from ml_engine.tables import open_tables

    return open_tables(spark, "rs")


def write_silver(spark, tables, cfg, rows, batch):
    df = spark.createDataFrame(
        [(*r, "in.csv", datetime(2026, 2, 1, tzinfo=UTC)) for r in rows], SILVER_TABLE
    )
    tables.overwrite(
        df,
        cfg.storage.table_path("silver"),
        partition_by=["batch_id"],
        replace_where=f"batch_id = '{batch}'",
    )


def test_build_features_job_uses_earlier_batches_as_history_and_reruns_replace(
    spark, tables, tmp_path
):
    from ml_engine.features import run_build_features

    cfg1 = _config(tmp_path, JOB_FEATURES, batch_id="b1")
    cfg2 = _config(tmp_path, JOB_FEATURES, batch_id="b2")
    write_silver(spark, tables, cfg1, B1, "b1")
    write_silver(spark, tables, cfg1, B2, "b2")
    path = cfg1.storage.table_path("features")

    run_build_features(spark, cfg1, tables)
    assert_df_equality(
        tables.read(path), feature_rows(spark, EXPECTED_B1),
        ignore_nullable=True, ignore_row_order=True,
    )  # fmt: skip
    result = run_build_features(spark, cfg2, tables)
    once = feature_rows(spark, EXPECTED_B1 + EXPECTED_B2)
    assert_df_equality(tables.read(path), once, ignore_nullable=True, ignore_row_order=True)
    assert result.outputs == {"features": path}
    assert result.metrics["features_version"] == tables.version(path)
    assert result.metrics["replaced"] == "batch_id = 'b2'"

    run_build_features(spark, cfg2, tables)  # the same batch again: replaced, not duplicated
    assert_df_equality(tables.read(path), once, ignore_nullable=True, ignore_row_order=True)


def test_build_features_job_date_range_replaces_rows_of_the_range_only(spark, tables, tmp_path):
    from ml_engine.features import run_build_features

    cfg1 = _config(tmp_path, JOB_FEATURES, batch_id="b1")
    write_silver(spark, tables, cfg1, B1, "b1")
    write_silver(spark, tables, cfg1, B2, "b2")
    run_build_features(spark, cfg1, tables)
    run_build_features(spark, _config(tmp_path, JOB_FEATURES, batch_id="b2"), tables)

    # Silver b1 is re-cleaned: T3's amount becomes 35. Rebuild [Jan 4, Jan 9): T3, T4, T5.
    write_silver(
        spark, tables, cfg1, [B1[0], B1[1], ("T3", "c1", t(4), 35.0, 1, "web", None, "b1")], "b1"
    )
    ranged = _config(tmp_path, {**JOB_FEATURES, "start": "2026-01-04", "end": "2026-01-09"})
    expected = feature_rows(
        spark,
        [
            EXPECTED_B1[0],
            EXPECTED_B1[1],
            ("c1", t(4), "T3", None, "b1", 35.0, 2, 45.0),
            ("c1", t(8), "T4", 0, "b2", 40.0, 2, 75.0),
            EXPECTED_B2[1],
            EXPECTED_B2[2],
            EXPECTED_B2[3],  # Jan 9 is outside the range: not rebuilt (still 140)
        ],
    )
    path = ranged.storage.table_path("features")
    result = run_build_features(spark, ranged, tables)
    assert result.metrics["replaced"] == (
        "ts >= TIMESTAMP '2026-01-04 00:00:00' AND ts < TIMESTAMP '2026-01-09 00:00:00'"
    )
    # T3 and T4 were in the table already: replaced, not added again.
    assert_df_equality(tables.read(path), expected, ignore_nullable=True, ignore_row_order=True)


def test_changed_feature_definitions_stop_the_job_until_rebuild_replaces_every_batch(
    spark, tables, tmp_path
):
    from deltalake import DeltaTable

    from ml_engine.features import run_build_features
    from ml_engine.results import JobError

    cfg1 = _config(tmp_path, JOB_FEATURES, batch_id="b1")
    write_silver(spark, tables, cfg1, B1, "b1")
    write_silver(spark, tables, cfg1, B2, "b2")
    run_build_features(spark, cfg1, tables)
    path = cfg1.storage.table_path("features")
    built = tables.version(path)
    # The window aggregates change from count and sum to max.
    changed = {**JOB_FEATURES, "windows": {"columns": ["amount"], "days": [7], "aggs": ["max"]}}

    with pytest.raises(
        JobError,
        match=r"built with other feature definitions than the config's \(missing columns "
        r"\['amount_count_7d', 'amount_sum_7d'\]; columns not in the table \['amount_max_7d'\]\)"
        r".*--set features.rebuild=true",
    ):
        run_build_features(spark, _config(tmp_path, changed, batch_id="b2"), tables)
    assert tables.version(path) == built

    result = run_build_features(spark, _config(tmp_path, {**changed, "rebuild": True}), tables)

    # Hand-computed 7-day max per event, (t - 7 days, t], for both batches.
    table = T.StructType([*FEATURE_TABLE.fields[:-2], T.StructField("amount_max_7d", D)])
    expected = [
        ("c1", t(1), "T1", 0, "b1", 10.0, 10.0),
        ("c2", t(2), "T2", 1, "b1", 20.0, 20.0),
        ("c1", t(4), "T3", None, "b1", 30.0, 30.0),
        ("c1", t(8), "T4", 0, "b2", 40.0, 40.0),
        ("c2", t(8, 12), "T5", 1, "b2", 50.0, 50.0),
        ("c3", t(9), "T6", 0, "b2", 60.0, 60.0),
        ("c1", t(9), "T7", 1, "b2", 70.0, 70.0),
    ]
    expected = spark.createDataFrame([(*r[:5], None, None, None, *r[5:]) for r in expected], table)
    assert_df_equality(tables.read(path), expected, ignore_nullable=True, ignore_row_order=True)
    assert result.metrics["replaced"] == "every batch (features.rebuild)"
    assert result.metrics["features_version"] == built + 1 == tables.version(path)
    assert DeltaTable(path).metadata().partition_columns == ["batch_id"]
    # the next batch run writes against the rebuilt columns
    run_build_features(spark, _config(tmp_path, changed, batch_id="b2"), tables)
    assert_df_equality(tables.read(path), expected, ignore_nullable=True, ignore_row_order=True)
    # a rebuild needs no batch of silver: the check before Spark starts does not ask for one
    from ml_engine.preflight import preflight

    silver = cfg1.storage.table_path("silver")
    assert preflight(_config(tmp_path, changed, batch_id="b9"), ["build_features"]) == [
        f"build_features: batch 'b9' is not in its input table silver ({silver}); batches "
        "there: b1, b2. Set batch_id to one of them or run the jobs before build_features for "
        "this batch"
    ]
    rebuild = _config(tmp_path, {**changed, "rebuild": True}, batch_id="b9")
    assert preflight(rebuild, ["build_features"]) == []


def test_rebuild_with_an_event_time_range_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="rebuild rebuilds the features of every batch; leave"):
        _config(tmp_path, {**JOB_FEATURES, "rebuild": True, "start": "2026-01-04"})


def test_build_features_job_without_silver_says_what_to_run(spark, tables, tmp_path):
    from ml_engine.features import run_build_features
    from ml_engine.results import JobError

    cfg = _config(tmp_path, JOB_FEATURES, batch_id="b1")
    with pytest.raises(
        JobError, match=r"build_features: no silver table at .*silver; run clean first"
    ):
        run_build_features(spark, cfg, tables)
