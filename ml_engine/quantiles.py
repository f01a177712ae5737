"""Quantiles that are approximate but never random: exact quantiles of a hash-chosen sample.

Spark's KLL sketches compact at random, so two fits on the same data could give fences a few
rows apart, and the same input different ``dq_metrics`` quantiles. Here a column's quantile p
is the value at rank ``ceil(p * m)`` of the m values it keeps (the smallest value ``v`` with
``P(X <= v) >= p``: numpy's ``method="inverted_cdf"``, the definition the drift profiles' bin
edges use too), where the kept values are all of the column's while it has at most
``sample_rows`` values (the result is then exact), otherwise the values of the rows whose hash
falls below ``sample_rows / n``: about ``sample_rows`` rows chosen by a hash of the row's
values, so the same rows are chosen on every run, in every partitioning, on a laptop and on a
cluster. The rank error of a quantile p from a sample of m rows is about
``sqrt(p (1 - p) / m)``: 0.16 % at the median with the default 100,000 rows.

The order statistics come from Spark's ``percentile_approx`` at its finest accuracy
(:data:`EXACT_ACCURACY`): its Greenwald-Khanna summary then never merges two values, so it
holds the whole sample, sorted, and answers with the exact order statistic whatever the order
in which partitions are merged. It is Spark's exact ``percentile`` minus its cost: that one
keeps a hash map of boxed values and merges all partitions' maps in one task, about three
times slower at 50 columns of 100,000 sampled values.

Each call site first counts the values of its columns (a declarative aggregation it runs
anyway for other statistics, or :func:`quantiles`' own), then computes every column's
quantiles in ONE aggregation: Spark jobs do not grow with the number of columns.

Example::

    counts, qs = quantiles(df, {"amount": F.col("amount")}, [0.25, 0.75])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SAMPLE_ROWS = 100_000
# The row's sample unit, a column of its own projection: referenced by every column's sample,
# it is hashed once per row (Spark does not merge a projection into the next one when that
# would evaluate a costly expression more than once).
UNIT_COLUMN = "__quantile_sample_unit"
# 2**53: a 53-bit integer divided by it is a double in [0, 1) without rounding.
_TWO_53 = float(2**53)
# percentile_approx's largest accuracy, relative error 1 / (2**31 - 1): its summary merges two
# neighbours only when their rank span is below 2 * count / (2**31 - 1), i.e. never for fewer
# than 2**30 values, and every value keeps an exact rank.
EXACT_ACCURACY = 2**31 - 1


def sample_fraction(values: int, sample_rows: int = SAMPLE_ROWS) -> float:
    """The share of rows a column with ``values`` non-null values keeps for its quantiles."""
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be at least 1, got {sample_rows}")
    return 1.0 if values <= sample_rows else sample_rows / values


def row_unit(columns: Sequence[Column]) -> Column:
    """A number in ``[0, 1)`` from a 64-bit hash of the row's ``columns`` (deterministic)."""
    h = F.xxhash64(F.lit("ml-engine-quantile-sample"), *columns)
    return F.shiftrightunsigned(h, 11).cast("double") / F.lit(_TWO_53)


def sampled(value: Column, fraction: float, unit: Column) -> Column:
    """``value`` as double on the rows with ``unit < fraction`` (all rows when ``fraction``
    is 1), null elsewhere: a projection's column for :func:`exact_quantiles` to read."""
    x = value.cast("double")
    return x if fraction >= 1 else F.when(unit < F.lit(fraction), x)


def exact_quantiles(column: Column, probabilities: Sequence[float]) -> Column:
    """The aggregate: exact inverted-CDF quantiles of ``column``'s non-null values (an array
    in the order of ``probabilities``; null when there is none). Give it a plain column of a
    projection (:func:`sampled`): an imperative aggregate evaluates its input expression
    without code generation, once per row and aggregate."""
    probs = F.array(*[F.lit(float(p)) for p in probabilities])
    return F.percentile_approx(column, probs, EXACT_ACCURACY)


def quantiles(
    dataset: DataFrame,
    values: Mapping[str, Column],
    probabilities: Sequence[float],
    sample_rows: int = SAMPLE_ROWS,
    counts: Sequence[int] | None = None,
) -> tuple[list[int], list[list[float] | None]]:
    """Non-null counts and the quantiles at ``probabilities`` of each value expression.

    Two Spark jobs whatever the number of columns: the counts (skipped when ``counts`` is
    given), then all percentiles in one aggregation.

    Args:
        dataset: the rows.
        values: name -> numeric expression over ``dataset``.
        probabilities: in [0, 1].
        sample_rows: the most values per column the percentiles read (see the module doc).
        counts: the non-null counts of ``values`` when the caller has them.

    Returns:
        ``(counts, quantiles)`` in the order of ``values``; a column without values has None.
    """
    exprs = list(values.values())
    if counts is None:
        row = dataset.agg(*[F.count(x).alias(f"n{i}") for i, x in enumerate(exprs)]).first()
        counts = [int(row[f"n{i}"]) for i in range(len(exprs))]
    names = [F.col(f"v{i}") for i in range(len(exprs))]
    projected = dataset.select(*[x.alias(f"v{i}") for i, x in enumerate(exprs)])
    unit = projected.select(*names, row_unit(names).alias(UNIT_COLUMN))
    samples = unit.select(
        *[
            sampled(x, sample_fraction(n, sample_rows), F.col(UNIT_COLUMN)).alias(f"s{i}")
            for i, (x, n) in enumerate(zip(names, counts, strict=True))
        ]
    )
    aggs = [
        exact_quantiles(F.col(f"s{i}"), probabilities).alias(f"q{i}") for i in range(len(exprs))
    ]
    row = samples.agg(*aggs).first()
    return list(counts), [row[f"q{i}"] for i in range(len(exprs))]
