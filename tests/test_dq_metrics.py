"""Data-quality metrics: one-pass column profiles checked against numpy on the same data."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import types as T

from ml_engine.quality.metrics import (
    DQ_METRICS_SCHEMA,
    LONG_SCHEMA,
    metric_rows,
    profile_metrics,
    quantile_metric,
    with_run_info,
)
from ml_engine.session import JobCounter

QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]


def _expected_numeric(name: str, values: list[float | None], quantiles=QUANTILES) -> list[tuple]:
    """The documented profile of a numeric column, computed with numpy.

    stddev is the sample standard deviation (ddof=1); quantiles are numpy's inverted-CDF
    quantiles, which KLL reproduces exactly on fewer than 200 values.
    """
    present = np.array([v for v in values if v is not None], dtype=float)
    n = len(present)
    rows = [
        (name, "null_count", float(sum(v is None for v in values))),
        (name, "approx_distinct", float(len(set(present.tolist())))),
        (name, "min", float(present.min()) if n else None),
        (name, "max", float(present.max()) if n else None),
        (name, "mean", float(present.mean()) if n else None),
        (name, "stddev", float(np.std(present, ddof=1)) if n > 1 else None),
    ]
    for q in quantiles:
        value = float(np.quantile(present, q, method="inverted_cdf")) if n else None
        rows.append((name, quantile_metric(q), value))
    return rows


def _sorted(df):
    return df.orderBy("column", "metric")


def test_quantile_metric_names():
    assert [quantile_metric(q) for q in (0.05, 0.5, 0.025, 0.999, 0.0, 1.0)] == [
        "p5",
        "p50",
        "p2.5",
        "p99.9",
        "p0",
        "p100",
    ]


def test_numeric_string_and_timestamp_profiles_match_numpy(spark):
    # 9 non-null values, so no quantile falls exactly on a step of the empirical CDF.
    x = [3.5, None, -1.25, 10.0, 7.0, 7.0, None, 2.0, 0.5, 100.0, 4.25]
    n = [5, 1, 2, None, 2, 9, 3, 3, 3, 8, 1]
    s = ["a", "b", None, "a", "c", "c", "c", None, "d", "a", "b"]
    ts = [datetime(2026, 1, 1 + i % 3, 12, tzinfo=timezone.utc) for i in range(10)] + [None]
    schema = T.StructType(
        [
            T.StructField("x", T.DoubleType()),
            T.StructField("n", T.IntegerType()),
            T.StructField("s", T.StringType()),
            T.StructField("ts", T.TimestampType()),
        ]
    )
    df = spark.createDataFrame(list(zip(x, n, s, ts, strict=True)), schema)

    actual = profile_metrics(df, ["x", "n", "s", "ts"], QUANTILES)

    epoch = [t.timestamp() for t in ts if t is not None]
    expected_rows = (
        _expected_numeric("x", x)
        + _expected_numeric("n", [None if v is None else float(v) for v in n])
        + [
            ("s", "null_count", 2.0),
            ("s", "approx_distinct", 4.0),
            ("ts", "null_count", 1.0),
            ("ts", "approx_distinct", 3.0),
            ("ts", "min", min(epoch)),
            ("ts", "max", max(epoch)),
        ]
    )
    expected = spark.createDataFrame(expected_rows, LONG_SCHEMA)
    assert_approx_df_equality(
        _sorted(actual), _sorted(expected), precision=1e-9, ignore_nullable=True
    )


def test_all_null_constant_and_single_value_columns_have_no_division_by_zero(spark):
    schema = T.StructType(
        [
            T.StructField("all_null", T.DoubleType()),
            T.StructField("constant", T.DoubleType()),
            T.StructField("single", T.LongType()),
        ]
    )
    df = spark.createDataFrame(
        [(None, 4.0, None), (None, 4.0, 7), (None, 4.0, None), (None, 4.0, None)], schema
    )

    actual = profile_metrics(df, quantiles=[0.5])

    expected = spark.createDataFrame(
        [
            ("all_null", "null_count", 4.0),
            ("all_null", "approx_distinct", 0.0),
            ("all_null", "min", None),
            ("all_null", "max", None),
            ("all_null", "mean", None),
            ("all_null", "stddev", None),
            ("all_null", "p50", None),
            ("constant", "null_count", 0.0),
            ("constant", "approx_distinct", 1.0),
            ("constant", "min", 4.0),
            ("constant", "max", 4.0),
            ("constant", "mean", 4.0),
            # sample stddev of four equal values: 0, not NaN
            ("constant", "stddev", 0.0),
            ("constant", "p50", 4.0),
            ("single", "null_count", 3.0),
            ("single", "approx_distinct", 1.0),
            ("single", "min", 7.0),
            ("single", "max", 7.0),
            ("single", "mean", 7.0),
            # n - 1 = 0: the sample stddev of one value does not exist
            ("single", "stddev", None),
            ("single", "p50", 7.0),
        ],
        LONG_SCHEMA,
    )
    assert_df_equality(_sorted(actual), _sorted(expected), ignore_nullable=True)


def test_empty_input_gives_zero_counts_and_null_statistics(spark):
    schema = T.StructType([T.StructField("x", T.DoubleType()), T.StructField("s", T.StringType())])
    df = spark.createDataFrame([], schema)

    actual = profile_metrics(df, quantiles=[0.25, 0.75])

    expected = spark.createDataFrame(
        [
            ("s", "null_count", 0.0),
            ("s", "approx_distinct", 0.0),
            ("x", "null_count", 0.0),
            ("x", "approx_distinct", 0.0),
            ("x", "min", None),
            ("x", "max", None),
            ("x", "mean", None),
            ("x", "stddev", None),
            ("x", "p25", None),
            ("x", "p75", None),
        ],
        LONG_SCHEMA,
    )
    assert_df_equality(_sorted(actual), _sorted(expected), ignore_nullable=True)


def test_profile_is_two_spark_jobs_however_many_columns(spark):
    def wide(k: int):
        schema = T.StructType([T.StructField(f"c{i}", T.DoubleType()) for i in range(k)])
        rows = [tuple(float(r * k + i) for i in range(k)) for r in range(12)]
        return spark.createDataFrame(rows, schema)

    counts = []
    for k in (3, 30):
        df = wide(k)
        with JobCounter(spark) as jobs:
            profile_metrics(df).collect()
        counts.append(jobs.count)
    # Two aggregations over the data (moments, sketches), one job over the small long table
    # of results: the same for 3 and 30 columns.
    assert counts == [3, 3], counts


def test_unknown_column_and_bad_quantile_are_rejected(spark):
    df = spark.createDataFrame([(1.0,)], "x double")
    with pytest.raises(ValueError, match=r"profile_metrics: columns \['y'\] are not in \['x'\]"):
        profile_metrics(df, ["y"])
    with pytest.raises(
        ValueError, match=r"profile_metrics: quantiles \[1.5\] are outside \[0, 1\]"
    ):
        profile_metrics(df, ["x"], [0.5, 1.5])


def test_with_run_info_gives_the_dq_metrics_columns(spark):
    at = datetime(2026, 11, 28, 10, 30, tzinfo=timezone.utc)
    long = metric_rows(
        spark, [(None, "rows_in", 12), ("amount", "null_count", 0), ("r1", "violations", None)]
    )

    actual = with_run_info(long, run_id="run-1", batch_id="b1", stage="clean", computed_at=at)

    naive = datetime(2026, 11, 28, 10, 30)  # the session time zone is UTC
    expected = spark.createDataFrame(
        [
            ("run-1", "b1", naive, "clean", None, "rows_in", 12.0),
            ("run-1", "b1", naive, "clean", "amount", "null_count", 0.0),
            ("run-1", "b1", naive, "clean", "r1", "violations", None),
        ],
        DQ_METRICS_SCHEMA,
    )
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)
    assert actual.columns == [f.name for f in DQ_METRICS_SCHEMA.fields]
