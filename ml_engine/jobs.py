"""The job registry: one function per job, all with the same signature.

A job function takes ``(spark, cfg, tables)`` and returns a :class:`JobResult`; it reads its
inputs through ``tables``, calls pure transformations and writes its outputs. The command line
(``ml-engine run``, :mod:`ml_engine.cli`) and ``jobs/<name>.py`` wrap it with config loading,
checks before Spark starts (:mod:`ml_engine.preflight`), session building and exit codes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_engine.results import JobError, JobResult
from ml_engine.schemas import ROLE_EVENT_TIME, ROLE_KEY, ROLE_LABEL

if TYPE_CHECKING:
    from ml_engine.config import Config


@dataclass(frozen=True)
class JobSpec:
    """What a job is and what it needs, so much of it can be checked before Spark starts.

    Attributes:
        name: the job's name (``ml-engine run <name>``, ``jobs/<name>.py``).
        target: ``"module:function"`` implementing it.
        reads: tables it reads (they must exist unless an earlier job of the run writes them).
        writes: tables it writes.
        batch_input: the table whose rows of the run's batch it processes, if any.
        roles: schema roles it needs.
        tracking: it talks to the MLflow tracking server: always, never, or when a function
            of the run's config says so.
        listed: what ``ml-engine jobs`` prints it reads and writes (tables, models, runs).
        pipeline: it is a step of ``ml-engine run pipeline``; the others (``vacuum``) look
            after the tables rather than process a batch, and record no run.
    """

    name: str
    target: str
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    batch_input: str | None = None
    roles: tuple[str, ...] = ()
    tracking: bool | Callable[[Config], bool] = False
    listed: tuple[str, str] = ("", "")
    pipeline: bool = True

    def tracks(self, cfg: Config) -> bool:
        """Whether the job talks to the tracking server when run with ``cfg``."""
        return self.tracking(cfg) if callable(self.tracking) else self.tracking

    @property
    def per_batch(self) -> bool:
        """It loads or processes one batch (``batch_id``), as ingest and the batch-input jobs
        do; build_training_set and train read every batch."""
        return self.batch_input is not None or self.name == "ingest"


_SPECS = (
    JobSpec(
        "ingest",
        "ml_engine.quality.ingest:run_ingest",
        writes=("bronze", "quarantine"),
        listed=("raw files (ingest.path)", "bronze, quarantine"),
    ),
    JobSpec(
        "clean",
        "ml_engine.quality.clean:run_clean",
        reads=("bronze",),
        writes=("silver", "quarantine", "dq_metrics", "fill_values"),
        batch_input="bronze",
        listed=("bronze", "silver, quarantine, dq_metrics, fill_values"),
    ),
    JobSpec(
        "detect_outliers",
        "ml_engine.outliers:run_detect_outliers",
        reads=("silver",),
        writes=("quarantine", "outlier_stats"),
        batch_input="silver",
        listed=("silver", "the fitted detector, outlier_stats, quarantine (policy drop)"),
    ),
    JobSpec(
        "build_features",
        "ml_engine.features:run_build_features",
        reads=("silver",),
        writes=("features",),
        batch_input="silver",
        listed=("silver, the fitted detector", "features (with each row's outlier flags)"),
        roles=(ROLE_KEY, ROLE_EVENT_TIME),
    ),
    JobSpec(
        "build_training_set",
        "ml_engine.training_set:build_training_set",
        reads=("features",),
        writes=("training_set",),
        listed=("features, labels (silver by default)", "training_set"),
        roles=(ROLE_KEY, ROLE_EVENT_TIME, ROLE_LABEL),
    ),
    JobSpec(
        "train",
        "ml_engine.training.job:run_train",
        reads=("training_set",),
        roles=(ROLE_LABEL,),
        tracking=True,
        listed=(
            "training_set",
            "an MLflow run, a registered model version, the gate's aliases",
        ),
    ),
    JobSpec(
        "score",
        "ml_engine.scoring:run_score",
        reads=("features",),
        writes=("predictions",),
        batch_input="features",
        tracking=True,
        listed=("features of the batch, the model (score.model_alias)", "predictions"),
    ),
    JobSpec(
        "drift_report",
        "ml_engine.drift.job:run_drift_report",
        reads=("predictions",),
        writes=("drift_metrics",),
        batch_input="predictions",
        tracking=True,
        listed=(
            "features, predictions of the batch",
            "drift_metrics, an HTML report, an MLflow run",
        ),
    ),
    JobSpec(
        "vacuum",
        "ml_engine.vacuum:run_vacuum",
        tracking=lambda cfg: cfg.vacuum.keep_model_inputs,
        listed=(
            "every table's log, the run log, the registered models' inputs",
            "no rows; merges each batch's small files (vacuum.compact), deletes the files of "
            "replaced rows older than vacuum.retain_hours",
        ),
        pipeline=False,
    ),
)

JOBS: dict[str, JobSpec] = {spec.name: spec for spec in _SPECS}
# The order in which the pipeline runs them.
PIPELINE = [spec.name for spec in _SPECS if spec.pipeline]


def job_spec(name: str) -> JobSpec:
    """The spec of job ``name``.

    Raises:
        KeyError: no job has that name (the message lists the jobs).
    """
    if name not in JOBS:
        raise KeyError(f"unknown job '{name}'; jobs: {', '.join(JOBS)}")
    return JOBS[name]


def job_function(name: str):
    """The function implementing job ``name``.

    Raises:
        KeyError: no job has that name.
    """
    target = job_spec(name).target
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)


def run_job(name: str, spark, cfg, tables) -> JobResult:
    """Runs one job with an existing session and table backend; returns its result.

    The job reads and writes through a :class:`ml_engine.catalog.BatchCatalog`: it sees only
    complete batches of its inputs, and its own commits are recorded in the run log once it
    has finished, which makes its batch visible downstream. A missing or incomplete batch in
    the job's input table becomes a :class:`JobError` naming the batches that exist.
    """
    from ml_engine.catalog import BatchCatalog
    from ml_engine.session import describe
    from ml_engine.tables import BatchNotFoundError

    fn = job_function(name)
    batch = cfg.effective_batch_id() if job_spec(name).pipeline else None
    catalog = BatchCatalog(
        tables.tables if isinstance(tables, BatchCatalog) else tables,
        cfg.storage.table_path("job_runs"),
    )
    describe(spark, f"ml-engine {name}" + (f" (batch {batch})" if batch is not None else ""))
    try:
        result = fn(spark, cfg, catalog)
        if batch is not None:
            # Written last: the batch's outputs become visible to other jobs only now.
            catalog.complete_run(name, batch)
        return result
    except BatchNotFoundError as exc:
        raise JobError(f"{name}: {exc}") from None
    finally:
        describe(spark, None)


def open_session_and_tables(cfg, app_name: str, quiet: bool = True):
    """Builds the session for ``cfg`` (with delta-spark settings when that backend is wanted).

    Args:
        cfg: the run's config.
        app_name: the Spark application name.
        quiet: send Spark's own log to a file instead of the terminal (see
            :func:`ml_engine.session.build_session`).
    """
    from ml_engine.session import build_session, delta_extra_conf
    from ml_engine.tables import open_tables

    spark = build_session(
        cfg.spark, app_name=app_name, extra_conf=delta_extra_conf(cfg), quiet=quiet
    )
    return spark, open_tables(spark, cfg.delta.backend)


__all__ = [
    "JOBS",
    "PIPELINE",
    "JobError",
    "JobResult",
    "JobSpec",
    "job_function",
    "job_spec",
    "open_session_and_tables",
    "run_job",
]
