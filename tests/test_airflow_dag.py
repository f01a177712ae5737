"""The Airflow DAG in deploy/airflow, in Airflow's own environment (slow).

Airflow lives in its own virtual environment (its pins differ from the engine's): ``make
airflow-env`` builds ``.venv-airflow``. The DAG's tasks call the engine's ``ml-engine`` of
``.venv``. Checked: the DAG imports without errors in Airflow's loader, its job tasks follow
the pipeline's order, and ``airflow dags test`` runs it end to end against local Spark on the
sample data: a first batch with no model trains one, a second batch with drift reported (the
drift threshold lowered) branches to retraining. Both runners run the first batch: ``cli``
(``ml-engine run`` per task) and ``spark-submit`` (``SparkSubmitOperator`` submitting
``jobs/<job>.py`` with the library zip, through an Airflow Spark connection to ``local[2]``);
the second batch, whose branches do not depend on the runner, runs under ``spark-submit``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from services import SHORT_JVM_OPTIONS

from ml_engine.jobs import PIPELINE
from ml_engine.session import ENGINE_JAVA_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
AIRFLOW_VENV = Path(os.environ.get("ML_ENGINE_AIRFLOW_VENV", ROOT / ".venv-airflow"))
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (AIRFLOW_VENV / "bin" / "airflow").exists(),
        reason=f"no Airflow environment at {AIRFLOW_VENV}: run `make airflow-env`",
    ),
]


@pytest.fixture(scope="module", params=["cli", "spark-submit"])
def airflow_env(request, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("airflow-home")
    work = tmp_path_factory.mktemp("airflow-work")
    bin_dir = Path(sys.executable).parent
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))},
        # spark-submit of the pyspark wheel, and the engine's Python for its driver.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "deploy" / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "ML_ENGINE_BIN": str(Path(sys.executable).parent / "ml-engine"),
        "ML_ENGINE_CONFIG": str(work / "config.yaml"),
        "ML_ENGINE_RAW_ROOT": str(work / "raw"),
        "ML_ENGINE_RUNNER": request.param,
        # Every task's driver JVM (spark-submit reads it in both runners): the tests' JIT choice.
        "SPARK_SUBMIT_OPTS": SHORT_JVM_OPTIONS,
    }
    if request.param == "spark-submit":
        env["ML_ENGINE_JOBS_DIR"] = str(ROOT / "jobs")
        env["ML_ENGINE_PY_FILES"] = str(work / "ml_engine.zip")
        env["AIRFLOW_CONN_SPARK_DEFAULT"] = json.dumps({"conn_type": "spark", "host": "local[2]"})
        packaged = subprocess.run(
            [env["ML_ENGINE_BIN"], "package", "--out", env["ML_ENGINE_PY_FILES"]],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert packaged.returncode == 0, packaged.stderr
    (work / "config.yaml").write_text(
        "inherits: ml-engine:sample\n"
        "storage: {root: store}\n"
        "spark: {master: 'local[2]', conf: {spark.sql.shuffle.partitions: 2}}\n"
    )
    sample = work / "sample"
    gen = subprocess.run(
        [env["ML_ENGINE_BIN"], "generate-sample-data", "--out", str(sample), "--rows", "1000"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert gen.returncode == 0, gen.stderr
    shutil.copytree(sample / "reference", work / "raw" / "2026-05-01")
    shutil.copytree(sample / "current", work / "raw" / "2026-05-02")
    migrate = airflow(env, "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    env["WORK"] = str(work)
    return env


def airflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "airflow"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )


def test_dag_imports_in_airflows_loader_and_follows_the_pipeline_order(airflow_env):
    script = (
        "import json\n"
        "from airflow.models.dagbag import DagBag\n"
        "bag = DagBag(include_examples=False)\n"
        "dag = bag.dags['ml_engine_pipeline']\n"
        "print(json.dumps({'errors': {k: str(v) for k, v in bag.import_errors.items()},\n"
        "  'edges': {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},\n"
        "  'types': {t.task_id: type(t).__name__ for t in dag.tasks},\n"
        "  'conf': {t.task_id: getattr(t, 'conf', None) or getattr(t, '_conf', None)\n"
        "           for t in dag.tasks if type(t).__name__ == 'SparkSubmitOperator'},\n"
        "  'order': [t.task_id for t in dag.topological_sort()],\n"
        "  'vacuum': {t.task_id: type(t).__name__ for t in bag.dags['ml_engine_vacuum'].tasks},\n"
        "  'vacuum_schedule': bag.dags['ml_engine_vacuum'].schedule}))\n"
    )
    done = subprocess.run(
        [str(AIRFLOW_VENV / "bin" / "python"), "-c", script],
        capture_output=True,
        text=True,
        env=airflow_env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["errors"] == {}
    assert [t for t in out["order"] if t in PIPELINE] == PIPELINE
    assert out["edges"]["drift_report"] == ["no_drift", "trigger_retraining"]
    assert out["edges"]["decide_training"] == ["skip_training", "train"]
    operator = {"cli": "BashOperator", "spark-submit": "SparkSubmitOperator"}
    jobs = [j for j in PIPELINE if j != "drift_report"]  # drift_report branches on its exit code
    expected = operator[airflow_env["ML_ENGINE_RUNNER"]]
    assert {j: out["types"][j] for j in jobs} == dict.fromkeys(jobs, expected)
    assert (out["vacuum"], out["vacuum_schedule"]) == ({"vacuum": expected}, "@weekly")
    if expected == "SparkSubmitOperator":
        # spark-submit starts the driver's JVM, so the submit carries the engine's options.
        options = " ".join(ENGINE_JAVA_OPTIONS)
        want = {"spark.driver.extraJavaOptions": options}
        assert out["conf"] == dict.fromkeys(jobs, want)


def task_states(
    env: dict[str, str], logical_date: str, dag: str = "ml_engine_pipeline"
) -> dict[str, str]:
    runs = airflow(env, "dags", "list-runs", dag, "-o", "json")
    run_id = next(
        r["run_id"] for r in json.loads(runs.stdout) if r["logical_date"].startswith(logical_date)
    )
    states = airflow(env, "tasks", "states-for-dag-run", dag, run_id, "-o", "json")
    return {t["task_id"]: t["state"] for t in json.loads(states.stdout)}


def test_dags_test_runs_the_chain_end_to_end_and_retrains_on_drift(airflow_env):
    first = airflow(airflow_env, "dags", "test", "ml_engine_pipeline", "2026-05-01")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    states = task_states(airflow_env, "2026-05-01")
    assert {t: states[t] for t in PIPELINE} == dict.fromkeys(PIPELINE, "success")
    assert (states["skip_training"], states["no_drift"]) == ("skipped", "success")
    if airflow_env["ML_ENGINE_RUNNER"] == "cli":
        # The branches are the DAG's, not the runner's: the spark-submit runner takes the
        # second batch through them (each batch costs this test about five minutes). The
        # weekly vacuum over the tables the first batch wrote: nothing is a week old yet.
        weekly = airflow(airflow_env, "dags", "test", "ml_engine_vacuum", "2026-05-03")
        assert weekly.returncode == 0, weekly.stdout[-3000:] + weekly.stderr[-3000:]
        assert task_states(airflow_env, "2026-05-03", "ml_engine_vacuum") == {"vacuum": "success"}
        return

    drifty = {**airflow_env, "ML_ENGINE_SET": "drift.drift_share=0.2"}
    second = airflow(drifty, "dags", "test", "ml_engine_pipeline", "2026-05-02")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    states = task_states(airflow_env, "2026-05-02")
    assert states["train"] == "skipped" and states["skip_training"] == "success"
    assert (states["trigger_retraining"], states["no_drift"]) == ("success", "skipped")
    store = Path(airflow_env["WORK"]) / "store" / "tables"
    from deltalake import DeltaTable

    predictions = DeltaTable(str(store / "predictions")).to_pandas()
    assert sorted(predictions.batch_id.unique()) == ["2026-05-01", "2026-05-02"]
