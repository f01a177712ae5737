"""Shared fixtures: one Spark session for the whole run, real Delta tables in tmp dirs."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from services import SHORT_JVM_OPTIONS

ROOT = Path(__file__).resolve().parents[1]

# The Spark a test starts in a subprocess (through spark-submit's launcher: the CLI, the demo)
# lives a minute and sees a few thousand rows: it gets the cluster tests' C1-only JIT, which
# warms up sooner and leaves the second core to the suite's own session.
os.environ.setdefault("SPARK_SUBMIT_OPTS", SHORT_JVM_OPTIONS)


def pytest_addoption(parser):
    parser.addoption(
        "--delta-backend",
        action="store",
        default="rs",
        choices=("rs", "spark"),
        help="Delta backend the table contract tests run against (default: rs).",
    )


@pytest.fixture(scope="session")
def spark():
    """The one SparkSession of the test run: local[2], 2 shuffle partitions, UI off."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from ml_engine.config import SparkConfig
    from ml_engine.session import build_session

    submit_opts = os.environ.pop("SPARK_SUBMIT_OPTS", None)  # for subprocesses only (above)
    try:
        session = build_session(
            SparkConfig(
                master="local[2]",
                app_name="ml-engine-tests",
                conf={
                    "spark.sql.shuffle.partitions": "2",
                    "spark.default.parallelism": "2",
                    "spark.ui.enabled": "false",
                    "spark.ui.showConsoleProgress": "false",
                    "spark.sql.adaptive.enabled": "false",
                    "spark.driver.memory": "2g",
                    "spark.sql.ansi.enabled": "true",
                    # Tests run thousands of queries over a few rows each: compiling Java for each
                    # plan costs more than it saves there, so the session interprets them.
                    "spark.sql.codegen.wholeStage": "false",
                    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
                    # Most of this JVM's CPU went to HotSpot's C2 compiler (88 of 140 s over
                    # test_clean.py), compiling Spark's planner for queries of a few rows. Fewer,
                    # later C2 compiles: 52 s. It lives the whole run, so C1
                    # alone would leave it slower (122 s against 113 s for that module).
                    "spark.driver.extraJavaOptions": " ".join(
                        (
                            "-XX:Tier4InvocationThreshold=50000",
                            "-XX:Tier4CompileThreshold=60000",
                            "-XX:Tier4MinInvocationThreshold=20000",
                        )
                    ),
                },
            )
        )
    finally:
        if submit_opts is not None:
            os.environ["SPARK_SUBMIT_OPTS"] = submit_opts
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def sample_schema_path(project_root) -> Path:
    return project_root / "schemas" / "transactions.yaml"


# The tracking variables as the test run found them. MLflow's ``set_tracking_uri`` also exports
# ``MLFLOW_TRACKING_URI``, and a module-scoped fixture that trains in-process sets it before any
# function-scoped fixture could save it, so the values to restore are taken once, here.
_TRACKING_ENV = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}


def _restore_tracking_env() -> None:
    if "mlflow" in sys.modules:  # its process-wide URIs too, which a bare MlflowClient uses
        import mlflow

        mlflow.set_tracking_uri(_TRACKING_ENV["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(_TRACKING_ENV["MLFLOW_REGISTRY_URI"])
    for key, value in _TRACKING_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _tracking_env_restored():
    """A test's tracking store must not leak into the next test's subprocesses."""
    yield
    _restore_tracking_env()


@pytest.fixture(scope="module", autouse=True)
def _tracking_env_restored_per_module():
    """The same after a module, whose module-scoped fixtures finish after its last test."""
    yield
    _restore_tracking_env()


# ------------------------------------------------------------------ the demo, run in the background
# `tests/test_demo.py` inspects one `ml-engine demo` run made as a user makes it: `pip install .`
# (not editable) and the installed command, in a process of its own. That process needs no
# fixture of this one, so it runs beside the other modules and the demo tests, run last, wait
# for it. It starts half-way through the run: the first modules keep both cores busy (this
# session's JVM compiling Spark's planner), later ones leave one core mostly idle (a driver
# planning queries of a few rows), which the demo then takes, at the lowest CPU priority.
_DEMO = pytest.StashKey[dict]()


def demo_as_installed(base: Path) -> tuple[Path, subprocess.CompletedProcess]:
    install, workdir = base / "install", base / "demo"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(install), "."],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=300,
        preexec_fn=_background,
    )
    # A `python3` first on PATH that is not the one ml-engine is installed for (cron's
    # /usr/bin, a venv of another version): Spark's Python workers must not pick it up.
    other = base / "other-python"
    other.mkdir()
    for name in ("python3", "python"):
        (other / name).write_text("#!/bin/sh\necho 'not the Python of ml-engine' >&2\nexit 1\n")
        (other / name).chmod(0o755)
    env = {
        "SPARK_LOCAL_IP": "127.0.0.1",
        **os.environ,
        "PYTHONPATH": str(install),
        "PATH": f"{other}{os.pathsep}{os.environ['PATH']}",
    }
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PYSPARK_PYTHON"):
        env.pop(key, None)
    run = subprocess.run(
        [
            str(install / "bin" / "ml-engine"),
            "demo",
            "--workdir",
            str(workdir),
            "--rows",
            "1000",
            "--set",
            "spark.conf.spark.sql.shuffle.partitions=2",
            "--set",
            "spark.master=local[2]",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=900,
        preexec_fn=_background,
    )
    return workdir, run


def _background() -> None:
    """Runs the demo's processes (its JVM and Python workers inherit it) at the lowest CPU
    priority: they take the core the suite leaves idle, not the suite's own."""
    os.nice(19)


def _is_demo_test(item) -> bool:
    return item.path.name == "test_demo.py"


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=_is_demo_test)  # stable: the demo tests last, the rest in their order


def pytest_collection_finish(session):
    demo_tests = [i for i, item in enumerate(session.items) if _is_demo_test(item)]
    if demo_tests:
        start_at = min(len(session.items) // 2, demo_tests[0])
        session.config.stash[_DEMO] = {"start_at": start_at, "started": 0, "run": None}


def _start_demo(config) -> None:
    demo = config.stash[_DEMO]
    if demo["run"] is None:
        base = Path(tempfile.mkdtemp(prefix="ml-engine-demo-"))
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        demo["run"] = (base, pool, pool.submit(demo_as_installed, base))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    demo = item.config.stash.get(_DEMO, None)
    if demo is not None:
        if demo["started"] >= demo["start_at"]:
            _start_demo(item.config)
        demo["started"] += 1


def pytest_sessionfinish(session):
    demo = session.config.stash.get(_DEMO, None)
    if demo is not None and demo["run"] is not None:
        base, pool, _ = demo["run"]
        pool.shutdown(wait=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def demo_run(request) -> tuple[Path, subprocess.CompletedProcess]:
    """The background demo run's work directory and finished process (see above)."""
    _start_demo(request.config)  # already started unless this test came first
    _, _, future = request.config.stash[_DEMO]["run"]
    return future.result()
