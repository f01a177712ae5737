"""Quantiles that are approximate on large data but never random (ml_engine.quantiles).

Expected values come from numpy: exact quantiles (``method="inverted_cdf"``: quantile p is
the value at rank ``ceil(p * n)``) of every value while a column has at most ``sample_rows``
values, otherwise of the hash-chosen sample, and within the sample's rank error of the full
data's quantiles.
"""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.outliers import IQROutlierDetector, MADOutlierDetector
from ml_engine.quality.metrics import ColumnProfile
from ml_engine.quantiles import quantiles, row_unit, sample_fraction

PROBS = [0.05, 0.25, 0.5, 0.75, 0.95]
ROWS = 4000


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return rng.lognormal(size=ROWS).round(6), rng.normal(size=ROWS).round(6)


@pytest.fixture(scope="module")
def frames(spark, data):
    """The same rows in three layouts: 1 partition, 7 partitions, and shuffled into 3."""
    x, y = data
    df = spark.createDataFrame(
        [(i, float(a), float(b)) for i, (a, b) in enumerate(zip(x, y, strict=True))],
        "id long, x double, y double",
    )
    return [df.coalesce(1), df.repartition(7), df.orderBy(F.rand(5)).repartition(3, "y")]


def test_at_most_sample_rows_values_are_numpys_exact_quantiles(frames, data):
    counts, qs = quantiles(frames[1], {"x": F.col("x"), "y": F.col("y")}, PROBS)
    assert counts == [ROWS, ROWS]
    for got, values in zip(qs, data, strict=True):
        assert got == np.quantile(values, PROBS, method="inverted_cdf").tolist()  # to the bit


def test_exact_beyond_one_summary_buffer_whatever_the_partitioning(spark):
    # 120,001 values with ties (a permutation of 0..100,002, then 19,998 repeats): more than
    # Spark's quantile summary buffers at once (50,000), merged across partitions in any order.
    n, probs = 120_001, [0.0, 0.001, 0.25, 0.5, 0.9, 0.999, 1.0]
    expected = np.quantile(np.arange(n) * 7919 % 100_003, probs, method="inverted_cdf").tolist()
    df = spark.range(n).select((F.col("id") * 7919 % 100_003).cast("double").alias("x"))
    layouts = [df.coalesce(1), df.repartition(5), df.orderBy(F.rand(9)).repartition(3)]
    for layout in layouts:
        counts, qs = quantiles(layout, {"x": F.col("x")}, probs, sample_rows=n)
        assert (counts, qs) == ([n], [expected])


def test_a_sample_is_the_same_in_every_layout_and_close_to_the_full_quantiles(frames, data):
    sample_rows = 500
    got = [
        quantiles(df, {"x": F.col("x"), "y": F.col("y")}, PROBS, sample_rows=sample_rows)[1]
        for df in frames
    ]
    assert got[0] == got[1] == got[2]  # bit for bit, whatever the partitioning
    # The sample itself: the rows whose unit falls below 500 / 4000, quantiles by numpy.
    unit = row_unit([F.col("x"), F.col("y")])
    chosen = frames[0].where(unit < F.lit(sample_fraction(ROWS, sample_rows)))
    sample = np.array([(r.x, r.y) for r in chosen.select("x", "y").collect()])
    assert 400 < len(sample) < 600  # about 500: the hash is uniform
    for j in range(2):
        assert got[0][j] == np.quantile(sample[:, j], PROBS, method="inverted_cdf").tolist()
        # Within 4 standard errors of rank of the full data's quantiles.
        full = np.sort(data[j])
        for p, q in zip(PROBS, got[0][j], strict=True):
            rank = np.searchsorted(full, q) / ROWS
            assert abs(rank - p) < 4 * np.sqrt(p * (1 - p) / len(sample)), (j, p)


def test_refitting_detectors_gives_identical_fences(frames):
    for detector in (IQROutlierDetector, MADOutlierDetector):
        fences = [
            detector(inputCols=["x", "y"]).setSampleRows(300).fit(df).fences() for df in frames
        ]
        assert fences[0] == fences[1] == fences[2], detector.__name__


def test_profiles_of_the_same_rows_give_identical_quantiles(spark, frames):
    types = {"x": T.DoubleType(), "y": T.DoubleType()}
    results = []
    for df in frames:
        profile = ColumnProfile(types, ["x", "y"], quantiles=PROBS, sample_rows=300)
        moments = df.agg(*profile.moment_aggs()).first()
        sketches = profile.sketches(df, moments)
        results.append([sketches["ps0_q"], sketches["ps1_q"]])
    assert results[0] == results[1] == results[2]
    assert results[0][0] is not None and len(results[0][0]) == len(PROBS)
