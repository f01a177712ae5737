"""Benchmark: the vacuum job's compaction of a table of batches, and what it saves a reader.

A table of ``--batches`` batches of ``--rows`` rows in all (50 numeric + 10 text columns),
each batch written through the run log as ``--files-per-batch`` files, as a job writes a batch
with that many Spark tasks. Side by side in one run, on the ``rs`` backend:

* the compaction (``DeltaTables.compact``, delta-rs's ``optimize.compact``, as ``vacuum`` runs
  it), beside a plain Spark Parquet write of the same rows;
* ``read_complete`` of every batch, summing one column and counting the rows, before and after
  the compaction (best of ``--repeats``).

Usage::

    python benchmarks/bench_compaction.py
    python benchmarks/bench_compaction.py --rows 200000 --files-per-batch 4   # a quick look
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from common import load_average, unit
from pyspark.sql import functions as F

from ml_engine.catalog import BatchCatalog
from ml_engine.config import SparkConfig
from ml_engine.session import build_session
from ml_engine.tables import open_tables


def parquet_bytes(path: str) -> int:
    return sum(
        os.path.getsize(os.path.join(d, f))
        for d, _, files in os.walk(path)
        for f in files
        if f.endswith(".parquet")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--files-per-batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    conf = {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"}
    spark = build_session(SparkConfig(master="local[2]", app_name="bench-compaction", conf=conf))
    spark.sparkContext.setLogLevel("ERROR")
    tables = open_tables(spark, "rs")
    root = tempfile.mkdtemp(prefix="bench-compaction-")
    try:
        path = f"{root}/silver"
        rows = spark.range(args.rows).select(
            F.col("id"),
            *[(unit(i) * 100).alias(f"x{i}") for i in range(50)],
            *[
                F.concat(F.lit("c"), (unit(100 + i) * 20).cast("int").cast("string")).alias(f"c{i}")
                for i in range(10)
            ],
        )
        catalog = BatchCatalog(tables, f"{root}/job_runs")
        for i in range(args.batches):
            batch = rows.where(F.col("id") % args.batches == i).withColumn(
                "batch_id", F.lit(f"b{i}")
            )
            catalog.replace_batch(batch.repartition(args.files_per_batch), path, f"b{i}")
            catalog.complete_run("bench", f"b{i}")

        def read_all() -> float:
            start = time.perf_counter()
            catalog.read_complete(path)[0].select(F.sum("x0"), F.count("*")).collect()
            return time.perf_counter() - start

        files_before, bytes_before = len(tables.read(path).inputFiles()), parquet_bytes(path)
        read_all()  # warm
        before = min(read_all() for _ in range(args.repeats))
        start = time.perf_counter()
        replaced = tables.compact(path)
        compaction = time.perf_counter() - start
        after = min(read_all() for _ in range(args.repeats))
        files_after = len(tables.read(path).inputFiles())
        bytes_after = parquet_bytes(path) - bytes_before  # the compacted files only

        start = time.perf_counter()
        rows.write.parquet(f"{root}/copy")
        copy = time.perf_counter() - start

        print(
            f"\n{args.rows:,} rows x 61 columns in {args.batches} batches of "
            f"{args.files_per_batch} files ({load_average()})"
        )
        print(
            f"  files                          {files_before:>8} -> {files_after} ({replaced} replaced)"
        )
        print(
            f"  Parquet MB                     {bytes_before / 1e6:8.0f} -> {bytes_after / 1e6:.0f}"
        )
        print(f"  compaction                     {compaction:8.2f} s")
        print(f"  plain Spark write of the rows  {copy:8.2f} s")
        print(f"  read every batch, before       {before:8.2f} s (best of {args.repeats})")
        print(f"  read every batch, compacted    {after:8.2f} s")
        print(f"  compaction / plain write       {compaction / copy:8.2f}x")
        print(f"  read before / compacted        {before / after:8.2f}x")
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
