"""The one SparkSession factory. Nothing in ml_engine builds a session at import time."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pyspark import SparkConf, SparkContext
from pyspark.sql import SparkSession

from ml_engine.config import SparkConfig
from ml_engine.package_files import package_dir

# Settings every session gets unless spark-submit or the config already set them:
# INT64 microsecond timestamps are what Delta (and delta-rs) expect in Parquet files; UTC keeps
# event times independent of the machine's zone.
ENGINE_DEFAULTS = {
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.session.timeZone": "UTC",
    # Parquet TIMESTAMP(NANOS) columns (pandas' default unit) read as their INT64 value, which
    # Spark would refuse; ingest turns them into timestamps (ml_engine.quality.ingest).
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.ui.showConsoleProgress": "false",
    # Whole-stage codegen is switched off for plans wider than maxFields (default 100); the
    # one-pass statistics of 50+ columns are far wider, and run 2x slower without it.
    "spark.sql.codegen.maxFields": "10000",
    # PySpark's DataFrame debugging records the Python call site of every Column function: a
    # stack walk and a failed optional import per call, which made building a job's
    # per-column expressions 3x slower (the jobs build thousands). Errors keep their message.
    "spark.python.sql.dataFrameDebugging.enabled": "false",
}
# JVM options every driver and executor gets, added to whatever extraJavaOptions the run sets.
# HotSpot leaves methods above 8,000 bytes of bytecode to its bytecode interpreter; the code
# Spark generates for one pass over 50+ columns (51 range rules, 321 moments) is made of such
# methods. On 1M rows x 63 columns the rules ran 4x and the moments 7x faster with this option.
ENGINE_JAVA_OPTIONS = ("-XX:-DontCompileHugeMethods",)
JAVA_OPTIONS_KEYS = ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions")


class JavaNotFoundError(RuntimeError):
    """Spark needs a Java runtime and none was found."""


class MasterUnreachableError(RuntimeError):
    """The standalone master named by the run does not accept connections."""


def check_master(master: str, timeout: float = 5.0) -> None:
    """Fails fast when a standalone master (``spark://host:port[,host:port]``) does not answer.

    Without this, Spark retries the master for a minute and then fails the session with
    ``Cannot call methods on a stopped SparkContext``, which does not say what is wrong.
    Other masters (``local[*]``, ``yarn``, ``k8s://``) are not checked.

    Raises:
        MasterUnreachableError: naming the URL, the socket error and what to do.
    """
    if not master.startswith("spark://"):
        return
    errors = []
    for address in master[len("spark://") :].split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{address.strip()}: {getattr(exc, 'strerror', None) or exc}")
    raise MasterUnreachableError(
        f"spark.master: no standalone master answers at {master} ({'; '.join(errors)}); "
        "start the master or fix --master (spark-submit) / spark.master (config)"
    )


def check_java() -> str:
    """Returns the java executable Spark will use.

    Raises:
        JavaNotFoundError: with installation advice, instead of a Py4J stack trace later.
    """
    java_home = os.environ.get("JAVA_HOME")
    candidate = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not candidate or not os.path.exists(candidate):
        raise JavaNotFoundError(
            "Java was not found (no JAVA_HOME, no 'java' on PATH). Spark needs Java 17: "
            "install it (Debian/Ubuntu: 'sudo apt-get install openjdk-17-jre-headless'; "
            "macOS: 'brew install openjdk@17') or set JAVA_HOME."
        )
    try:
        out = subprocess.run([candidate, "-version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise JavaNotFoundError(f"{candidate} does not run ({exc}); install Java 17") from exc
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr.decode(errors="replace"))
    if m:
        major = int(m.group(2)) if m.group(1) == "1" else int(m.group(1))
        if major < 17:
            raise JavaNotFoundError(
                f"{candidate} is Java {major}; Spark 4 needs Java 17 or newer: install "
                "openjdk-17 and set JAVA_HOME to it"
            )
    return candidate


def under_spark_submit() -> bool:
    """True when this Python process was launched by spark-submit (a JVM is already there)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def spark_log_file() -> Path:
    """Where a quiet local run sends Spark's own log (a new file per process)."""
    folder = Path(tempfile.gettempdir()) / "ml-engine-logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"spark-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"


def with_engine_java_options(options: str | None) -> str:
    """``options`` (a JVM command line fragment, may be None) plus, at the end, each of
    :data:`ENGINE_JAVA_OPTIONS` whose flag it does not set either way (``-XX:+Flag`` given by
    the run wins over the engine's ``-XX:-Flag``)."""
    given = (options or "").split()
    named = {o[5:] for o in given if o.startswith(("-XX:+", "-XX:-"))}
    return " ".join([*given, *(o for o in ENGINE_JAVA_OPTIONS if o[5:] not in named)])


def _quiet_java_options(existing: str | None) -> str:
    """Driver JVM options that send Spark's log4j output to :func:`spark_log_file`."""
    log = spark_log_file()
    os.environ["ML_ENGINE_SPARK_LOG"] = str(log)
    log4j = package_dir() / "resources" / "log4j2.properties"
    options = f"-Dlog4j2.configurationFile={log4j.as_uri()} -Dml_engine.spark.log={log}"
    return f"{existing} {options}".strip() if existing else options


def _launch_quiet_jvm(spark_cfg: SparkConfig, app_name: str | None, conf: dict[str, str]) -> None:
    """Starts the driver JVM with its terminal output sent to the Spark log file.

    The JVM prints a few lines of its own on start (module warnings) that no log setting
    silences; started here, they land in the same file as Spark's log.
    """
    from pyspark.java_gateway import launch_gateway

    launch_conf = SparkConf(loadDefaults=False).setAll(list(conf.items()))
    launch_conf.setMaster(spark_cfg.master).setAppName(app_name or spark_cfg.app_name)
    with open(os.environ["ML_ENGINE_SPARK_LOG"], "ab") as log:
        gateway = launch_gateway(launch_conf, popen_kwargs={"stdout": log, "stderr": log})
    SparkContext._gateway = gateway
    SparkContext._jvm = gateway.jvm


def build_session(
    spark_cfg: SparkConfig | None = None,
    app_name: str | None = None,
    extra_conf: dict[str, str] | None = None,
    quiet: bool = False,
) -> SparkSession:
    """Builds (or returns the running) SparkSession.

    Under spark-submit the master and every ``--conf`` given there win; the config's
    ``spark.master`` is only used for a local run, and ``spark.conf`` entries only fill keys
    spark-submit left unset.

    Args:
        spark_cfg: the ``spark`` section of the config (defaults if None).
        app_name: overrides ``spark_cfg.app_name`` (jobs pass ``ml-engine:<job>``).
        extra_conf: settings the caller needs (e.g. a Delta backend's), applied like
            ``spark_cfg.conf`` but with lower priority.
        quiet: for a local run that starts its own JVM, send Spark's log to a file (its path
            in the environment variable ``ML_ENGINE_SPARK_LOG``) instead of the terminal.

    Raises:
        JavaNotFoundError: when no Java runtime is available (local runs only).
        MasterUnreachableError: when the run's standalone master does not answer.
    """
    spark_cfg = spark_cfg or SparkConfig()
    if not under_spark_submit():
        check_java()
        if SparkContext._active_spark_context is None:
            # Spark's Python workers (saving and loading the engine's own ML stages) run
            # PYSPARK_PYTHON, by default whatever `python3` is first on PATH: under cron, or
            # beside a venv of another Python version, that one fails. This process's Python
            # has the engine installed; spark.pyspark.python in the config names another.
            os.environ.setdefault(
                "PYSPARK_PYTHON", spark_cfg.conf.get("spark.pyspark.python", sys.executable)
            )
    if under_spark_submit():
        # Attach to spark-submit's JVM so its --master and --conf values are visible here.
        SparkContext._ensure_initialized()
        existing = SparkConf()
    else:
        existing = SparkConf(loadDefaults=False)
    builder = SparkSession.builder
    if not existing.contains("spark.master"):
        builder = builder.master(spark_cfg.master)
    if not existing.contains("spark.app.name"):
        builder = builder.appName(app_name or spark_cfg.app_name)
    if SparkContext._active_spark_context is None:
        check_master(existing.get("spark.master", spark_cfg.master))
    wanted = {**ENGINE_DEFAULTS, **(extra_conf or {}), **spark_cfg.conf}
    for key in JAVA_OPTIONS_KEYS:
        # Added to the options spark-submit or the config give, not instead of them. Under
        # spark-submit the driver's JVM already runs: only executors get them from here.
        given = existing.get(key) if existing.contains(key) else wanted.get(key)
        wanted[key] = with_engine_java_options(given)
    if quiet and not under_spark_submit() and SparkContext._gateway is None:
        key = "spark.driver.extraJavaOptions"
        wanted[key] = _quiet_java_options(wanted.get(key))
        _launch_quiet_jvm(spark_cfg, app_name, wanted)
    for key, value in wanted.items():
        if not existing.contains(key) or key in JAVA_OPTIONS_KEYS:
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # A session that already existed keeps its static settings; runtime ones still apply.
    for key in (
        "spark.sql.parquet.outputTimestampType",
        "spark.sql.session.timeZone",
        "spark.sql.codegen.maxFields",
    ):
        if not existing.contains(key):
            spark.conf.set(key, wanted[key])
    return spark


def describe(spark: SparkSession, text: str | None) -> None:
    """Sets the job description shown in the Spark UI for the jobs that follow (None clears)."""
    spark.sparkContext.setJobDescription(text)


def delta_extra_conf(cfg) -> dict[str, str]:
    """Session settings for the delta-spark backend, when it is wanted and can load.

    ``delta.backend: spark`` always gets them (a missing jar then fails clearly when the table
    backend opens). ``auto`` gets them under spark-submit when the Delta classes are on the
    driver's classpath (``--packages``/``--jars``); a local ``auto`` run uses ``rs`` unless
    ``spark.jars.packages`` names delta-spark.
    """
    from ml_engine.tables import delta_spark_conf
    from ml_engine.tables.spark import delta_classes_load

    backend = cfg.delta.backend
    if backend == "rs":
        return {}
    if backend == "spark" or "delta-spark" in cfg.spark.conf.get("spark.jars.packages", ""):
        return delta_spark_conf()
    if under_spark_submit():
        SparkContext._ensure_initialized()
        return delta_spark_conf() if delta_classes_load(SparkContext._jvm) else {}
    return {}


class JobCounter:
    """Counts the Spark jobs started inside a ``with`` block (benchmarks and scale tests).

    Example::

        with JobCounter(spark) as jobs:
            run_clean(spark, cfg, tables)
        print(jobs.count)
    """

    def __init__(self, spark: SparkSession, group: str | None = None):
        import uuid

        self.spark = spark
        self.group = group or f"ml-engine-count-{uuid.uuid4().hex[:8]}"
        self.count = 0

    def __enter__(self) -> JobCounter:
        self.spark.sparkContext.setJobGroup(self.group, self.group, interruptOnCancel=False)
        return self

    def __exit__(self, *exc) -> None:
        sc = self.spark.sparkContext
        self.count = len(sc.statusTracker().getJobIdsForGroup(self.group))
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
