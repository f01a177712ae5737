"""The session factory: local default, and spark-submit's master and --conf win."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pyspark
import pytest

from ml_engine.session import MasterUnreachableError, check_master, with_engine_java_options

SCRIPT = """
from ml_engine.config import SparkConfig
from ml_engine.session import build_session
spark = build_session(SparkConfig({args}))
print("MASTER", spark.sparkContext.master)
print("PARTITIONS", spark.conf.get("spark.sql.shuffle.partitions"))
print("TS", spark.conf.get("spark.sql.parquet.outputTimestampType"))
from pyspark.errors.utils import is_debugging_enabled
from pyspark.sql import functions as F
F.col("x").cast("double")  # the first Column call reads the setting, once per process
print("CALL_SITES", is_debugging_enabled())
jvm_args = spark.sparkContext._jvm.java.lang.management.ManagementFactory.getRuntimeMXBean()
print("DRIVER_JVM", " ".join(a for a in jvm_args.getInputArguments() if a.startswith(("-XX:-Dont", "-Dml"))))
print("EXECUTOR_OPTIONS", spark.conf.get("spark.executor.extraJavaOptions"))
spark.stop()
"""


def _env():
    env = dict(os.environ)
    env["PYSPARK_PYTHON"] = sys.executable
    return env


def _values(stdout: str) -> dict[str, str]:
    return dict(
        line.split(" ", 1)
        for line in stdout.splitlines()
        if line.split(" ")[0]
        in {"MASTER", "PARTITIONS", "TS", "CALL_SITES", "DRIVER_JVM", "EXECUTOR_OPTIONS"}
    )


LOCAL_ARGS = (
    'conf={"spark.sql.shuffle.partitions": "3", "spark.ui.enabled": "false", '
    '"spark.driver.extraJavaOptions": "-Dml.from.config=1"}'
)
SUBMIT_ARGS = (
    'master="local[2]", conf={"spark.sql.shuffle.partitions": "3", "spark.ui.enabled": "false"}'
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """The session script run by Python and by spark-submit, both started at once (each is a
    JVM of its own that waits on its start-up much of the time)."""
    root = tmp_path_factory.mktemp("session-runs")
    spark_submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    runs = {
        "local": ([sys.executable], LOCAL_ARGS),
        "submit": (
            [
                str(spark_submit),
                "--master",
                "local[1]",
                "--conf",
                "spark.sql.shuffle.partitions=7",
                "--conf",
                "spark.executor.extraJavaOptions=-Dml.from.submit=1",
                "--driver-java-options",
                "-XX:-DontCompileHugeMethods",
            ],
            SUBMIT_ARGS,
        ),
    }
    procs = {}
    for name, (command, args) in runs.items():
        script = root / f"{name}.py"
        script.write_text(SCRIPT.format(args=args))
        procs[name] = subprocess.Popen(
            [*command, str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
    done = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return done


def test_local_run_defaults_to_local_star_and_applies_config(runs):
    r = runs["local"]
    assert r.returncode == 0, r.stderr[-2000:]
    # PySpark's per-Column call-site capture is off: it tripled the cost of building columns.
    # HotSpot compiles Spark's huge generated methods: the JVM the session started runs with the
    # option, after the config's own JVM options, and executors get it too.
    assert _values(r.stdout) == {
        "MASTER": "local[*]",
        "PARTITIONS": "3",
        "TS": "TIMESTAMP_MICROS",
        "CALL_SITES": "False",
        "DRIVER_JVM": "-Dml.from.config=1 -XX:-DontCompileHugeMethods",
        "EXECUTOR_OPTIONS": "-XX:-DontCompileHugeMethods",
    }


def test_spark_submit_master_and_conf_win_over_config(runs):
    r = runs["submit"]
    assert r.returncode == 0, r.stderr[-2000:]
    # spark-submit starts the driver's JVM (README passes the option); the engine adds it to the
    # executors' options spark-submit gives.
    assert _values(r.stdout) == {
        "MASTER": "local[1]",
        "PARTITIONS": "7",
        "TS": "TIMESTAMP_MICROS",
        "CALL_SITES": "False",
        "DRIVER_JVM": "-XX:-DontCompileHugeMethods",
        "EXECUTOR_OPTIONS": "-Dml.from.submit=1 -XX:-DontCompileHugeMethods",
    }


def test_engine_java_options_are_added_unless_the_run_sets_the_flag_either_way():
    assert with_engine_java_options(None) == "-XX:-DontCompileHugeMethods"
    assert with_engine_java_options("-Da=1  -Xss4m") == "-Da=1 -Xss4m -XX:-DontCompileHugeMethods"
    assert with_engine_java_options("-XX:-DontCompileHugeMethods") == "-XX:-DontCompileHugeMethods"
    # A run that wants HotSpot's default back says so, and keeps it.
    assert with_engine_java_options("-XX:+DontCompileHugeMethods -Da=1") == (
        "-XX:+DontCompileHugeMethods -Da=1"
    )


def test_importing_the_package_builds_no_session():
    code = (
        "import ml_engine, ml_engine.config, ml_engine.schemas, ml_engine.session, ml_engine.jobs, "
        "ml_engine.cli\n"
        "from pyspark import SparkContext\n"
        "print(SparkContext._active_spark_context is None and SparkContext._gateway is None)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "True", r.stderr


def test_a_standalone_master_that_does_not_answer_is_named_at_once():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(MasterUnreachableError) as err:
            check_master(f"spark://127.0.0.1:{port}", timeout=2)
        with socket.create_server(("127.0.0.1", 0)) as listening:
            live = listening.getsockname()[1]
            check_master(f"spark://127.0.0.1:{port},127.0.0.1:{live}", timeout=2)  # one answers
    assert str(err.value) == (
        f"spark.master: no standalone master answers at spark://127.0.0.1:{port} "
        f"(127.0.0.1:{port}: Connection refused); start the master or fix --master "
        "(spark-submit) / spark.master (config)"
    )
    check_master("local[2]")  # local, yarn and k8s masters are not probed
