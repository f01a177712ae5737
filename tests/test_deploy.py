"""The scheduler artefacts shipped in deploy/: cron and Databricks run the pipeline's jobs in
the pipeline's order (the Airflow DAG is run by tests/test_airflow_dag.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from ml_engine.jobs import PIPELINE
from ml_engine.session import ENGINE_JAVA_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def topological(edges: dict[str, list[str]]) -> list[str]:
    """Tasks in dependency order (ties by name), from task -> tasks it depends on."""
    done: list[str] = []
    while len(done) < len(edges):
        ready = sorted(t for t, deps in edges.items() if t not in done and set(deps) <= set(done))
        assert ready, f"cycle among {set(edges) - set(done)}"
        done.append(ready[0])
    return done


def test_databricks_job_runs_every_job_in_the_pipeline_order_and_retrains_on_drift():
    job = json.loads((DEPLOY / "databricks" / "ml-engine-job.json").read_text())
    tasks = {t["task_key"]: t for t in job["tasks"]}
    order = topological(
        {k: [d["task_key"] for d in t.get("depends_on", [])] for k, t in tasks.items()}
    )
    assert order == [*PIPELINE, "retrain"]
    # The cluster starts the driver's JVM: its options come from the cluster's Spark conf.
    (cluster,) = job["job_clusters"]
    driver_options = cluster["new_cluster"]["spark_conf"]["spark.driver.extraJavaOptions"]
    assert driver_options.split() == list(ENGINE_JAVA_OPTIONS)
    for t in tasks.values():
        script = Path(t["spark_python_task"]["python_file"]).name
        assert (ROOT / "jobs" / script).is_file(), script
        params = t["spark_python_task"]["parameters"]
        assert params[:2] == ["--config", "/Workspace/ml-engine/conf/cluster.yaml"]
        assert "batch_id={{job.parameters.batch_id}}" in params
    assert "drift.fail_on_drift=true" in tasks["drift_report"]["spark_python_task"]["parameters"]
    retrain = tasks["retrain"]
    assert Path(retrain["spark_python_task"]["python_file"]).name == "train.py"
    assert retrain["run_if"] == "AT_LEAST_ONE_FAILED"
    assert retrain["depends_on"] == [{"task_key": "drift_report"}]


def test_cron_chain_is_valid_bash_and_runs_the_jobs_in_the_pipeline_order():
    script = DEPLOY / "cron" / "run-batch.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    jobs = re.findall(r"^\s*run (\w+)", script.read_text(), flags=re.M)
    first = list(dict.fromkeys(jobs))
    assert first == PIPELINE
    # After the drift report: the retraining.
    assert jobs[-2:] == ["build_training_set", "train"]
    crontab = (DEPLOY / "cron" / "crontab").read_text()
    assert re.search(r"^0 2 \* \* \* /opt/ml-engine/deploy/cron/run-batch.sh ", crontab, re.M)
