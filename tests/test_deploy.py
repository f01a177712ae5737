"""The scheduler artefacts shipped in deploy/: cron and Databricks run the pipeline's jobs in
the pipeline's order (the Airflow DAG is run by tests/test_airflow_dag.py).

The cron chain is run for real, with the crontab's environment alone (as cron gives it) and a
stand-in for the ml-engine executable that records its arguments and environment: what a shell
script promises is the commands it runs and the environment it gives them. Each recorded job's
config is then loaded with the real config loader in the environment the job got."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ml_engine.config import load_config
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


def test_databricks_vacuum_job_runs_weekly_on_the_pipelines_cluster():
    job = json.loads((DEPLOY / "databricks" / "ml-engine-vacuum-job.json").read_text())
    pipeline = json.loads((DEPLOY / "databricks" / "ml-engine-job.json").read_text())
    assert job["job_clusters"] == pipeline["job_clusters"]
    assert job["schedule"]["quartz_cron_expression"] == "0 0 4 ? * SUN"
    (task,) = job["tasks"]
    python_task = task["spark_python_task"]
    assert (ROOT / "jobs" / Path(python_task["python_file"]).name).is_file()
    assert (task["task_key"], Path(python_task["python_file"]).name) == ("vacuum", "vacuum.py")
    assert python_task["parameters"] == ["--config", "/Workspace/ml-engine/conf/cluster.yaml"]


def test_cron_chain_is_valid_bash_and_runs_the_jobs_in_the_pipeline_order():
    script = DEPLOY / "cron" / "run-batch.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    runs = [
        run_jobs(["run", *line.split("#")[0].split()])
        for line in re.findall(r"^\s*run (.*)$", script.read_text(), flags=re.M)
    ]
    assert list(dict.fromkeys(job for jobs in runs for job in jobs)) == PIPELINE
    # After the drift report: the retraining.
    assert runs[-1] == ["build_training_set", "train"]
    crontab = (DEPLOY / "cron" / "crontab").read_text()
    assert re.search(r"^0 2 \* \* \* /opt/ml-engine/deploy/cron/run-batch.sh$", crontab, re.M)


BATCH = "2026-12-02"
CRONTAB = DEPLOY / "cron" / "crontab"
# What cron itself gives a job besides the crontab's variables.
CRON_BASE_ENV = {"PATH": "/usr/bin:/bin", "LOGNAME": "ml", "SHELL": "/bin/sh"}
FAKE_ENGINE = """#!{python}
# A stand-in for the ml-engine executable: records its arguments and environment, then exits
# with the code given for its command ("model", "run <job>"), 0 for any other. A run of
# several jobs exits as ml-engine's does: with the code of the first job that fails (1, 2, 4),
# else the highest (drift_report's 5).
import itertools, json, os, sys
with open({record!r}, "a") as out:
    out.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
exits = {exits!r}
if sys.argv[1:2] == ["run"]:
    jobs = itertools.takewhile(lambda a: not a.startswith("--"), sys.argv[2:])
    codes = [exits.get("run " + job, 0) for job in jobs]
    sys.exit(next((c for c in codes if c not in (0, 5)), max(codes, default=0)))
sys.exit(exits.get(sys.argv[1], 0))
"""


def crontab_variables() -> dict[str, str]:
    """The crontab's NAME=value lines, as cron reads them (no expansion, no comments)."""
    lines = CRONTAB.read_text().splitlines()
    return dict(m.groups() for line in lines if (m := re.fullmatch(r"([A-Za-z_]\w*)=(.*)", line)))


def cron_command(schedule: str = "0 2 * * *") -> str:
    (line,) = [ln for ln in CRONTAB.read_text().splitlines() if ln.startswith(schedule + " ")]
    return line.split(None, 5)[5]


def run_cron_chain(
    tmp: Path, exits: dict[str, int], schedule: str = "0 2 * * *", args: str = BATCH, **changes: str
) -> subprocess.CompletedProcess:
    """Runs the crontab's command for BATCH in the crontab's environment, the install paths
    (/opt/ml-engine, the raw root, the log directory) moved to this checkout and ``tmp``, and
    ml-engine replaced by the recording stand-in; ``changes`` set or change more variables."""
    fake = tmp / "ml-engine"
    fake.write_text(
        FAKE_ENGINE.format(python=sys.executable, record=str(tmp / "calls.jsonl"), exits=exits)
    )
    fake.chmod(0o755)
    env = {k: v.replace("/opt/ml-engine", str(ROOT)) for k, v in crontab_variables().items()}
    env.update(
        ML_ENGINE=str(fake),
        ML_ENGINE_RAW_ROOT=str(tmp / "raw"),
        ML_ENGINE_LOG_DIR=str(tmp / "logs" / "ml-engine"),
        **changes,
    )
    command = cron_command(schedule).replace("/opt/ml-engine", str(ROOT))
    return subprocess.run(
        [env["SHELL"], "-c", f"{command} {args}".rstrip()],
        env={**CRON_BASE_ENV, "HOME": str(tmp), **env},
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )


def recorded(tmp: Path) -> list[dict]:
    return [json.loads(line) for line in (tmp / "calls.jsonl").read_text().splitlines()]


def overrides(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]


def run_jobs(argv: list[str]) -> list[str]:
    """The jobs of a ``run`` command line: the words after ``run`` before the first option."""
    return list(itertools.takewhile(lambda a: not a.startswith("--"), argv[1:]))


def job_calls(calls: list[dict]) -> list[str]:
    return [
        " ".join(["run", *run_jobs(c["argv"])]) if c["argv"][0] == "run" else c["argv"][0]
        for c in calls
    ]


@pytest.fixture(scope="module")
def first_night(tmp_path_factory):
    """The crontab's night for a first batch: no champion yet, and the drift report exits 5."""
    tmp = tmp_path_factory.mktemp("cron")
    done = run_cron_chain(tmp, {"model": 1, "run drift_report": 5})
    return tmp, done, recorded(tmp)


def test_cron_night_runs_every_job_for_the_batch_on_the_crontabs_master(first_night):
    tmp, done, calls = first_night
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    sets = [
        "--config",
        str(ROOT / "conf" / "cluster.yaml"),
        "--set",
        f"batch_id={BATCH}",
        "--set",
        f"spark.master={crontab_variables()['ML_ENGINE_MASTER']}",
    ]
    assert crontab_variables()["ML_ENGINE_MASTER"].startswith("spark://")
    data_jobs = ["ingest", "clean", "detect_outliers", "build_features", "build_training_set"]
    assert [c["argv"] for c in calls] == [
        ["run", *data_jobs, "--set", f"ingest.path={tmp / 'raw' / BATCH}", *sets],
        ["model", *sets],
        ["run", "train", *sets],
        ["run", "score", "drift_report", "--set", "drift.fail_on_drift=true", *sets],
        ["run", "build_training_set", "train", *sets],
    ]


def test_cron_environment_resolves_the_cluster_config_for_every_job(first_night):
    tmp, _, calls = first_night
    cron = crontab_variables()
    for call in calls:
        argv, env = call["argv"], call["env"]
        assert env["ML_ENGINE_RAW_PATH"] == str(tmp / "raw" / BATCH), argv
        # Raises ConfigError naming the variable if the crontab left one the config reads unset.
        cfg = load_config(argv[argv.index("--config") + 1], overrides(argv), env=env)
        resolved = (
            cfg.batch_id,
            cfg.ingest.path,
            cfg.spark.master,
            cfg.storage.root,
            cfg.mlflow.tracking_uri,
        )
        assert resolved == (
            BATCH,
            str(tmp / "raw" / BATCH),
            cron["ML_ENGINE_MASTER"],
            cron["ML_ENGINE_STORAGE_ROOT"],
            cron["MLFLOW_TRACKING_URI"],
        ), argv


def test_cron_sunday_vacuum_runs_on_the_crontabs_master_with_a_resolvable_config(tmp_path):
    done = run_cron_chain(tmp_path, {}, schedule="0 4 * * 0", args="")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    cron = crontab_variables()
    (call,) = recorded(tmp_path)
    argv = call["argv"]
    assert argv == [
        "run",
        "vacuum",
        "--config",
        str(ROOT / "conf" / "cluster.yaml"),
        "--set",
        f"spark.master={cron['ML_ENGINE_MASTER']}",
    ]
    cfg = load_config(argv[3], overrides(argv), env=call["env"])
    assert (cfg.spark.master, cfg.storage.root, cfg.vacuum.retain_hours) == (
        cron["ML_ENGINE_MASTER"],
        cron["ML_ENGINE_STORAGE_ROOT"],
        168,
    )
    assert (tmp_path / "logs" / "ml-engine" / "vacuum.log").read_text() == ""


def test_cron_night_appends_its_output_to_the_batch_log_in_a_directory_it_creates(first_night):
    tmp, _, _ = first_night
    log = (tmp / "logs" / "ml-engine" / f"{BATCH}.log").read_text().splitlines()
    headers = [re.sub(r" \(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)$", "", ln) for ln in log]
    assert headers == [
        "== ingest clean detect_outliers build_features build_training_set --set "
        f"ingest.path={tmp / 'raw' / BATCH}",
        "== train",
        "== score drift_report --set drift.fail_on_drift=true",
        "== data set drift: retraining",
        "== build_training_set train",
    ]


def test_run_batch_without_a_master_leaves_the_configs_spark_master(tmp_path):
    done = run_cron_chain(tmp_path, {}, ML_ENGINE_MASTER="")
    assert done.returncode == 0, done.stderr
    (clean,) = [c for c in recorded(tmp_path) if "clean" in run_jobs(c["argv"])]
    assert overrides(clean["argv"]) == [
        f"ingest.path={tmp_path / 'raw' / BATCH}",
        f"batch_id={BATCH}",
    ]
    cfg = load_config(ROOT / "conf" / "cluster.yaml", overrides(clean["argv"]), env=clean["env"])
    assert cfg.spark.master == "local[*]"


def test_run_batch_stops_at_the_first_failing_job_with_its_exit_code(tmp_path):
    done = run_cron_chain(tmp_path, {"run clean": 1})
    assert done.returncode == 1
    assert job_calls(recorded(tmp_path)) == [
        "run ingest clean detect_outliers build_features build_training_set"
    ]
    done = run_cron_chain(tmp_path, {"run score": 1, "run drift_report": 5})
    assert done.returncode == 1  # a failed score is no drift: no retraining
    assert job_calls(recorded(tmp_path))[-2:] == ["model", "run score drift_report"]


def test_run_batch_with_a_champion_and_no_drift_neither_trains_nor_retrains(tmp_path):
    done = run_cron_chain(tmp_path, {})
    assert done.returncode == 0
    assert job_calls(recorded(tmp_path)) == [
        "run ingest clean detect_outliers build_features build_training_set",
        "model",
        "run score drift_report",
    ]
