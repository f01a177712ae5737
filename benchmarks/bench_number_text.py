"""Benchmark: what reading numbers written for a locale costs ingest's parse.

Ingest types each numeric column of a CSV file from its text. With the defaults that is a
cast; with ``ingest.csv.decimal: ","``, ``thousands`` or ``strip_signs`` each value that is no
plain number is matched against a regular expression and rewritten before the cast. This
script writes ``--columns`` columns of ``--rows`` plain numbers as CSV, then times, side by
side in one session, a select written to Spark's ``noop`` sink (the parse without a write):

* a scan of the text columns (nothing computed);
* the default cast (:data:`ml_engine.schemas.PLAIN_NUMBERS`);
* the cast with thousands grouped by commas and signs left out (what init sets for a US
  export), on the same plain numbers, which all take the cast's path.

Each figure is the median of ``--repeats`` runs; the ratios are to the default cast.

Usage::

    python benchmarks/bench_number_text.py                 # 1M rows, 50 columns
    python benchmarks/bench_number_text.py --columns 10    # a narrower file
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import unit
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.schemas import PLAIN_NUMBERS, NumberText


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--columns", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "6g")
        .getOrCreate()
    )
    names = [f"x{j:02d}" for j in range(args.columns)]
    with tempfile.TemporaryDirectory() as tmp:
        values = [
            (unit(j) * 1000).cast("decimal(10,2)").cast("string").alias(n)
            for j, n in enumerate(names)
        ]
        spark.range(args.rows).select(*values).write.option("header", True).csv(tmp + "/wide")
        schema = T.StructType([T.StructField(n, T.StringType()) for n in names])
        raw = spark.read.schema(schema).option("header", True).csv(tmp + "/wide")
        variants = {
            "scan": lambda c: F.col(c),
            "default cast": lambda c: PLAIN_NUMBERS.read(F.col(c), T.DoubleType()),
            "thousands + signs": lambda c: NumberText(".", ",", True).read(
                F.col(c), T.DoubleType()
            ),
        }

        def run(make) -> float:
            start = time.perf_counter()
            raw.select(*[make(n).alias(n) for n in names]).write.format("noop").mode(
                "overwrite"
            ).save()
            return time.perf_counter() - start

        for make in variants.values():  # warm-up: compile each select once
            run(make)
        times = {name: [] for name in variants}
        for _ in range(args.repeats):
            for name, make in variants.items():
                times[name].append(run(make))
    base = statistics.median(times["default cast"])
    print(f"{args.rows:,} rows x {args.columns} text columns, medians of {args.repeats} runs")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"  {name:18s} {median:7.2f} s   {median / base:5.2f} x the default cast")
    spark.stop()


if __name__ == "__main__":
    main()
