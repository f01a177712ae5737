"""Airflow DAGs of ml-engine: ``ml_engine_pipeline``, the chain for one batch per logical
date, and ``ml_engine_vacuum``, the weekly ``vacuum`` job (deletes the files of replaced rows
older than ``vacuum.retain_hours``, keeping the versions jobs and registered models read).

One task per job, in the pipeline's order::

    ingest >> clean >> detect_outliers >> build_features >> build_training_set
      >> decide_training >> [train | skip_training] >> score >> drift_report
      >> [trigger_retraining | no_drift]

* the batch is the run's logical date (``{{ ds }}``), or ``batch_id`` in the run's conf; the
  raw input of a batch is ``$ML_ENGINE_RAW_ROOT/<batch>``;
* ``decide_training`` trains when the registry has no champion yet, or when the run's conf says
  ``retrain: true``; otherwise ``train`` is skipped and ``score`` uses the current champion;
* ``drift_report`` runs with ``drift.fail_on_drift=true``: exit code 5 (data set drift) branches
  to ``trigger_retraining``, which starts a run of this DAG for the same batch with
  ``retrain: true``; exit 0 goes to ``no_drift``; any other code fails the task;
* every job is idempotent per batch (a rerun replaces the batch's rows), so tasks retry safely.

Settings (environment of the Airflow workers, read when the DAG is parsed):

``ML_ENGINE_CONFIG``
    the engine's config file (required to run; e.g. ``/opt/ml-engine/conf/cluster.yaml``).
``ML_ENGINE_RAW_ROOT``
    the directory (or URI) holding one raw input directory per batch.
``ML_ENGINE_RUNNER``
    ``cli`` (default): each task runs ``ml-engine run <job>``; ``spark-submit``: each task
    submits ``jobs/<job>.py`` (``SparkSubmitOperator`` with the Airflow connection
    ``ML_ENGINE_SPARK_CONN``, default ``spark_default``, ``--py-files
    $ML_ENGINE_PY_FILES``, the zip of ``ml-engine package``, and the engine's driver JVM
    option as ``--conf spark.driver.extraJavaOptions``).
``ML_ENGINE_BIN``
    the ``ml-engine`` executable of the engine's environment (default ``ml-engine``).
``ML_ENGINE_JOBS_DIR``, ``ML_ENGINE_PY_FILES``
    the ``jobs/`` directory and the library zip for the spark-submit runner.
``ML_ENGINE_SET``
    extra ``key=value`` overrides for every job, separated by spaces.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Param, task

DAG_ID = "ml_engine_pipeline"
CONFIG = os.environ.get("ML_ENGINE_CONFIG", "conf/cluster.yaml")
RAW_ROOT = os.environ.get("ML_ENGINE_RAW_ROOT")
RUNNER = os.environ.get("ML_ENGINE_RUNNER", "cli")
ML_ENGINE = os.environ.get("ML_ENGINE_BIN", "ml-engine")
JOBS_DIR = os.environ.get("ML_ENGINE_JOBS_DIR", "jobs")
PY_FILES = os.environ.get("ML_ENGINE_PY_FILES", "dist/ml_engine.zip")
SPARK_CONN = os.environ.get("ML_ENGINE_SPARK_CONN", "spark_default")
EXTRA_SETS = shlex.split(os.environ.get("ML_ENGINE_SET", ""))
EXIT_DRIFT = 5  # ml_engine.results.EXIT_DRIFT
# spark-submit starts the driver's JVM before the engine runs, so the engine cannot add its JVM
# options (ml_engine.session.ENGINE_JAVA_OPTIONS) to the driver; the submit passes them.
SUBMIT_CONF = {"spark.driver.extraJavaOptions": "-XX:-DontCompileHugeMethods"}

BATCH = "{{ dag_run.conf.get('batch_id') or ds }}"
# What both DAGs share: no backfill, one run at a time, 2 retries per task.
SCHEDULING = {
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {"retries": 2, "retry_delay": timedelta(minutes=5)},
    "tags": ["ml-engine"],
}

if RUNNER not in ("cli", "spark-submit"):
    raise ValueError(f"ML_ENGINE_RUNNER={RUNNER!r}: use cli or spark-submit")


def job_args(job: str, *sets: str) -> list[str]:
    """``--config`` and ``--set`` arguments of one job of this run (Jinja-templated)."""
    overrides = [f"batch_id={BATCH}", *EXTRA_SETS, *sets]
    if job == "ingest" and RAW_ROOT:
        overrides.append(f"ingest.path={RAW_ROOT.rstrip('/')}/{BATCH}")
    return ["--config", CONFIG, *[arg for s in overrides for arg in ("--set", s)]]


def command(job: str, *sets: str) -> list[str]:
    """The ``ml-engine run`` command line of ``job`` (the ``cli`` runner)."""
    return [ML_ENGINE, "run", job, *job_args(job, *sets)]


def job_task(job: str, **kwargs):
    """The task of one job: ``ml-engine run`` in a shell, or ``SparkSubmitOperator``."""
    if RUNNER == "cli":
        return BashOperator(
            task_id=job,
            bash_command=shlex.join(command(job)),
            skip_on_exit_code=None,
            **kwargs,
        )
    from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

    return SparkSubmitOperator(
        task_id=job,
        conn_id=SPARK_CONN,
        application=os.path.join(JOBS_DIR, f"{job}.py"),
        application_args=job_args(job),
        py_files=PY_FILES,
        conf=SUBMIT_CONF,
        **kwargs,
    )


def _sets() -> list[str]:
    return [arg for s in EXTRA_SETS for arg in ("--set", s)]


def _run(args: list[str], context) -> int:
    """Runs a rendered command line, its output in the task log; returns the exit code."""
    rendered = [context["task"].render_template(a, context) for a in args]
    print("running:", shlex.join(rendered), flush=True)
    done = subprocess.run(rendered, capture_output=True, text=True)
    print(done.stdout, flush=True)
    print(done.stderr, flush=True)
    return done.returncode


def _drift_exit_code(context) -> int:
    """Runs ``drift_report`` with ``drift.fail_on_drift`` through the configured runner and
    returns its exit code (the spark-submit runner goes through the same Spark connection as
    the ``SparkSubmitOperator`` tasks)."""
    sets = ("drift.fail_on_drift=true",)
    if RUNNER == "cli":
        return _run(command("drift_report", *sets), context)
    from airflow.providers.apache.spark.hooks.spark_submit import SparkSubmitHook

    task = context["task"]
    hook = SparkSubmitHook(
        conn_id=SPARK_CONN,
        conf=SUBMIT_CONF,
        py_files=PY_FILES,
        application_args=[
            task.render_template(a, context) for a in job_args("drift_report", *sets)
        ],
    )
    try:
        hook.submit(os.path.join(JOBS_DIR, "drift_report.py"))
    except Exception:  # the hook raises on any non-zero exit; the code tells drift apart
        process = getattr(hook, "_submit_sp", None)
        if process is None or process.returncode is None:
            raise
        return process.returncode
    return 0


with DAG(
    dag_id=DAG_ID,
    description="ml-engine: ingest, clean, outliers, features, training, scoring, drift",
    schedule="@daily",
    **SCHEDULING,
    params={
        "retrain": Param(False, type="boolean", description="train even if a champion exists"),
        "batch_id": Param(None, type=["null", "string"], description="default: logical date"),
    },
) as dag:
    ingest = job_task("ingest")
    clean = job_task("clean")
    detect_outliers = job_task("detect_outliers")
    build_features = job_task("build_features")
    build_training_set = job_task("build_training_set")

    @task.branch(task_id="decide_training", retries=0)
    def decide_training(**context) -> str:
        """Train when there is no champion yet or the run asks for it."""
        if context["dag_run"].conf.get("retrain") or context["params"].get("retrain"):
            return "train"
        has_champion = _run([ML_ENGINE, "model", "--config", CONFIG, *_sets()], context) == 0
        return "skip_training" if has_champion else "train"

    train = job_task("train")
    skip_training = EmptyOperator(task_id="skip_training")
    score = job_task("score", trigger_rule="none_failed_min_one_success")

    @task.branch(task_id="drift_report")
    def drift_report(**context) -> str:
        """The drift report; its exit code 5 (data set drift) branches to retraining."""
        code = _drift_exit_code(context)
        if code == EXIT_DRIFT:
            return "trigger_retraining"
        if code != 0:
            raise RuntimeError(f"drift_report failed with exit code {code}")
        return "no_drift"

    trigger_retraining = TriggerDagRunOperator(
        task_id="trigger_retraining",
        trigger_dag_id=DAG_ID,
        conf={"retrain": True, "batch_id": BATCH},
    )
    no_drift = EmptyOperator(task_id="no_drift")

    decided = decide_training()
    drift = drift_report()
    ingest >> clean >> detect_outliers >> build_features >> build_training_set >> decided
    decided >> [train, skip_training]
    [train, skip_training] >> score >> drift >> [trigger_retraining, no_drift]


with DAG(
    dag_id="ml_engine_vacuum",
    description="ml-engine: delete the files of replaced rows (vacuum)",
    schedule="@weekly",
    **SCHEDULING,
) as vacuum_dag:
    job_task("vacuum")
