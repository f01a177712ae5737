"""Per detector and column: fences, learned statistics and counts (``outlier_stats``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.outliers.base import IS_OUTLIER, OUTLIER_REASONS, OutlierModel, _value
from ml_engine.outliers.policies import _combined, detector_models

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


def countable_from_flags(models: Sequence[OutlierModel]) -> bool:
    """Whether the combined ``outlier_reasons`` of written rows give every detector's counts:
    not with a Mahalanobis detector (its counts need its own output columns), nor with two
    detectors of one method on one column (the combined column merges their reasons)."""
    checks = [(m.method, c) for m in models for c in m.getInputCols()]
    grouped = any(not m.reasons_per_column for m in models)
    return not grouped and len(set(checks)) == len(checks)


def outlier_statistics(
    df: DataFrame, model: PipelineModel, batch_id: str, policy: str, flagged: bool = False
) -> tuple[list[dict[str, Any]], int, int]:
    """Per detector and column: fences, learned statistics and counts, in one Spark job
    (two with ``flagged``: the value counts, which read the checked columns without applying
    the detectors, then the detectors applied once and their reasons counted, grouped).

    Args:
        df: the rows checked (before any policy is applied), or, with ``flagged``, rows that
            already carry ``is_outlier`` and ``outlier_reasons`` (:func:`with_outlier_flags`
            or :func:`with_capped_values` output, e.g. the silver rows the job wrote): then
            the detectors are not evaluated again and only the columns counted are read.
        model: the fitted detector pipeline.
        batch_id: written into every row.
        policy: written into every row.
        flagged: see ``df``; only when :func:`countable_from_flags` holds.

    Returns:
        ``(rows, total rows, outlier rows)``; ``rows`` are dicts with the fields of
        ``OUTLIER_STATS_SCHEMA``: ``rows_scored`` counts the rows with a value (all values,
        for Mahalanobis), ``rows_flagged`` the rows on which that detector fired for that
        column.

    Raises:
        ValueError: the model is not a detector pipeline, a column is missing, or
            ``flagged`` rows cannot give the model's counts.
    """
    models = detector_models(model)
    if flagged and not countable_from_flags(models):
        raise ValueError(
            "outlier_statistics: flagged rows cannot give the counts of Mahalanobis detectors "
            "or of two detectors of one method on one column"
        )
    scored = df if flagged else model.transform(df).withColumns(_combined(models))
    aggs = [F.count(F.lit(1)).alias("rows")]
    # Flagged rows' outliers are counted with their reasons, in the one pass applying the model.
    if not flagged:
        aggs.append(F.count_if(F.col(IS_OUTLIER)).alias("outliers"))
    entries = []
    for i, m in enumerate(models):
        for j, learned in enumerate(m.learned_rows()):
            if not m.reasons_per_column:
                scored_n = F.count(F.col(m.getScoreCol()))
                flagged_n = F.count_if(F.col(m.getOutputCol()))
            else:
                c = learned["column"]
                scored_n = F.count(_value(c))
                flagged_n = (
                    None
                    if flagged
                    else F.count_if(
                        F.array_contains(F.col(m.getReasonsCol()), F.lit(f"{m.method}:{c}"))
                    )
                )
            aggs.append(scored_n.alias(f"s{i}_{j}"))
            if flagged_n is not None:
                aggs.append(flagged_n.alias(f"f{i}_{j}"))
            entries.append((i, j, m.method, learned))
    row = scored.agg(*aggs).first().asDict()  # flagged: only value counts, the model not applied
    if flagged:
        # Reasons are few (outliers are rare): count them exploded and grouped, one small
        # job, rather than test every row's array once per column (slower by far). A row's
        # first reason (position 0) counts it once as an outlier (is_outlier: any reason).
        fired = scored.select(F.posexplode(OUTLIER_REASONS).alias("pos", "reason"))
        counts = (
            fired.groupBy("reason")
            .agg(F.count(F.lit(1)).alias("n"), F.count_if(F.col("pos") == 0).alias("first"))
            .collect()
        )  # <= one row per check
        fired_n = {r["reason"]: r["n"] for r in counts}
        row["outliers"] = sum(r["first"] for r in counts)
        for i, j, method, learned in entries:
            row[f"f{i}_{j}"] = fired_n.get(f"{method}:{learned['column']}", 0)
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
