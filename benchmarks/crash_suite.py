"""Crash suite: SIGKILL every writing job at random moments and at its write and commit
moments, then check the tables.

What it does:

1. Prepares a scratch directory: sample data (``--rows`` reference rows, ``--seed``), one
   effective config per batch (``config-<batch>.yaml``: storage, MLflow store and Spark's
   local dirs inside the scratch directory, ``local[2]``, 2 shuffle partitions, the ``rs``
   Delta backend), then runs the chain of ``ml-engine demo`` once, uninterrupted, in this
   process (its own Spark session, :func:`ml_engine.jobs.run_job`): reference ingest -> clean
   -> detect_outliers -> build_features -> build_training_set -> train, current ingest ->
   clean -> detect_outliers -> build_features -> score -> drift_report. Before each job it
   copies the storage directory (tables, run log, outlier model, MLflow store: the job's
   *starting state*) and reads the job's *starting outputs*; after it, the job's *golden
   outputs*. Outputs are the visible rows of every table the job writes
   (:data:`ml_engine.jobs.JOBS` ``writes``), read through :class:`ml_engine.catalog.BatchCatalog`
   (every complete batch at its recorded version), without the volatile columns
   :data:`VOLATILE_COLUMNS`, as a sorted list of rows. ``source_file`` is compared: the raw
   files stay at one path for the whole suite.
2. For each step (a job on one batch, ``job@batch``), first runs it uninterrupted twice
   more from its starting state: as a separate process (``ml-engine run <job> --config
   config-<batch>.yaml --set batch_id=<batch>``), polling the output tables and the run log
   every few milliseconds for its duration, its *writes* (a new write directory of an
   output table gets its first Parquet file, temporary files of a running task included)
   and its *commits* (a new ``_delta_log/<version>.json`` in an output table or in
   ``job_runs``); and with ``run_job`` in this process. Both must give the golden rows.
   Columns whose values differ between these runs (randomised sketches: imputed medians,
   quantiles, fences, drift statistics) are reported as *unstable*, count as a failure of
   the step, and are left out of that step's comparisons below, so that a crash problem is
   not drowned in them; rows that differ are a failure. Then ``--trials`` times: restores
   the starting state, starts the process again the same way in a new session (process
   group) and SIGKILLs the whole group (Python driver, its JVM and anything else left in
   the session) at one moment, cycling over the kinds (``--moments``): ``commit n`` (the
   n-th new commit file appeared; n cycles over the step's commits), ``random`` (uniform
   over the measured duration, JVM start included) and ``write n`` (the n-th write
   started; n cycles over the step's writes). A job that ends before its moment is counted
   as ``finished`` (not killed), must have logged its run and written the golden rows, and
   is checked the same way.
3. After each kill, in this process (its Spark session, delta-rs and pyarrow):

   * every table directory with a commit opens; every commit file is whole JSON; versions
     are contiguous from 0; every version loads in delta-rs and every data file it names
     exists with the logged size and reads completely with pyarrow with the logged row
     count; the latest version reads in Spark with that row count (no partial version);
   * for every batch visible in ``bronze`` or in the ingest rows of ``quarantine``: input
     rows (the raw files' data lines, checked against ``MANIFEST.json``) = bronze rows +
     ingest quarantine rows;
   * each output table of the job shows either its starting rows or its golden rows, and
     all of them the same side (``invisible``: all starting, ``visible``: all golden); any
     other content, or a mix, is a failure. Whether the run log recorded the run is
     noted: a visible batch without a run log row (``unlogged``) is read through the
     catalog's fallback for tables the run log does not know;
   * the job is rerun in this process (``run_job``, same config file) and its outputs must
     equal the golden ones exactly; rows beyond them are reported as duplicates when they
     repeat golden rows; the run log must record the rerun, and the input rows check is
     repeated.

4. Prints one line per trial, then a table per step: trials, kills by moment kind, jobs that
   finished before their moment, kills that left the batch visible / invisible (and
   unlogged), trials with a failed check, unstable columns, seconds per trial; the unstable
   columns and the first failure of each step in full; the total and the wall time. Exit
   code 1 when any check failed or a step is not reproducible.

Each failing trial keeps a copy of the storage directory as the kill left it under
``<workdir>/failures/<step>-<trial>/`` and the child's output under ``<workdir>/logs/``
(the scratch directory is kept when anything failed, with ``--keep`` or ``--workdir``); the
report prints how to reproduce: copy the step's starting state to the storage root, run
the printed command, kill its process group at the printed moment.

Not covered: ``train``. It writes no table but an MLflow run and a registered model version
with aliases; the store numbers versions, so a rerun after a kill that had registered one
registers the next number, and there is no golden registry state to compare with exactly
(checking it honestly would mean judging model equivalence). Non-table outputs (the outlier
model directory, the drift report file, the MLflow runs of score and drift_report) are not
checked.

Usage::

    .venv/bin/python benchmarks/crash_suite.py                        # every step, 20 trials
    .venv/bin/python benchmarks/crash_suite.py --jobs clean@current score --trials 3
    .venv/bin/python benchmarks/crash_suite.py --jobs ingest --rows 5000 --seed 7 --keep

``--jobs`` takes job names (every batch the chain runs them on) or ``job@batch``;
``--workdir DIR`` keeps the scratch directory there and reuses its prepared chain when
rows and seed match.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Restoring a starting state replaces mlflow.db by a copy; pooled SQLite connections of this
# process would keep reading the replaced file. Set before MLflow is imported.
os.environ["MLFLOW_SQLALCHEMYSTORE_POOLCLASS"] = "NullPool"
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from deltalake import DeltaTable  # noqa: E402

from ml_engine import jobs as J  # noqa: E402
from ml_engine.catalog import BatchCatalog  # noqa: E402
from ml_engine.config import SparkConfig, dump_config, load_config  # noqa: E402
from ml_engine.demo import CURRENT_JOBS, REFERENCE_JOBS  # noqa: E402
from ml_engine.tables.base import BATCH_COLUMN, BatchNotFoundError  # noqa: E402

SAMPLE_CONFIG = "ml-engine:sample"
RUN_LOG = "job_runs"
BATCHES = ("reference", "current")
CHAIN = [("reference", j) for j in REFERENCE_JOBS] + [("current", j) for j in CURRENT_JOBS]
# Columns whose values differ between two runs of the same job on the same input.
VOLATILE_COLUMNS = {
    "ingested_at": "bronze, silver, quarantine: the clock of the ingest run",
    "computed_at": "dq_metrics, drift_metrics: the clock of the run",
    "scored_at": "predictions: the clock of the run",
    "completed_at": "job_runs: the clock of the run",
    "run_id": "dq_metrics: a new id per run; drift_metrics: the MLflow run; job_runs",
}
MOMENTS = ("commit", "random", "write")
COMMIT_FILE = re.compile(r"\d{20}\.json")
POLL_SECONDS = 0.003
SPARK_CONF = {"spark.sql.shuffle.partitions": "2", "spark.ui.enabled": "false"}


# ------------------------------------------------------------------------------ outputs


@dataclass(frozen=True)
class Visible:
    """The visible rows of one table (volatile columns removed), sorted; empty when the table
    does not exist."""

    columns: tuple[str, ...]
    rows: tuple[tuple, ...]

    def same(self, other: Visible) -> bool:
        if self.rows != other.rows:
            return False
        return not self.rows or self.columns == other.columns


def _plain(value: Any) -> Any:
    """A collected value as a hashable, comparable one (NaN equal to itself)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):  # Row is a tuple
        return tuple(_plain(v) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def complete_rows(catalog: BatchCatalog, path: str):
    """Every complete batch of the table through the run log; None when there is none (no
    table, or only commits of runs that never completed)."""
    if not catalog.tables.exists(path):
        return None
    if BATCH_COLUMN in catalog.tables.read(path).columns:
        try:
            return catalog.read_complete(path)[0]
        except BatchNotFoundError:
            return None
    # training_set has no batch column (BatchCatalog.read_complete cannot filter it): the
    # whole table at the version its latest completed run recorded, else the latest.
    recorded = catalog.visible(path)
    if recorded == {}:
        return None
    return catalog.tables.read(path, version=max(recorded.values()) if recorded else None)


def visible_rows(catalog: BatchCatalog, path: str) -> Visible:
    """What readers see of the table through the run log (every complete batch)."""
    df = complete_rows(catalog, path)
    if df is None:
        return Visible((), ())
    columns = tuple(c for c in df.columns if c not in VOLATILE_COLUMNS)
    quoted = ["`" + c.replace("`", "``") + "`" for c in columns]
    rows = [tuple(_plain(v) for v in r) for r in df.select(*quoted).collect()]
    return Visible(columns, tuple(sorted(rows, key=repr)))


def _short(columns: tuple[str, ...], row: tuple, limit: int = 300) -> str:
    text = json.dumps(dict(zip(columns, row, strict=False)), default=str)
    return text if len(text) <= limit else text[:limit] + "...}"


def difference(got: Visible, want: Visible) -> str:
    """How ``got`` differs from ``want``, in a line: counts, duplicates, and for one changed
    row the columns that differ from the most similar expected row."""
    if got.columns != want.columns and got.rows and want.rows:
        return f"columns {list(got.columns)}, expected {list(want.columns)}"
    have, need = Counter(got.rows), Counter(want.rows)
    extra, missing = have - need, need - have
    columns = got.columns or want.columns
    parts = [f"{len(got.rows)} rows, expected {len(want.rows)}"]
    repeated = sum(min(n, have[row] - need[row]) for row, n in extra.items() if row in need)
    if repeated:
        parts.append(f"{repeated} duplicated rows")
    if extra:
        parts.append(f"{sum(extra.values())} not expected")
    if missing:
        parts.append(f"{sum(missing.values())} missing")
    if extra and missing:
        row = next(iter(extra))
        near = max(
            list(missing)[:500], key=lambda m: sum(a == b for a, b in zip(row, m, strict=True))
        )
        changed = [
            f"{c}={a!r} (expected {b!r})"
            for c, a, b in zip(columns, row, near, strict=True)
            if a != b
        ]
        parts.append(f"e.g. a row {_short(columns[:2], row[:2])} differs in {', '.join(changed)}")
    elif extra:
        parts.append(f"e.g. {_short(columns, next(iter(extra)))}")
    elif missing:
        parts.append(f"e.g. missing {_short(columns, next(iter(missing)))}")
    return "; ".join(parts)


def without(v: Visible, drop: tuple[str, ...]) -> Visible:
    """``v`` without the columns ``drop``."""
    if not drop:
        return v
    keep = [i for i, c in enumerate(v.columns) if c not in drop]
    rows = sorted((tuple(r[i] for i in keep) for r in v.rows), key=repr)
    return Visible(tuple(v.columns[i] for i in keep), tuple(rows))


def unstable_columns(a: Visible, b: Visible) -> tuple[str, ...] | None:
    """The columns two uninterrupted runs disagree on: those whose multiset of values
    differs, when leaving them out makes the rows equal; None when it does not (the runs
    differ in rows, not only in values)."""
    if a.same(b):
        return ()
    if a.columns != b.columns or len(a.rows) != len(b.rows):
        return None
    differ = tuple(
        c
        for i, c in enumerate(a.columns)
        if Counter(r[i] for r in a.rows) != Counter(r[i] for r in b.rows)
    )
    return differ if without(a, differ).same(without(b, differ)) else None


# -------------------------------------------------------------------------------- chain


@dataclass
class Step:
    """One job of the chain on one batch, with its starting state and outputs."""

    index: int
    job: str
    batch: str
    writes: tuple[str, ...]
    state: str
    config: str
    before: dict[str, Visible]
    golden: dict[str, Visible]
    runs_before: int
    seconds: float

    @property
    def name(self) -> str:
        return f"{self.job}@{self.batch}"


@dataclass
class Prepared:
    rows: int
    seed: int
    lines: dict[str, int]
    steps: list[Step]


def spark_conf(root: Path) -> dict[str, str]:
    # Killed JVMs leave their block manager directories behind: keep them in the scratch dir.
    return {**SPARK_CONF, "spark.local.dir": str(root / "tmp" / "spark")}


def write_config(root: Path, batch: str, extra: list[str]) -> Path:
    """Writes the effective config of ``batch`` (what the child processes load)."""
    work = root / "work"
    overrides = [
        f"storage.root={work}",
        f"ingest.path={root / 'raw' / batch}",
        f"batch_id={batch}",
        f"mlflow.tracking_uri=sqlite:///{work / 'mlflow.db'}",
        "delta.backend=rs",
        "spark.master=local[2]",
        *(f"spark.conf.{k}={v}" for k, v in spark_conf(root).items()),
        *extra,
    ]
    path = root / f"config-{batch}.yaml"
    dump_config(load_config(SAMPLE_CONFIG, overrides), path)
    return path


def input_lines(raw: Path) -> dict[str, int]:
    """Data lines per batch of the raw CSV files (header and blank lines excluded), checked
    against the generator's MANIFEST.json."""
    manifest = json.loads((raw / "MANIFEST.json").read_text())
    lines = {}
    for batch in BATCHES:
        n = 0
        for f in sorted((raw / batch).glob("*.csv")):
            text = [ln for ln in f.read_text(encoding="utf-8").splitlines() if ln.strip()]
            n += max(len(text) - 1, 0)
        expected = manifest["batches"][batch]["lines"]
        if n != expected:
            raise SystemExit(f"raw batch {batch}: {n} data lines, MANIFEST.json says {expected}")
        lines[batch] = n
    return lines


def runs_recorded(tables, root: Path, job: str, batch: str) -> int:
    """Runs of ``job`` for ``batch`` in the run log."""
    from pyspark.sql import functions as F

    path = str(root / "work" / "tables" / RUN_LOG)
    if not tables.exists(path):
        return 0
    runs = tables.read(path).where((F.col("job") == job) & (F.col("batch_id") == batch))
    return runs.select("run_id").distinct().count()


def restore(root: Path, state: str) -> None:
    work = root / "work"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(state, work, symlinks=True)


def prepare(spark, tables, root: Path, rows: int, seed: int) -> Prepared:
    """Sample data, configs, and the uninterrupted chain with its states and golden outputs."""
    from ml_engine.sample_data import generate_sample_data

    raw, work = root / "raw", root / "work"
    generate_sample_data(spark, str(raw), rows=rows, seed=seed, files=2)
    lines = input_lines(raw)
    print(f"sample data: {lines} input rows per batch ({raw})")
    configs = {"reference": write_config(root, "reference", [])}
    score_overrides: list[str] = []
    steps: list[Step] = []
    work.mkdir(parents=True, exist_ok=True)
    for index, (batch, job) in enumerate(CHAIN):
        if batch not in configs:
            configs[batch] = write_config(root, batch, score_overrides)
        cfg = load_config(configs[batch])
        catalog = BatchCatalog(tables, cfg.storage.table_path(RUN_LOG))
        writes = J.JOBS[job].writes
        state = root / "states" / f"{index:02d}-{job}@{batch}"
        shutil.copytree(work, state, symlinks=True)
        before = {t: visible_rows(catalog, cfg.storage.table_path(t)) for t in writes}
        runs_before = runs_recorded(tables, root, job, batch)
        t0 = time.perf_counter()
        result = J.run_job(job, spark, cfg, tables)
        seconds = time.perf_counter() - t0
        golden = {t: visible_rows(catalog, cfg.storage.table_path(t)) for t in writes}
        if job == "train" and result.metrics.get("gate") != "champion":
            # As the demo does: score the new version although the gate did not promote it.
            score_overrides.append(f"score.model_version={result.metrics['model_version']}")
        steps.append(
            Step(
                index,
                job,
                batch,
                writes,
                str(state),
                str(configs[batch]),
                before,
                golden,
                runs_before,
                seconds,
            )  # fmt: skip
        )
        sizes = ", ".join(f"{t} {len(before[t].rows)} -> {len(golden[t].rows)}" for t in writes)
        print(f"  {job}@{batch}: {seconds:5.1f} s in-process; visible rows {sizes or '-'}")
    return Prepared(rows, seed, lines, steps)


# ------------------------------------------------------------------------- the child job


@dataclass
class Event:
    seconds: float
    kind: str  # write | commit
    table: str
    what: str


class Watcher:
    """Polls the output tables and the run log for new writes and commits."""

    def __init__(self, dirs: dict[str, Path]):
        self.dirs = dirs
        self.old = {n: set(_listdir(d)) for n, d in dirs.items()}
        self.old_commits = {n: set(_listdir(d / "_delta_log")) for n, d in dirs.items()}
        self.seen: set[tuple[str, str, str]] = set()
        self.events: list[Event] = []

    def poll(self, seconds: float) -> None:
        for name, d in self.dirs.items():
            for entry in _listdir(d):
                if entry == "_delta_log" or entry in self.old[name]:
                    continue
                if ("write", name, entry) not in self.seen:
                    first = _first_parquet(d / entry)
                    if first is not None:
                        self.seen.add(("write", name, entry))
                        self.events.append(Event(seconds, "write", name, first))
            for entry in sorted(_listdir(d / "_delta_log")):
                if COMMIT_FILE.fullmatch(entry) and entry not in self.old_commits[name]:
                    if ("commit", name, entry) not in self.seen:
                        self.seen.add(("commit", name, entry))
                        self.events.append(Event(seconds, "commit", name, f"v{int(entry[:20])}"))

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _first_parquet(path: Path) -> str | None:
    for folder, _, files in os.walk(path):
        for f in files:
            if f.endswith(".parquet"):
                return os.path.relpath(os.path.join(folder, f), path.parent)
    return None


def _session_members(sid: int) -> list[int]:
    """Processes of the session ``sid`` (the child we started and everything it started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILLs the child's process group, reaps it, then anything left in its session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = _session_members(proc.pid)
        if not left:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


@dataclass
class ChildRun:
    exit_code: int | None  # None: killed
    seconds: float
    events: list[Event]
    moment: str  # what the kill hit, or "finished"
    log: str


def child_command(step: Step) -> list[str]:
    exe = Path(sys.executable).parent / "ml-engine"
    return [str(exe), "run", step.job, "--config", step.config, "--set", f"batch_id={step.batch}"]


def run_child(
    root: Path, step: Step, log: Path, kind: str | None, n: int, at: float, timeout: float
) -> ChildRun:
    """Runs the step as ``ml-engine run`` in a new session; with ``kind``, SIGKILLs the session
    at that moment (``commit``/``write``: when the ``n``-th appeared; ``random``: ``at`` s)."""
    dirs = {t: root / "work" / "tables" / t for t in (*step.writes, RUN_LOG)}
    watcher = Watcher(dirs)
    env = {**os.environ, "TMPDIR": str(root / "tmp"), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", None)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            child_command(step),
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        planned = {"commit": f"commit {n}", "write": f"write {n}", "random": f"random {at:.2f} s"}
        finished = f"finished before {planned[kind]}" if kind else "finished"
        moment = finished
        try:
            while True:
                elapsed = time.monotonic() - t0
                watcher.poll(elapsed)
                if kind in ("commit", "write") and watcher.count(kind) >= n:
                    event = [e for e in watcher.events if e.kind == kind][n - 1]
                    moment = f"{kind} {n} ({event.table} {event.what}, {event.seconds:.2f} s)"
                elif kind == "random" and elapsed >= at:
                    done = Counter(e.kind for e in watcher.events)
                    moment = (
                        f"random {elapsed:.2f} s (after {done['write']} writes, "
                        f"{done['commit']} commits)"
                    )
                if moment != finished:
                    _kill_session(proc)
                    return ChildRun(None, elapsed, watcher.events, moment, str(log))
                if proc.poll() is not None:
                    watcher.poll(time.monotonic() - t0)
                    return ChildRun(proc.returncode, elapsed, watcher.events, moment, str(log))
                if elapsed > timeout:
                    _kill_session(proc)
                    return ChildRun(
                        -1, elapsed, watcher.events, f"hung > {timeout:.0f} s", str(log)
                    )
                time.sleep(POLL_SECONDS)
        finally:
            _kill_session(proc)  # also reaps anything a finished job left in its session


def _tail(log: str, lines: int = 6) -> str:
    text = Path(log).read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:])


# --------------------------------------------------------------------------------- checks


# (file, size) -> rows read, so the unchanged files of restored states are read once.
FileCheckCache = dict


def check_table(path: Path, tables, cache: FileCheckCache) -> list[str]:
    """Problems of one table directory: commits, versions, data files (see module doc)."""
    problems: list[str] = []
    name = path.name
    log = path / "_delta_log"
    names = [p for p in _listdir(log) if COMMIT_FILE.fullmatch(p)]
    if not names:
        return []  # no commit: not a table yet (files of a killed first write are invisible)
    versions = sorted(int(p[:20]) for p in names)
    for v in versions:
        text = (log / f"{v:020d}.json").read_text(encoding="utf-8")
        for i, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    json.loads(line)
                except ValueError as exc:
                    problems.append(f"{name}: commit {v} line {i + 1} is not JSON: {exc}")
    if versions != list(range(versions[-1] + 1)):
        problems.append(f"{name}: versions {versions} are not contiguous from 0")
    try:
        table = DeltaTable(str(path))
    except Exception as exc:  # noqa: BLE001 - any failure to open is the finding
        return [*problems, f"{name}: does not open in delta-rs: {exc}"]
    latest_rows = None
    for v in versions:
        try:
            table.load_as_version(v)
            actions = pa.table(table.get_add_actions(flatten=True))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{name}: version {v} does not load: {exc}")
            continue
        paths = actions.column("path").to_pylist()
        sizes = actions.column("size_bytes").to_pylist()
        counts = actions.column("num_records").to_pylist()
        total = 0
        for p, size, count in zip(paths, sizes, counts, strict=True):
            f = path / urllib.parse.unquote(p)
            key = (str(f), int(size))
            if key not in cache:
                if not f.is_file():
                    problems.append(f"{name}: version {v} names a missing file {p}")
                    continue
                if f.stat().st_size != size:
                    problems.append(
                        f"{name}: version {v}: {p} has {f.stat().st_size} bytes, log says {size}"
                    )
                    continue
                try:
                    cache[key] = pq.read_table(f).num_rows
                except Exception as exc:  # noqa: BLE001
                    problems.append(f"{name}: version {v}: {p} does not read: {exc}")
                    continue
            if count is not None and cache[key] != count:
                problems.append(f"{name}: version {v}: {p} has {cache[key]} rows, log says {count}")
            total += cache[key]
        latest_rows = total
    try:
        read = tables.read(str(path)).count()
    except Exception as exc:  # noqa: BLE001
        problems.append(f"{name}: latest version does not read in Spark: {exc}")
    else:
        if latest_rows is not None and read != latest_rows:
            problems.append(
                f"{name}: Spark reads {read} rows of the latest version, files hold {latest_rows}"
            )
    return problems


def check_all_tables(root: Path, tables, cache: FileCheckCache) -> list[str]:
    folder = root / "work" / "tables"
    problems = []
    for path in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.exists() else []:
        problems += check_table(path, tables, cache)
    return problems


def check_input_rows(catalog: BatchCatalog, cfg, lines: dict[str, int]) -> list[str]:
    """Input rows = bronze rows + ingest quarantine rows, for every visible batch."""
    from pyspark.sql import functions as F

    counts: dict[str, dict[str, int]] = {"bronze": {}, "quarantine": {}}
    for name in counts:
        df = complete_rows(catalog, cfg.storage.table_path(name))
        if df is None:
            continue
        if name == "quarantine":
            df = df.where(F.col("stage") == "ingest")
        counts[name] = {r[0]: r[1] for r in df.groupBy("batch_id").count().collect()}
    problems = []
    for batch in sorted(set(counts["bronze"]) | set(counts["quarantine"])):
        bronze, quarantined = counts["bronze"].get(batch, 0), counts["quarantine"].get(batch, 0)
        if bronze + quarantined != lines.get(batch):
            problems.append(
                f"batch {batch}: input rows {lines.get(batch)} != bronze {bronze} + ingest "
                f"quarantine {quarantined} (visible through the catalog)"
            )
    return problems


# --------------------------------------------------------------------------------- trials


@dataclass
class Trial:
    step: str
    number: int
    kind: str
    moment: str
    killed: bool
    outcome: str  # visible | invisible
    logged: bool
    failures: list[str]
    seconds: float
    child_seconds: float
    rerun_seconds: float
    log: str
    kept: str  # copy of the storage directory right after the kill (failing trials)


@dataclass
class Measure:
    """What the uninterrupted runs of a step showed."""

    seconds: float
    writes: int
    commits: int
    events: list[Event] = field(default_factory=list)
    # table -> columns whose values differ between uninterrupted runs (left out of checks)
    unstable: dict[str, tuple[str, ...]] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # table -> how two runs differed


def outputs_after(
    step: Step, catalog: BatchCatalog, cfg, unstable: dict[str, tuple[str, ...]]
) -> tuple[str, list[str]]:
    """``visible``/``invisible`` and the failures of the job's outputs after a kill."""
    sides, failures = {}, []
    for t in step.writes:
        drop = unstable.get(t, ())
        got = without(visible_rows(catalog, cfg.storage.table_path(t)), drop)
        was, gold = without(step.before[t], drop), without(step.golden[t], drop)
        if was.same(gold):
            if not got.same(gold):
                failures.append(f"{t}: neither starting nor golden rows: {difference(got, gold)}")
        elif got.same(gold):
            sides[t] = "golden"
        elif got.same(was):
            sides[t] = "starting"
        else:
            failures.append(
                f"{t}: neither starting nor golden rows (vs golden: {difference(got, gold)}; "
                f"vs starting: {difference(got, was)})"
            )
    if len(set(sides.values())) > 1:
        failures.append(
            "a mix of starting and golden outputs: "
            + ", ".join(f"{t} {side}" for t, side in sorted(sides.items()))
        )
    outcome = "visible" if sides and set(sides.values()) == {"golden"} else "invisible"
    return outcome, failures


def measure(root: Path, step: Step, spark, tables, logs: Path) -> tuple[Measure | None, list[str]]:
    """Two more uninterrupted runs of the step from its starting state.

    As a process: duration, writes and commits (the timeline of the kill moments), and its
    outputs must equal the golden ones (the command line and ``run_job`` agree). In this
    process again: reproducibility. Columns whose values differ between the three runs are
    the step's unstable columns; rows that differ are failures.
    """
    restore(root, step.state)
    run = run_child(root, step, logs / f"{step.name}-uninterrupted.log", None, 0, 0.0, 1800)
    if run.exit_code != 0:
        return None, [
            f"uninterrupted run ended with {run.moment}, exit {run.exit_code}: {_tail(run.log)}"
        ]
    cfg = load_config(step.config)
    catalog = BatchCatalog(tables, cfg.storage.table_path(RUN_LOG))
    runs = {
        "`ml-engine run`": {
            t: visible_rows(catalog, cfg.storage.table_path(t)) for t in step.writes
        }
    }
    restore(root, step.state)
    J.run_job(step.job, spark, cfg, tables)
    runs["a second run_job"] = {
        t: visible_rows(catalog, cfg.storage.table_path(t)) for t in step.writes
    }
    failures, unstable, examples = [], {}, {}
    for t in step.writes:
        columns: set[str] = set()
        for what, outputs in runs.items():
            differ = unstable_columns(outputs[t], step.golden[t])
            if differ is None:
                failures.append(
                    f"uninterrupted runs differ in rows of {t} ({what} vs the golden run_job): "
                    f"{difference(outputs[t], step.golden[t])}"
                )
            else:
                columns |= set(differ)
                if differ and t not in examples:
                    examples[t] = difference(outputs[t], step.golden[t])
        if columns:
            unstable[t] = tuple(sorted(columns))
    kinds = Counter(e.kind for e in run.events)
    m = Measure(run.seconds, kinds["write"], kinds["commit"], run.events, unstable, examples)
    return m, failures


def run_trial(
    root: Path,
    step: Step,
    number: int,
    plan: tuple[str, int, float],
    m: Measure,
    spark,
    tables,
    lines: dict[str, int],
    cache: FileCheckCache,
) -> Trial:
    kind, n, at = plan
    started = time.perf_counter()
    restore(root, step.state)
    log = root / "logs" / f"{step.name}-{number:03d}.log"
    run = run_child(root, step, log, kind, n, at, timeout=10 * m.seconds + 300)
    killed = run.exit_code is None
    failures = []
    if not killed and run.exit_code != 0:
        failures.append(f"the job ended with exit code {run.exit_code}: {_tail(run.log)}")
    cfg = load_config(step.config)
    catalog = BatchCatalog(tables, cfg.storage.table_path(RUN_LOG))
    failures += check_all_tables(root, tables, cache)
    failures += check_input_rows(catalog, cfg, lines)
    outcome, output_failures = outputs_after(step, catalog, cfg, m.unstable)
    failures += output_failures
    logged = runs_recorded(tables, root, step.job, step.batch) > step.runs_before
    if not killed and run.exit_code == 0:
        if not logged:
            failures.append("the job finished but its run is not in the run log")
        if outcome != "visible" and any(
            not step.before[t].same(step.golden[t]) for t in step.writes
        ):
            failures.append("the job finished but its outputs are not the golden ones")
    keep = root / "failures" / f"{step.name}-{number:03d}"
    shutil.rmtree(keep, ignore_errors=True)
    if failures:
        shutil.copytree(root / "work", keep, symlinks=True)

    t0 = time.perf_counter()
    try:
        J.run_job(step.job, spark, cfg, tables)
    except Exception as exc:  # noqa: BLE001 - the rerun must succeed whatever the state
        failures.append(f"rerun failed: {type(exc).__name__}: {str(exc).splitlines()[0][:500]}")
    else:
        for t in step.writes:
            drop = m.unstable.get(t, ())
            got = without(visible_rows(catalog, cfg.storage.table_path(t)), drop)
            gold = without(step.golden[t], drop)
            if not got.same(gold):
                failures.append(
                    f"after the rerun, {t} differs from golden: {difference(got, gold)}"
                )
        failures += [f"after the rerun: {p}" for p in check_input_rows(catalog, cfg, lines)]
        if runs_recorded(tables, root, step.job, step.batch) <= step.runs_before:
            failures.append("after the rerun, the run log has no run of the job for the batch")
    rerun = time.perf_counter() - t0
    return Trial(
        step.name,
        number,
        kind,
        run.moment,
        killed,
        outcome,
        logged,
        failures,
        time.perf_counter() - started,
        run.seconds,
        rerun,
        run.log,
        str(keep),
    )


def plans(
    step: Step, m: Measure, trials: int, seed: int, moments: tuple[str, ...] = MOMENTS
) -> list[tuple[str, int, float]]:
    """The moment of each trial: kinds cycle over ``moments`` (commit, random, write); n
    cycles over the step's commits / writes; random moments are uniform over the measured
    duration."""
    rng = random.Random(f"{seed}:{step.name}")
    out = []
    for i in range(trials):
        kind = moments[i % len(moments)]
        count = {"commit": m.commits, "write": m.writes}.get(kind, 0)
        if kind != "random" and count == 0:
            kind = "random"
        n = (i // len(moments)) % count + 1 if kind != "random" else 0
        out.append((kind, n, rng.uniform(0, m.seconds) if kind == "random" else 0.0))
    return out


# --------------------------------------------------------------------------------- report


def report(
    steps: list[Step],
    trials: list[Trial],
    setup_failures: dict[str, list[str]],
    unstable: dict[str, dict[str, tuple[str, ...]]],
) -> int:
    """Prints the table; returns the exit code (1: a check failed or a step is not
    reproducible)."""
    header = (
        f"{'step':<28}{'trials':>7}{'random':>8}{'write':>7}{'commit':>8}{'finished':>10}"
        f"{'visible':>9}{'invisible':>11}{'unlogged':>10}{'failed':>8}{'unstable':>10}"
        f"{'s/trial':>9}"
    )
    print("\n" + header)
    print("-" * len(header))
    total = Counter()
    firsts = []
    for step in steps:
        name = step.name
        mine = [t for t in trials if t.step == name]
        c = Counter()
        for t in mine:
            c["trials"] += 1
            c[t.kind if t.killed else "finished"] += 1
            c["visible"] += t.killed and t.outcome == "visible"
            c["invisible"] += t.killed and t.outcome == "invisible"
            c["unlogged"] += t.killed and t.outcome == "visible" and not t.logged
            c["failed"] += bool(t.failures)
        c["failed"] += len(setup_failures.get(name, []))
        c["unstable"] = sum(len(cols) for cols in unstable.get(name, {}).values())
        seconds = sum(t.seconds for t in mine) / len(mine) if mine else 0.0
        print(
            f"{name:<28}{c['trials']:>7}{c['random']:>8}{c['write']:>7}{c['commit']:>8}"
            f"{c['finished']:>10}{c['visible']:>9}{c['invisible']:>11}{c['unlogged']:>10}"
            f"{c['failed']:>8}{c['unstable']:>10}{seconds:>9.1f}"
        )
        total.update(c)
        first = next((t for t in mine if t.failures), None)
        work = Path(step.config).parent / "work"
        if setup_failures.get(name):
            firsts.append(f"{name} (uninterrupted run): {setup_failures[name][0]}")
        if first is not None:
            firsts.append(
                f"{name} trial {first.number}, killed at {first.moment}; outputs "
                f"{first.outcome}, run {'logged' if first.logged else 'not logged'}:\n      "
                + "\n      ".join(first.failures)
                + f"\n    tables after the kill: {first.kept}/tables; child log {first.log}"
                + f"\n    reproduce: rm -rf {work} && cp -r {step.state} {work} && "
                + " ".join(child_command(step))
                + f"; kill -9 the process group at {first.moment.split(' (')[0]}"
            )
    print("-" * len(header))
    seconds = sum(t.seconds for t in trials) / len(trials) if trials else 0.0
    print(
        f"{'total':<28}{total['trials']:>7}{total['random']:>8}{total['write']:>7}"
        f"{total['commit']:>8}{total['finished']:>10}{total['visible']:>9}"
        f"{total['invisible']:>11}{total['unlogged']:>10}{total['failed']:>8}"
        f"{total['unstable']:>10}{seconds:>9.1f}"
    )
    print(
        "unlogged: visible although the run log has no row of the run (a table the run log "
        "does not know is read as it is); unstable: columns that differ between uninterrupted "
        "runs, left out of that step's comparisons"
    )
    shaky = [
        f"{name}: " + "; ".join(f"{t} ({', '.join(cols)})" for t, cols in sorted(by.items()))
        for name, by in unstable.items()
        if by
    ]
    if shaky:
        print("\nnot reproducible (two uninterrupted runs from the same state differ in):")
        for line in shaky:
            print(f"  {line}")
    if firsts:
        print("\nfirst failure of each step:")
        for line in firsts:
            print(f"  {line}")
    return 1 if total["failed"] or total["unstable"] else 0


# ----------------------------------------------------------------------------------- main


def select_steps(prepared: Prepared, wanted: list[str] | None) -> list[Step]:
    writing = [s for s in prepared.steps if s.writes]
    if not wanted:
        return writing
    chosen = []
    for w in wanted:
        hits = [s for s in writing if w in (s.job, s.name)]
        if not hits:
            names = ", ".join(s.name for s in writing)
            raise SystemExit(
                f"--jobs {w}: no such writing step (train writes no table); steps: {names}"
            )
        chosen += [s for s in hits if s not in chosen]
    return sorted(chosen, key=lambda s: s.index)


def load_or_prepare(spark, tables, root: Path, rows: int, seed: int) -> Prepared:
    saved = root / "prepared.pkl"
    if saved.exists():
        with open(saved, "rb") as f:
            prepared = pickle.load(f)
        if (prepared.rows, prepared.seed) == (rows, seed):
            print(f"reusing the prepared chain in {root}")
            return prepared
    for sub in ("raw", "work", "states", "failures", "logs"):
        shutil.rmtree(root / sub, ignore_errors=True)
    t0 = time.perf_counter()
    print(f"preparing the uninterrupted chain in {root} ({rows} reference rows, seed {seed})")
    prepared = prepare(spark, tables, root, rows, seed)
    print(f"prepared in {time.perf_counter() - t0:.0f} s")
    with open(saved, "wb") as f:
        pickle.dump(prepared, f)
    return prepared


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--jobs", nargs="+", default=None, help="job names or job@batch (default: all)")
    p.add_argument("--trials", type=int, default=20, help="kills per step (default 20)")
    p.add_argument("--rows", type=int, default=2000, help="reference rows of the sample data")
    p.add_argument("--seed", type=int, default=42, help="seed of the sample data and the moments")
    p.add_argument(
        "--moments",
        default=",".join(MOMENTS),
        help="kinds of kill moments to cycle over, comma-separated (default commit,random,write)",
    )
    p.add_argument("--workdir", default=None, help="scratch directory (kept; reused if prepared)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    moments = tuple(k.strip() for k in args.moments.split(",") if k.strip())
    if not moments or set(moments) - set(MOMENTS):
        p.error(f"--moments: use a comma-separated subset of {','.join(MOMENTS)}")

    started = time.perf_counter()
    root = Path(args.workdir or tempfile.mkdtemp(prefix="ml-engine-crash-")).resolve()
    (root / "tmp").mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(root / "tmp")  # Spark's log and MLflow downloads of this process
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from ml_engine.session import build_session
    from ml_engine.tables import open_tables

    spark = build_session(
        SparkConfig(master="local[2]", app_name="ml-engine-crash-suite", conf=spark_conf(root)),
        quiet=True,
    )
    tables = open_tables(spark, "rs")
    failed = True
    try:
        prepared = load_or_prepare(spark, tables, root, args.rows, args.seed)
        steps = select_steps(prepared, args.jobs)
        print(f"steps: {', '.join(s.name for s in steps)}; {args.trials} trials each")
        cache = FileCheckCache()
        trials: list[Trial] = []
        setup_failures: dict[str, list[str]] = {}
        unstable: dict[str, dict[str, tuple[str, ...]]] = {}
        for step in steps:
            m, problems = measure(root, step, spark, tables, root / "logs")
            if problems:
                setup_failures[step.name] = problems
            if m is None:
                print(f"\n== {step.name}: {problems[0]}")
                continue
            unstable[step.name] = m.unstable
            timeline = ", ".join(f"{e.kind} {e.table} {e.what} @{e.seconds:.1f}s" for e in m.events)
            print(
                f"\n== {step.name}: uninterrupted {m.seconds:.1f} s as a process "
                f"({step.seconds:.1f} s in-process), {m.writes} writes, {m.commits} commits: "
                f"{timeline}"
            )
            for problem in problems:
                print(f"   FAILED {problem}")
            for t, cols in sorted(m.unstable.items()):
                print(
                    f"   not reproducible: {t} columns {', '.join(cols)} (left out of the "
                    f"checks of this step): {m.examples.get(t, '')}"
                )
            for number, plan in enumerate(plans(step, m, args.trials, args.seed, moments), start=1):
                trial = run_trial(root, step, number, plan, m, spark, tables, prepared.lines, cache)
                trials.append(trial)
                state = "killed at " if trial.killed else ""
                print(
                    f"   {number:3d} {state}{trial.moment}: outputs {trial.outcome}, run "
                    f"{'logged' if trial.logged else 'not logged'}; {trial.seconds:.1f} s "
                    f"(job {trial.child_seconds:.1f} s, rerun {trial.rerun_seconds:.1f} s)"
                    + (f"\n       FAILED {trial.failures[0]}" if trial.failures else "")
                )
        code = report(steps, trials, setup_failures, unstable)
        with open(root / "crash_suite.json", "w") as f:
            json.dump([t.__dict__ for t in trials], f, indent=1, default=str)
        failed = code != 0
        print(
            f"\nwall time {time.perf_counter() - started:.0f} s; trial records {root / 'crash_suite.json'}"
        )
        return code
    finally:
        spark.stop()
        if failed or args.keep or args.workdir:
            print(f"scratch directory kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
