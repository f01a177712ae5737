"""Benchmark: clean -> detect_outliers -> build_features at 1M and 10M rows.

For each size it generates a wide bronze table (``--numeric`` numeric and ``--categorical``
categorical columns, nulls and heavy tails, generated in parallel by Spark), then runs each job
``--repeats`` times (default 3, a fresh detector fit each time) and prints the medians of what
it measures, side by side in the same session, before each run:

* the job's wall time, rows per second and number of Spark jobs;
* one full scan of the job's input (every column read, nothing computed: a ``noop`` write) and
  the ratio job time / scan time;
* one plain copy of the input (read, write unchanged as Parquet) in scans: the floor for a
  job that writes an output as wide as its input, before it computes anything;
* across sizes, the ratio of each job's time at the larger size to the smaller.

Targets: a job writing a wide table within 2 plain copies of its input, a job writing only
narrow outputs (fits, statistics) within 1.5 full scans; 10M rows at most 11x 1M.

Usage::

    python benchmarks/bench_data_jobs.py                      # 1M and 10M rows, 50 + 10 columns
    python benchmarks/bench_data_jobs.py --rows 200000 --numeric 20   # a quick look
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from common import add_java_options, java_options_conf, normal, unit
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from ml_engine.config import SparkConfig, build_config
from ml_engine.features import run_build_features
from ml_engine.outliers import run_detect_outliers
from ml_engine.quality.clean import run_clean
from ml_engine.session import JobCounter, build_session
from ml_engine.tables import open_tables
from ml_engine.tables.base import parquet_options

BATCH = "bench"
# Job time over its floor: a copy of the input for wide writers, a scan for narrow ones.
TARGETS = {"copy": 2.0, "scan": 1.5}


def wide_bronze(spark: SparkSession, rows: int, numeric: int, categorical: int):
    """Bronze-shaped rows: record id, entity, event time, numeric/categorical features, label."""
    numeric_cols = {}
    for j in range(numeric):
        value = F.exp(normal(1000 + j) * 0.5 + F.lit(j % 7))  # lognormal: heavy right tail
        numeric_cols[f"x{j:02d}"] = F.when(unit(9000 + j) < 0.01, F.lit(None)).otherwise(value)
    cats = {
        f"c{j}": F.concat(F.lit(f"v{j}_"), (unit(20000 + j) * 12).cast("int").cast("string"))
        for j in range(categorical)
    }
    return spark.range(rows).select(
        F.format_string("R%012d", F.col("id")).alias("record_id"),
        F.format_string("E%07d", (unit(1) * (rows / 20 + 1)).cast("long")).alias("entity"),
        F.timestamp_seconds(F.lit(1_767_225_600) + (unit(2) * 90 * 86400).cast("long")).alias(
            "event_time"
        ),
        *[v.alias(k) for k, v in numeric_cols.items()],
        *[v.alias(k) for k, v in cats.items()],
        (unit(3) < 0.05).cast("int").alias("label"),
        F.lit(BATCH).alias("batch_id"),
        F.lit("generated").alias("source_file"),
        F.current_timestamp().alias("ingested_at"),
    )


def write_schema(path: Path, numeric: int, categorical: int) -> None:
    cols = [
        {"name": "record_id", "type": "string", "nullable": False, "role": "record_id"},
        {"name": "entity", "type": "string", "nullable": False, "role": "key"},
        {"name": "event_time", "type": "timestamp", "nullable": False, "role": "event_time"},
    ]
    cols += [
        {
            "name": f"x{j:02d}",
            "type": "double",
            "role": "numeric_feature",
            "constraints": {"min": 0, "max": 1e9},
        }
        for j in range(numeric)
    ]
    cols += [
        {"name": f"c{j}", "type": "string", "role": "categorical_feature"}
        for j in range(categorical)
    ]
    cols += [{"name": "label", "type": "int", "role": "label", "constraints": {"allowed": [0, 1]}}]
    path.write_text(yaml.safe_dump({"name": "wide", "columns": cols}))


def bench_config(root: Path, numeric: int, categorical: int):
    schema = root / "schema.yaml"
    write_schema(schema, numeric, categorical)
    xs = [f"x{j:02d}" for j in range(numeric)]
    return build_config(
        {
            "schema": str(schema),
            "batch_id": BATCH,
            "storage": {"root": str(root)},
            "delta": {"backend": "rs"},
            "clean": {
                "dedup": "latest_by_key",
                "missing": {x: {"strategy": "median"} for x in xs},
                "schema_constraints_action": "drop",
                "case": {f"c{j}": "lower" for j in range(categorical)},
            },
            "outliers": {
                "policy": "flag",
                "detectors": [
                    {"method": "iqr", "k": 3.0, "columns": xs},
                    {"method": "zscore", "threshold": 4.0, "columns": xs},
                ],
            },
            "features": {
                "log": xs[:5],
                "ratios": {"r01": [xs[0], xs[1]]},
                "date_parts": {"event_time": ["hour", "dayofweek"]},
                "windows": {
                    "columns": xs[:2],
                    "days": [7, 30],
                    "aggs": ["count", "sum", "mean", "max"],
                },
            },
        }
    )


def full_scan_seconds(tables, path: str) -> float:
    """Time to read every column of the table once (Spark's noop sink computes nothing)."""
    df = tables.read(path)
    t0 = time.perf_counter()
    df.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - t0


def copy_seconds(tables, path: str, target: Path) -> float:
    """Time to read the table and write it unchanged as Parquet (the engine's writer options):
    what any job that reads its input and writes an output as wide costs before it computes
    anything."""
    df = tables.read(path)
    t0 = time.perf_counter()
    df.write.mode("overwrite").options(**parquet_options(df.schema)).parquet(str(target))
    seconds = time.perf_counter() - t0
    shutil.rmtree(target, ignore_errors=True)
    return seconds


def run_size(
    spark, rows: int, numeric: int, categorical: int, workdir: Path, repeats: int
) -> dict[str, dict]:
    root = workdir / f"rows_{rows}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    cfg = bench_config(root, numeric, categorical)
    tables = open_tables(spark, "rs")
    t0 = time.perf_counter()
    tables.overwrite(
        wide_bronze(spark, rows, numeric, categorical),
        cfg.storage.table_path("bronze"),
        partition_by=["batch_id"],
    )
    print(f"  generated bronze: {rows:,} rows in {time.perf_counter() - t0:.1f} s")

    results = {}
    # (job, input table, what bounds it): clean and build_features write a table as wide as
    # their input (bounded by a plain copy of it), detect_outliers only narrow outputs (a fit,
    # statistics; bounded by a full scan).
    for name, fn, input_table, floor in (
        ("clean", run_clean, "bronze", "copy"),
        ("detect_outliers", run_detect_outliers, "silver", "scan"),
        ("build_features", run_build_features, "silver", "copy"),
    ):
        path = cfg.storage.table_path(input_table)
        runs = []
        for _ in range(repeats):
            # A fit every time, not the reuse of the detector the previous repeat saved.
            shutil.rmtree(root / "models", ignore_errors=True)
            scan = full_scan_seconds(tables, path)
            copy = copy_seconds(tables, path, root / "copy")
            with JobCounter(spark) as jobs:
                t0 = time.perf_counter()
                fn(spark, cfg, tables)
                seconds = time.perf_counter() - t0
            runs.append((seconds, scan, copy, jobs.count))
        seconds, scan, copy = (statistics.median(r[i] for r in runs) for i in range(3))
        bound = TARGETS[floor]
        ratio = seconds / (copy if floor == "copy" else scan)
        results[name] = {
            "seconds": seconds,
            "scan": scan,
            "copy": copy,
            "ratio": ratio,
            "floor": floor,
            "rows_per_s": rows / seconds,
            "jobs": runs[-1][3],
        }
        print(
            f"  {name:<16} median of {repeats}: {seconds:7.1f} s  {rows / seconds:>10,.0f} rows/s  "
            f"{runs[-1][3]:3d} Spark jobs  scan {scan:6.1f} s  copy {copy:6.1f} s  = "
            f"{ratio:5.2f}x {floor} (target <= {bound}: {'met' if ratio <= bound else 'NOT met'})"
            f"  [runs: {', '.join(f'{r[0]:.1f}' for r in runs)} s]"
        )
    return results


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--numeric", type=int, default=50)
    p.add_argument("--categorical", type=int, default=10)
    p.add_argument("--workdir", default=None, help="where tables go (default: a temp dir, removed)")
    p.add_argument("--driver-memory", default="8g")
    p.add_argument("--repeats", type=int, default=3, help="runs per job; medians are shown")
    add_java_options(p)
    args = p.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ml-engine-bench-"))
    spark = build_session(
        SparkConfig(
            master="local[2]",
            app_name="ml-engine-benchmark",
            conf={
                "spark.driver.memory": args.driver_memory,
                "spark.sql.shuffle.partitions": "8",
                "spark.ui.enabled": "false",
                **java_options_conf(args.java_options),
            },
        )
    )
    spark.sparkContext.setLogLevel("ERROR")
    print(
        f"ml-engine benchmark: {args.numeric} numeric + {args.categorical} categorical columns, "
        f"Spark {spark.version}, {spark.sparkContext.defaultParallelism} cores, workdir {workdir}, "
        f"driver JVM options {spark.conf.get('spark.driver.extraJavaOptions')}"
    )
    by_size = {}
    try:
        for rows in args.rows:
            print(f"\n== {rows:,} rows ==")
            by_size[rows] = run_size(
                spark, rows, args.numeric, args.categorical, workdir, args.repeats
            )
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    sizes = sorted(by_size)
    print("\n== summary ==")
    print(
        f"{'job':<16}"
        + "".join(f"{f'{s:,} rows':>28}" for s in sizes)
        + "   time ratio largest/smallest"
    )
    for job in by_size[sizes[0]]:
        cells = "".join(
            f"{by_size[s][job]['seconds']:8.1f} s {by_size[s][job]['ratio']:5.2f} "
            f"{by_size[s][job]['floor']} {by_size[s][job]['jobs']:3d} jobs"
            for s in sizes
        )
        growth = by_size[sizes[-1]][job]["seconds"] / by_size[sizes[0]][job]["seconds"]
        print(f"{job:<16}{cells}   {growth:6.2f}x for {sizes[-1] / sizes[0]:.0f}x rows")


if __name__ == "__main__":
    main()
