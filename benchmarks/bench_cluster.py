"""Benchmark: the whole chain on a two-worker standalone cluster and on ``local[2]``, side by side.

What a user pays for going distributed on one machine. It generates the sample data
(``ml-engine generate-sample-data --rows N``: N reference records, N/3 current ones), zips the
library (``ml-engine package``) and starts a standalone master and two workers (separate JVMs,
one core each, on 127.0.0.1, from the pyspark wheel). Then it runs every job of the demo's
chain (reference batch: ingest -> clean -> detect_outliers -> build_features ->
build_training_set -> train; current batch: ingest -> clean -> detect_outliers ->
build_features -> score -> drift_report) twice, with the same ``spark-submit`` command, the
same config file (``conf/cluster.yaml``), the same ``--set`` overrides and the same memory,
differing only in ``--master``:

* ``local[2]``: one JVM, the driver running the tasks on 2 threads;
* the cluster: the driver JVM plus one executor JVM on each worker (1 core each), the tasks'
  data crossing the loopback network in shuffles.

Each chain has its own storage root and MLflow store (a sqlite file). The two chains advance in
lockstep, job by job, and which one goes first alternates from job to job, so the page cache
favours neither. Each time is the ``spark-submit`` process's wall time, JVM start included
(the same for both). Printed: one line per job with both times and the ratio cluster / local,
then the totals.

Usage::

    python benchmarks/bench_cluster.py                          # 1M reference rows
    python benchmarks/bench_cluster.py --rows 50000             # a quick look
    python benchmarks/bench_cluster.py --set train.tuning.method=none
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import load_average

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))
import services  # noqa: E402 - the cluster the tests start, shared rather than copied


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=1_000_000, help="reference records")
    p.add_argument("--workers", type=int, default=2, help="one-core workers")
    p.add_argument("--driver-memory", default="3g")
    p.add_argument("--executor-memory", default="3g")
    p.add_argument("--worker-memory", default="4g", help="what each worker offers")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", default=None, help="default: a temp dir, removed at the end")
    args = p.parse_args()
    # A SIGTERM ends the run through the cluster's cleanup (its JVMs run in their own sessions).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    from ml_engine.demo import CURRENT_JOBS, REFERENCE_JOBS

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ml-engine-bench-cluster-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = services.spark_env(workdir)
    raw = workdir / "raw"
    print(
        f"ml-engine cluster benchmark: {args.rows:,} reference rows, local[2] vs "
        f"{args.workers} one-core workers, {os.cpu_count()} cores, {load_average()}",
        flush=True,
    )
    t0 = time.perf_counter()
    subprocess.run(
        [
            str(BIN / "ml-engine"),
            "generate-sample-data",
            "--out",
            str(raw),
            "--rows",
            str(args.rows),
        ],
        check=True,
        capture_output=True,
        env=env,
    )
    archive = services.package(workdir / "ml_engine.zip")
    print(f"sample data and library zip: {time.perf_counter() - t0:.0f} s", flush=True)

    results: list[tuple[str, float, float]] = []
    with services.standalone_cluster(workdir, args.workers, args.worker_memory) as cluster:
        steps = [
            (b, j)
            for b, jobs in (("reference", REFERENCE_JOBS), ("current", CURRENT_JOBS))
            for j in jobs
        ]
        for n, (batch, job) in enumerate(steps):
            times = {}
            order = ("local", "cluster") if n % 2 == 0 else ("cluster", "local")
            for where in order:
                master = "local[2]" if where == "local" else cluster.url
                cmd = services.submit_command(
                    master,
                    archive,
                    job,
                    args.overrides,
                    executor_memory=args.executor_memory,
                    driver_memory=args.driver_memory,
                    cores=args.workers,
                    conf={},  # the config's own shuffle partitions (200, adaptive)
                )
                job_env = dict(
                    env,
                    ML_ENGINE_STORAGE_ROOT=str(workdir / where),
                    ML_ENGINE_RAW_PATH=str(raw / batch),
                    MLFLOW_TRACKING_URI=f"sqlite:///{workdir / where}-mlflow.db",
                )
                log = workdir / f"{where}-{job}-{batch}.log"
                started = time.perf_counter()
                with open(log, "w") as out:
                    code = subprocess.run(
                        cmd, stdout=out, stderr=subprocess.STDOUT, env=job_env, cwd=workdir
                    ).returncode
                times[where] = time.perf_counter() - started
                if code != 0:
                    raise SystemExit(f"{job}@{batch} on {where} exited {code}; see {log}")
            results.append((f"{job}@{batch}", times["local"], times["cluster"]))
            print(
                f"{job + '@' + batch:<30} local[2] {times['local']:7.1f} s   cluster "
                f"{times['cluster']:7.1f} s   x{times['cluster'] / times['local']:.2f}   "
                f"{load_average()}",
                flush=True,
            )
    local, cluster = sum(r[1] for r in results), sum(r[2] for r in results)
    print()
    print(f"| job@batch | local[2] s | cluster ({args.workers} workers) s | cluster / local |")
    print("|---|---:|---:|---:|")
    for name, lo, cl in results:
        print(f"| {name} | {lo:.1f} | {cl:.1f} | {cl / lo:.2f} |")
    print(f"| **chain** | **{local:.0f}** | **{cluster:.0f}** | **{cluster / local:.2f}** |")
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
