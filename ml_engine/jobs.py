"""The job registry: one function per job, all with the same signature.

A job function takes ``(spark, cfg, tables)`` and returns a :class:`JobResult`; it reads its
inputs through ``tables``, calls pure transformations and writes its outputs. The command line
(``ml-engine run``) and ``jobs/<name>.py`` wrap it with config loading, session building and
exit codes (see :func:`main`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any


class JobError(RuntimeError):
    """A job cannot finish; the message is the one-line reason printed on stderr."""


class JobNotBuiltError(JobError):
    """The job is part of the design but not implemented yet."""


@dataclass
class JobResult:
    """What a job produced: output name -> path, and a few figures worth printing."""

    job: str
    outputs: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)


# Job name -> "module:function". None: part of the design, not built yet.
JOBS: dict[str, str | None] = {
    "ingest": "ml_engine.quality.ingest:run_ingest",
    "clean": "ml_engine.quality.clean:run_clean",
    "detect_outliers": "ml_engine.outliers:run_detect_outliers",
    "build_features": "ml_engine.features:run_build_features",
    "build_training_set": "ml_engine.training_set:build_training_set",
    "train": None,
    "score": None,
    "drift_report": None,
}
# The order in which jobs/pipeline.py runs them.
PIPELINE = list(JOBS)

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_BUILT = 3
EXIT_ENVIRONMENT = 4


def is_built(name: str) -> bool:
    """True when job ``name`` has an implementation."""
    return JOBS.get(name) is not None


def job_function(name: str):
    """The function implementing job ``name``.

    Raises:
        KeyError: no job has that name.
        JobNotBuiltError: the job is designed but not implemented yet.
    """
    if name not in JOBS:
        raise KeyError(f"unknown job '{name}'; jobs: {', '.join(JOBS)}")
    target = JOBS[name]
    if target is None:
        raise JobNotBuiltError(
            f"job '{name}' is not built yet in this version of ml-engine; nothing was run"
        )
    import importlib

    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def run_job(name: str, spark, cfg, tables) -> JobResult:
    """Runs one job with an existing session and table backend; returns its result."""
    from ml_engine.session import describe

    fn = job_function(name)
    describe(spark, f"ml-engine {name} (batch {cfg.effective_batch_id()})")
    try:
        return fn(spark, cfg, tables)
    finally:
        describe(spark, None)


def open_session_and_tables(cfg, app_name: str):
    """Builds the session for ``cfg`` (with delta-spark settings when that backend is wanted)."""
    from ml_engine.session import build_session, delta_extra_conf
    from ml_engine.tables import open_tables

    spark = build_session(cfg.spark, app_name=app_name, extra_conf=delta_extra_conf(cfg))
    return spark, open_tables(spark, cfg.delta.backend)


def main(job: str, argv: list[str] | None = None) -> int:
    """Entry point of ``jobs/<job>.py`` under spark-submit or python.

    Usage: ``jobs/<job>.py --config FILE [--set key=value ...]``. Returns the exit code.
    """
    from ml_engine.cli import main as cli_main

    return cli_main(["run", job, *(sys.argv[1:] if argv is None else argv)])
