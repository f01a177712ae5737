"""Data-quality metrics: per-column profiles in two passes, in the long ``dq_metrics`` format.

``dq_metrics`` has one row per (run, column, metric)::

    run_id  batch_id  computed_at  stage  column        metric              value
    9f..    b1        2026-..      clean  amount        mean                42.5
    9f..    b1        2026-..      clean  amount        p50                 40.0
    9f..    b1        2026-..      clean  NULL          rows_in             120.0
    9f..    b1        2026-..      clean  schema:amount:range  violations   3.0

Per profiled column: ``null_count`` and ``approx_distinct`` (an HLL sketch of the values'
64-bit hashes, ``hll_sketch_agg``: exact for small counts, about 1.6 % relative error
beyond); numeric columns also ``min``, ``max``, ``mean``, ``stddev``
(the SAMPLE standard deviation, n - 1 in the denominator: null for fewer than two values, 0
for a constant column) and one ``p<100*q>`` row per quantile ``q`` (``p5``, ``p50``...):
the exact quantile (the value at rank ``ceil(q * n)``, numpy's ``method="inverted_cdf"``)
while a column has at most 100,000 values, otherwise that of a sample of about that many rows
chosen by a hash of the row (:mod:`ml_engine.quantiles`): approximate on large data but never
random, the same input always gives the same quantiles; date and timestamp columns also
``min`` and ``max`` in epoch seconds. A statistic that does not exist (mean of no values) is a
row with a null value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.quantiles import (
    SAMPLE_ROWS,
    UNIT_COLUMN,
    exact_quantiles,
    row_unit,
    sample_fraction,
    sampled,
)

LONG_SCHEMA = T.StructType(
    [
        T.StructField("column", T.StringType(), True),
        T.StructField("metric", T.StringType(), False),
        T.StructField("value", T.DoubleType(), True),
    ]
)
DQ_METRICS_SCHEMA = T.StructType(
    [
        T.StructField("run_id", T.StringType(), False),
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("computed_at", T.TimestampType(), False),
        T.StructField("stage", T.StringType(), False),
        *LONG_SCHEMA.fields,
    ]
)
DQ_METRICS_COLUMNS = [f.name for f in DQ_METRICS_SCHEMA.fields]
DEFAULT_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def quantile_metric(q: float) -> str:
    """The metric name of quantile ``q``: ``0.05 -> "p5"``, ``0.5 -> "p50"``, ``0.025 -> "p2.5"``."""
    return f"p{round(q * 100, 6):g}"


class ColumnProfile:
    """The aggregations that profile columns, and the metric rows made of their results.

    A profile is TWO aggregations, each one pass over the data for all columns together:

    * :meth:`moment_aggs` - null counts, value counts, min, max, mean, stddev: Spark's
      declarative aggregates, which whole-stage codegen compiles into one tight loop;
    * :meth:`sketches` - the exact quantiles of each numeric column's sample
      (quantiles; the sample's size comes from the first pass's value counts) and one HLL
      sketch per column (approx distinct): imperative aggregates, which Spark cannot compile.

    Mixing the two kinds in one aggregation makes Spark run all of them the slow,
    uncompiled way: on 1M rows x 63 columns (2 cores) one mixed aggregation took 14-17 s,
    the two separate ones 2.8 s + 5.0 s (benchmarks/). So a caller runs the sketches in their
    own aggregation - over a cached frame - and adds the moments to a declarative aggregation
    it runs anyway (the clean job adds its counts to them).

    Args:
        types: column -> data type of the frame the aggregations run on.
        columns: the columns to profile.
        quantiles: probabilities in [0, 1] reported for numeric columns.
        keep: only rows where this boolean holds are profiled (None: all rows).
        extra_quantiles: more probabilities to compute without reporting them, for callers
            that need them (:meth:`quantile`), e.g. 0.5 for median imputation.
        sample_rows: the most values per column the quantiles read (ml_engine.quantiles).

    Raises:
        ValueError: a column ``types`` lacks, or a quantile outside [0, 1].
    """

    def __init__(
        self,
        types: Mapping[str, T.DataType],
        columns: Sequence[str],
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
        keep: Column | None = None,
        extra_quantiles: Sequence[float] = (),
        sample_rows: int = SAMPLE_ROWS,
    ) -> None:
        lacking = [c for c in columns if c not in types]
        if lacking:
            raise ValueError(f"profile_metrics: columns {lacking} are not in {list(types)}")
        bad = [q for q in (*quantiles, *extra_quantiles) if not 0 <= q <= 1]
        if bad:
            raise ValueError(f"profile_metrics: quantiles {bad} are outside [0, 1]")
        self.types = dict(types)
        self.columns = list(columns)
        self.quantiles = [float(q) for q in quantiles]
        self.sketched = sorted({*self.quantiles, *(float(q) for q in extra_quantiles)})
        self.keep = keep
        self.sample_rows = sample_rows

    def _value(self, c: str) -> Column:
        col = F.col(f"`{c}`")
        return col if self.keep is None else F.when(self.keep, col)

    def _numeric(self, c: str) -> bool:
        return isinstance(self.types[c], T.NumericType)

    def _moments(self, c: str) -> list[tuple[str, Column]]:
        """``(metric, aggregate)`` after ``null_count``: numbers get min, max, mean, stddev;
        dates and timestamps min and max in epoch seconds; other types nothing."""
        dtype = self.types[c]
        if self._numeric(c):
            x = self._value(c).cast("double")
            stats = [("min", F.min(x)), ("max", F.max(x)), ("mean", F.avg(x))]
            return [*stats, ("stddev", F.stddev_samp(x))]
        if isinstance(dtype, (T.DateType, T.TimestampType)):
            x = F.unix_micros(self._value(c).cast("timestamp")) / F.lit(1_000_000)
            return [("min", F.min(x)), ("max", F.max(x))]
        return []

    def moment_aggs(self) -> list[Column]:
        """Declarative aggregates, aliased ``pm<i>_<j>`` (and ``pm<i>_n``: the value count of
        a numeric column, which sizes its quantile sample)."""
        aggs: list[Column] = []
        for i, c in enumerate(self.columns):
            col = F.col(f"`{c}`")
            nulls = col.isNull() if self.keep is None else self.keep & col.isNull()
            aggs.append(F.count_if(nulls).alias(f"pm{i}_0"))
            aggs += [
                agg.cast("double").alias(f"pm{i}_{j + 1}")
                for j, (_, agg) in enumerate(self._moments(c))
            ]
            if self._numeric(c):
                aggs.append(F.count(self._value(c)).alias(f"pm{i}_n"))
        return aggs

    def sketches(self, df: DataFrame, moments: Row) -> Row:
        """The second aggregation, over ``df``: per column an HLL sketch (``ps<i>_d``) and,
        for numeric columns, the exact quantiles of its sample (``ps<i>_q``).

        Every aggregate reads a plain column of a projection computed first (the value's
        hash; the sampled value): an imperative aggregate's own input expressions are
        evaluated without code generation, once per row and aggregate.

        Args:
            df: the rows (the frame the profile's ``types`` describe).
            moments: the result of :meth:`moment_aggs` (the value counts size the samples).
        """
        # The columns whose quantiles are asked for: numeric ones, when any quantile is.
        quantiled = [i for i, c in enumerate(self.columns) if self._numeric(c) and self.sketched]
        values = df.select(*[self._value(c).alias(f"_v{i}") for i, c in enumerate(self.columns)])
        v = [F.col(f"_v{i}") for i in range(len(self.columns))]
        unit = F.col(UNIT_COLUMN)
        if quantiled:
            values = values.select(*v, row_unit([v[i] for i in quantiled]).alias(UNIT_COLUMN))
        # A 64-bit hash of any type; xxhash64 of null is a number, so keep nulls null.
        projected = [F.when(x.isNotNull(), F.xxhash64(x)).alias(f"_h{i}") for i, x in enumerate(v)]
        projected += [
            sampled(v[i], sample_fraction(int(moments[f"pm{i}_n"]), self.sample_rows), unit).alias(
                f"_s{i}"
            )
            for i in quantiled
        ]
        aggs = [
            F.hll_sketch_estimate(F.hll_sketch_agg(f"_h{i}")).alias(f"ps{i}_d")
            for i in range(len(v))
        ]
        aggs += [
            exact_quantiles(F.col(f"_s{i}"), self.sketched).alias(f"ps{i}_q") for i in quantiled
        ]
        return values.select(*projected).agg(*aggs).first()

    def quantile(self, sketches: Row, column: str, q: float) -> float | None:
        """Quantile ``q`` (one of the computed ones) of ``column`` from :meth:`sketches`."""
        values = sketches[f"ps{self.columns.index(column)}_q"]
        return None if values is None else values[self.sketched.index(float(q))]

    def metric_values(self, moments: Row, sketches: Row | None) -> list[tuple[str, str, Any]]:
        """``(column, metric, value)`` rows from the results of the two aggregations."""
        out: list[tuple[str, str, Any]] = []
        for i, c in enumerate(self.columns):
            out.append((c, "null_count", moments[f"pm{i}_0"]))
            distinct = None if sketches is None else sketches[f"ps{i}_d"]
            out.append((c, "approx_distinct", None if distinct is None else round(distinct)))
            out += [
                (c, name, moments[f"pm{i}_{j + 1}"]) for j, (name, _) in enumerate(self._moments(c))
            ]
            if self._numeric(c):
                out += [
                    (
                        c,
                        quantile_metric(q),
                        None if sketches is None else self.quantile(sketches, c, q),
                    )
                    for q in self.quantiles
                ]
        return out


def profile_metrics(
    df: DataFrame,
    columns: Sequence[str] | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> DataFrame:
    """Profiles columns in two aggregations (:class:`ColumnProfile`), whatever their number.

    Args:
        df: the rows to profile (an empty DataFrame gives counts of 0 and null statistics).
        columns: the columns to profile (default: all columns of ``df``).
        quantiles: probabilities in [0, 1] reported for numeric columns.

    Returns:
        A long DataFrame (``LONG_SCHEMA``: column, metric, value) with the metrics the module
        docstring lists. The aggregations run when this function is called.

    Raises:
        ValueError: a column ``df`` lacks, or a quantile outside [0, 1].
    """
    columns = list(df.columns if columns is None else columns)
    profile = ColumnProfile({f.name: f.dataType for f in df.schema.fields}, columns, quantiles)
    if not columns:
        return df.sparkSession.createDataFrame([], LONG_SCHEMA)
    moments = df.agg(*profile.moment_aggs()).first()
    sketches = profile.sketches(df, moments)
    return metric_rows(df.sparkSession, profile.metric_values(moments, sketches))


def metric_rows(
    spark: SparkSession, rows: Iterable[tuple[str | None, str, float | int | None]]
) -> DataFrame:
    """A long metrics DataFrame (``LONG_SCHEMA``) from small driver-side values.

    Args:
        spark: the session.
        rows: ``(column, metric, value)``; column None for table-level metrics (``rows_in``).
    """
    data = [(c, m, None if v is None else float(v)) for c, m, v in rows]
    return spark.createDataFrame(data, LONG_SCHEMA)


def with_run_info(
    metrics: DataFrame, run_id: str, batch_id: str, stage: str, computed_at: datetime
) -> DataFrame:
    """Long metrics with the run's identity: exactly ``DQ_METRICS_COLUMNS``, in that order.

    Args:
        metrics: a ``LONG_SCHEMA`` DataFrame.
        run_id: one id per job run.
        batch_id: the batch the run worked on.
        stage: the job (``clean``...).
        computed_at: when the run computed them (one instant for the whole run).
    """
    return metrics.select(
        F.lit(run_id).alias("run_id"),
        F.lit(batch_id).alias("batch_id"),
        F.lit(computed_at).cast("timestamp").alias("computed_at"),
        F.lit(stage).alias("stage"),
        F.col("column").cast("string").alias("column"),
        F.col("metric").cast("string").alias("metric"),
        F.col("value").cast("double").alias("value"),
    )
