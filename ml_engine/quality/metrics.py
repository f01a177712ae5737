"""Data-quality metrics: per-column profiles in one pass, in the long ``dq_metrics`` format.

``dq_metrics`` has one row per (run, column, metric)::

    run_id  batch_id  computed_at  stage  column        metric              value
    9f..    b1        2026-..      clean  amount        mean                42.5
    9f..    b1        2026-..      clean  amount        p50                 40.0
    9f..    b1        2026-..      clean  NULL          rows_in             120.0
    9f..    b1        2026-..      clean  schema:amount:range  violations   3.0

Per profiled column: ``null_count`` and ``approx_distinct`` (HyperLogLog++, 5 % relative
error, exact for small counts); numeric columns also ``min``, ``max``, ``mean``, ``stddev``
(the SAMPLE standard deviation, n - 1 in the denominator: null for fewer than two values, 0
for a constant column) and one ``p<100*q>`` row per quantile ``q`` (``p5``, ``p50``...) from
a KLL sketch (``kll_sketch_agg_double``; the inverted-CDF quantile - the smallest value whose
empirical CDF reaches q - exact while a column has at most 200 values, otherwise within the
sketch's rank error of about 1.65 %); date and timestamp columns also ``min`` and ``max`` in
epoch seconds. A statistic that does not exist (mean of no values) is a row with a null value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

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


def profile_metrics(
    df: DataFrame,
    columns: Sequence[str] | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> DataFrame:
    """Profiles columns in ONE aggregation (one Spark job however many columns there are).

    Args:
        df: the rows to profile (an empty DataFrame gives counts of 0 and null statistics).
        columns: the columns to profile (default: all columns of ``df``).
        quantiles: probabilities in [0, 1] reported for numeric columns.

    Returns:
        A long DataFrame (``LONG_SCHEMA``: column, metric, value) with the metrics the module
        docstring lists. The aggregation runs once, when this function is called.

    Raises:
        ValueError: a column ``df`` lacks, or a quantile outside [0, 1].
    """
    columns = list(df.columns if columns is None else columns)
    lacking = [c for c in columns if c not in df.columns]
    if lacking:
        raise ValueError(f"profile_metrics: columns {lacking} are not in {df.columns}")
    bad = [q for q in quantiles if not 0 <= q <= 1]
    if bad:
        raise ValueError(f"profile_metrics: quantiles {bad} are outside [0, 1]")
    types = {f.name: f.dataType for f in df.schema.fields}
    aggs: list[Column] = []
    # (column, metric, expression over the aggregated row)
    out: list[tuple[str, str, Column]] = []

    def add(column: str, metric: str, agg: Column) -> None:
        alias = f"a{len(aggs)}"
        aggs.append(agg.alias(alias))
        out.append((column, metric, F.col(alias)))

    for c in columns:
        col, dtype = F.col(c), types[c]
        add(c, "null_count", F.count_if(col.isNull()))
        add(c, "approx_distinct", F.approx_count_distinct(col))
        if isinstance(dtype, T.NumericType):
            x = col.cast("double")
            add(c, "min", F.min(x))
            add(c, "max", F.max(x))
            add(c, "mean", F.avg(x))
            add(c, "stddev", F.stddev_samp(x))
            if quantiles:
                alias = f"a{len(aggs)}"
                # An empty sketch is not a valid input of get_quantile: guard on the count.
                sketch = F.kll_sketch_get_quantile_double(
                    F.kll_sketch_agg_double(x), F.array(*[F.lit(float(q)) for q in quantiles])
                )
                aggs.append(F.when(F.count(x) > 0, sketch).alias(alias))
                for i, q in enumerate(quantiles):
                    out.append((c, quantile_metric(q), F.get(F.col(alias), i)))
        elif isinstance(dtype, (T.DateType, T.TimestampType)):
            seconds = F.unix_micros(col.cast("timestamp")) / F.lit(1_000_000)
            add(c, "min", F.min(seconds))
            add(c, "max", F.max(seconds))
    spark = df.sparkSession
    if not aggs:
        return spark.createDataFrame([], LONG_SCHEMA)
    # One aggregation, one small row on the driver. Unpivoting it with an inline() of an
    # array of hundreds of structs would make a Java method too large to compile.
    wide = df.agg(*aggs).select(
        *[v.cast("double").alias(f"v{i}") for i, (_, _, v) in enumerate(out)]
    )
    row = wide.first()
    return spark.createDataFrame(
        [(c, m, row[f"v{i}"]) for i, (c, m, _) in enumerate(out)], LONG_SCHEMA
    )


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
