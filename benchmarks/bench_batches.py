"""Benchmark: what one batch costs on rs tables of many batches.

A daily job reads its batch and replaces its batch in tables that gain a batch every day. For
tables of ``--batches`` batch partitions (default 10, 100 and 300; ``--rows-per-batch`` rows
each, one write per batch as a daily job makes them), it measures on the ``rs`` backend, each
figure the median of ``--repeats`` runs:

* ``read_batch`` of one batch, counted (the scan of that batch's files only);
* side by side, the whole table read and filtered to that batch, counted;
* ``replace_batch`` of one batch (its files picked from the log; the Parquet write);
* a read of every batch: planning the DataFrame, then counting it; side by side, the same for
  a table whose batch ids Spark escapes in directory names (``b:1``), whose partitions the
  backend reads with a scan each, their values from the log;
* the catalog's ``read_complete`` (every complete batch as its run recorded it, the batches
  written through a :class:`BatchCatalog` with a run log): planning and counting; side by side,
  reading each batch at its recorded version (a snapshot and a scan per batch), and planning
  it for the same tables given by ``file://`` URI (the commit files read through Hadoop's file
  system, as for an object store);
* last, the table compacted as the ``vacuum`` job does (each batch's files merged into one):
  the compaction, then ``read_complete`` planned and counted again, beside the figures before.

It prints the times, the ratios, and each figure's growth from the fewest batches to the most.

Usage::

    python benchmarks/bench_batches.py
    python benchmarks/bench_batches.py --batches 10 50 --repeats 3   # a quick look
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from functools import reduce

from common import add_java_options, java_options_conf, load_average
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ml_engine.catalog import BatchCatalog
from ml_engine.config import SparkConfig
from ml_engine.session import build_session
from ml_engine.tables import open_tables


def median_ms(fn, repeats: int) -> float:
    fn()  # warm: the first call of a fresh plan shape compiles more of Spark
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 100, 300])
    parser.add_argument("--rows-per-batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    add_java_options(parser)
    args = parser.parse_args()

    conf = {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"}
    conf.update(java_options_conf(args.java_options))
    spark = build_session(SparkConfig(master="local[2]", app_name="bench-batches", conf=conf))
    spark.sparkContext.setLogLevel("ERROR")
    tables = open_tables(spark, "rs")
    root = tempfile.mkdtemp(prefix="bench-batches-")
    results = {}
    try:
        for n in args.batches:
            path, escaped = f"{root}/t{n}", f"{root}/escaped{n}"
            rows = spark.range(n * args.rows_per_batch).select(
                F.concat(F.lit("b"), (F.col("id") % n).cast("string")).alias("batch_id"),
                F.col("id"),
                (F.col("id") * 0.5).alias("amount"),
                F.lit("web").alias("channel"),
            )
            for i in range(n):  # each batch its own run (its own directory), as jobs do
                catalog = BatchCatalog(tables, f"{root}/job_runs")
                catalog.replace_batch(rows.where(F.col("id") % n == i), path, f"b{i}")
                catalog.complete_run("bench", f"b{i}")
            escaped_rows = rows.withColumn("batch_id", F.regexp_replace("batch_id", "b", "b:"))
            tables.overwrite(escaped_rows, escaped, partition_by=["batch_id"])
            one = rows.where(F.col("batch_id") == "b1").cache()
            one.count()
            planned = {}

            # before replace_batch below, whose commits are not runs of the catalog
            early = {}

            def read_complete(path=path, planned=planned, catalog=catalog):
                planned["complete"] = catalog.read_complete(path)[0]

            def each_at_its_version(path=path, planned=planned, catalog=catalog):
                recorded = catalog.visible(path)
                parts = [tables.read_batches(path, [b], version=v) for b, v in recorded.items()]
                planned["versions"] = reduce(DataFrame.unionByName, parts)

            def read_complete_uri(path=path, planned=planned):
                # the same tables by file:// URI: the commits read through Hadoop's file system
                uri_catalog = BatchCatalog(tables, f"file://{root}/job_runs")
                planned["uri"] = uri_catalog.read_complete(f"file://{path}")[0]

            early["read_complete: plan"] = median_ms(read_complete, args.repeats)
            early["read_complete by URI: plan"] = median_ms(read_complete_uri, args.repeats)
            early["read_complete: count"] = median_ms(
                lambda planned=planned: planned["complete"].count(), args.repeats
            )
            early["each at its version: plan"] = median_ms(each_at_its_version, args.repeats)
            early["each at its version: count"] = median_ms(
                lambda planned=planned: planned["versions"].count(), args.repeats
            )

            def plan_all(path=path, planned=planned):
                planned["df"] = tables.read(path)

            figures = {
                "read_batch + count": median_ms(
                    lambda path=path: tables.read_batch(path, "b1").count(), args.repeats
                ),
                "whole table, filtered + count": median_ms(
                    lambda path=path: tables.read(path).where(F.col("batch_id") == "b1").count(),
                    args.repeats,
                ),
                "replace_batch": median_ms(
                    lambda path=path, one=one: tables.replace_batch(one, path, "b1"), args.repeats
                ),
                "read every batch: plan": median_ms(plan_all, args.repeats),
            }
            figures["read every batch: count"] = median_ms(
                lambda planned=planned: planned["df"].count(), args.repeats
            )

            def plan_escaped(path=escaped, planned=planned):
                planned["escaped"] = tables.read(path)

            figures["escaped ids, every batch: plan"] = median_ms(plan_escaped, args.repeats)
            figures["escaped ids, every batch: count"] = median_ms(
                lambda planned=planned: planned["escaped"].count(), args.repeats
            )

            figures.update(early)
            one.unpersist()
            files_before = len(tables.read(path).inputFiles())
            start = time.perf_counter()
            tables.compact(path)
            figures["compaction"] = (time.perf_counter() - start) * 1000
            figures["compacted, read_complete: plan"] = median_ms(read_complete, args.repeats)
            figures["compacted, read_complete: count"] = median_ms(
                lambda planned=planned: planned["complete"].count(), args.repeats
            )
            files_after = len(tables.read(path).inputFiles())
            results[n] = figures
            print(
                f"\n{n} batches of {args.rows_per_batch} rows, {files_before} files, "
                f"{files_after} once compacted (median of {args.repeats}, ms; {load_average()})"
            )
            for name, ms in figures.items():
                print(f"  {name:32s} {ms:9.0f}")
            for name, over, under in (
                (
                    "whole-table filter / read_batch",
                    "whole table, filtered + count",
                    "read_batch + count",
                ),
                (
                    "escaped / plain ids: plan",
                    "escaped ids, every batch: plan",
                    "read every batch: plan",
                ),
                (
                    "escaped / plain ids: count",
                    "escaped ids, every batch: count",
                    "read every batch: count",
                ),
                (
                    "versions / read_complete: plan",
                    "each at its version: plan",
                    "read_complete: plan",
                ),
                (
                    "URI / path read_complete: plan",
                    "read_complete by URI: plan",
                    "read_complete: plan",
                ),
                (
                    "versions / read_complete: count",
                    "each at its version: count",
                    "read_complete: count",
                ),
                (
                    "read_complete / compacted: plan",
                    "read_complete: plan",
                    "compacted, read_complete: plan",
                ),
                (
                    "read_complete / compacted: count",
                    "read_complete: count",
                    "compacted, read_complete: count",
                ),
            ):
                print(f"  {name:32s} {figures[over] / figures[under]:9.1f}x")
        if len(results) > 1:
            low, high = min(results), max(results)
            print(f"\ngrowth from {low} to {high} batches ({high / low:.0f}x the batches)")
            for name in results[low]:
                print(f"  {name:32s} {results[high][name] / results[low][name]:9.1f}x")
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
