"""Per detector and column: fences, learned statistics and counts (``outlier_stats``)."""

from __future__ import annotations

from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.outliers.base import _greatest, _value
from ml_engine.outliers.policies import detector_models

OUTLIER_STATS_SCHEMA = T.StructType(
    [
        T.StructField("batch_id", T.StringType(), False),
        T.StructField("detector", T.IntegerType(), False),
        T.StructField("method", T.StringType(), False),
        T.StructField("column", T.StringType(), False),
        T.StructField("lower_fence", T.DoubleType(), True),
        T.StructField("upper_fence", T.DoubleType(), True),
        T.StructField("q1", T.DoubleType(), True),
        T.StructField("q3", T.DoubleType(), True),
        T.StructField("median", T.DoubleType(), True),
        T.StructField("mad", T.DoubleType(), True),
        T.StructField("mean", T.DoubleType(), True),
        T.StructField("std", T.DoubleType(), True),
        T.StructField("k", T.DoubleType(), True),
        T.StructField("threshold", T.DoubleType(), True),
        T.StructField("rows_scored", T.LongType(), False),
        T.StructField("rows_flagged", T.LongType(), False),
        T.StructField("policy", T.StringType(), False),
    ]
)


def outlier_statistics(
    df: DataFrame, model: PipelineModel, batch_id: str, policy: str
) -> tuple[list[dict[str, Any]], int, int]:
    """Per detector and column: fences, learned statistics and counts, in ONE Spark job.

    The counts are declarative aggregates over the checked values: a univariate detector's
    flags are counted from its :meth:`~OutlierModel.column_flags` (its fences, compared with
    each value), so the model is not applied and no reasons array is built; only a
    multivariate detector (Mahalanobis) is applied, for its own output and score columns.

    Args:
        df: the rows checked (before any policy is applied).
        model: the fitted detector pipeline.
        batch_id: written into every row.
        policy: written into every row.

    Returns:
        ``(rows, total rows, outlier rows)``; ``rows`` are dicts with the fields of
        ``OUTLIER_STATS_SCHEMA``: ``rows_scored`` counts the rows with a value (all values,
        for Mahalanobis), ``rows_flagged`` the rows on which that detector fired for that
        column; an outlier row is one on which any detector fired.

    Raises:
        ValueError: the model is not a detector pipeline, or a column is missing.
    """
    models = detector_models(model)
    flags = [m.column_flags() for m in models]
    multivariate = [m for m, f in zip(models, flags, strict=True) if f is None]
    scored = model.transform(df) if multivariate else df
    fired = [f for fs in flags if fs is not None for f in fs]
    fired += [F.col(m.getOutputCol()) for m in multivariate]
    aggs = [F.count(F.lit(1)).alias("rows"), F.count_if(_greatest(fired)).alias("outliers")]
    entries = []
    for i, (m, fs) in enumerate(zip(models, flags, strict=True)):
        for j, learned in enumerate(m.learned_rows()):
            if fs is None:
                scored_n = F.count(F.col(m.getScoreCol()))
                flagged_n = F.count_if(F.col(m.getOutputCol()))
            else:
                scored_n = F.count(_value(learned["column"]))
                flagged_n = F.count_if(fs[j])
            aggs += [scored_n.alias(f"s{i}_{j}"), flagged_n.alias(f"f{i}_{j}")]
            entries.append((i, j, m.method, learned))
    row = scored.agg(*aggs).first().asDict()
    fields = [f.name for f in OUTLIER_STATS_SCHEMA.fields]
    rows = []
    for i, j, method, learned in entries:
        rec = dict.fromkeys(fields)
        rec.update(learned)
        rec.update(
            batch_id=batch_id,
            detector=i,
            method=method,
            rows_scored=int(row[f"s{i}_{j}"]),
            rows_flagged=int(row[f"f{i}_{j}"]),
            policy=policy,
        )
        rows.append(
            {
                k: float(v) if isinstance(v, int) and k in _DOUBLE_FIELDS else v
                for k, v in rec.items()
            }
        )
    return rows, int(row["rows"]), int(row["outliers"])


_DOUBLE_FIELDS = {
    f.name for f in OUTLIER_STATS_SCHEMA.fields if isinstance(f.dataType, T.DoubleType)
}
