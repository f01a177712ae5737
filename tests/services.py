"""Real services the end-to-end tests start and always stop: a standalone Spark cluster from
the pyspark wheel and an ``mlflow server`` process, both on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
ROOT = Path(__file__).resolve().parents[1]
# The cluster tests' overrides of conf/cluster.yaml: one fit, no tuning (they compare runs).
CHAIN_SETS = ["train.tuning.method=none", "train.grid=null"]
# The JVMs these tests start live a minute and see a few thousand rows: the C1 compiler alone
# warms up sooner than C1 + C2 (3 jobs spark-submitted side by side on this 2-core machine:
# 146 s against 251 s). For the tests only; a long job on real data wants C2.
SHORT_JVM_OPTIONS = "-XX:TieredStopAtLevel=1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_line(log: Path, text: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    raise TimeoutError(f"'{text}' not seen in {log} within {timeout}s:\n{log.read_text()[-3000:]}")


def start(cmd: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stops the process group of ``proc`` (SIGKILL when ``sig`` is not obeyed in 30 s)."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@dataclass
class Cluster:
    url: str
    master: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)


def spark_env(root: Path) -> dict[str, str]:
    return dict(
        os.environ,
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(root / "logs"),
        SPARK_WORKER_DIR=str(root / "work"),
        PYSPARK_PYTHON=sys.executable,
        PYSPARK_DRIVER_PYTHON=sys.executable,
        SPARK_DAEMON_JAVA_OPTS=SHORT_JVM_OPTIONS,
    )


@contextlib.contextmanager
def standalone_cluster(root: Path, workers: int = 1, memory: str = "1g") -> Iterator[Cluster]:
    """A master and ``workers`` workers (separate JVMs, one core each) on loopback."""
    root.mkdir(parents=True, exist_ok=True)
    env = spark_env(root)
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    port = free_port()
    cluster = Cluster(f"spark://127.0.0.1:{port}")
    procs: list[subprocess.Popen] = []
    try:
        master_log = root / "master.log"
        master = start(
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(free_port()),
            ],
            master_log,
            env,
        )
        procs.append(master)
        cluster.master = master
        wait_for_line(master_log, "I have been elected leader", master)
        for i in range(workers):
            log = root / f"worker{i}.log"
            worker = start(
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    cluster.url,
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "1",
                    "--memory",
                    memory,
                    "--webui-port",
                    str(free_port()),
                    "--work-dir",
                    str(root / f"work{i}"),
                ],
                log,
                env,
            )
            procs.append(worker)
            cluster.workers.append(worker)
            cluster.logs.append(log)
            wait_for_line(log, "Successfully registered with master", worker)
        yield cluster
    finally:
        for p in reversed(procs):
            stop(p)


@dataclass
class StartingServer:
    """An ``mlflow server`` process that may not answer yet: ``ready()`` waits until it does
    and returns its URL. A fixture can build data meanwhile (the server takes 15 s to start)."""

    url: str
    proc: subprocess.Popen
    log: Path

    def ready(self) -> str:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(self.log.read_text()[-3000:])
            time.sleep(0.5)


@contextlib.contextmanager
def starting_mlflow_server(root: Path) -> Iterator[StartingServer]:
    """A real tracking server, started and not awaited: sqlite backend, artifacts served by
    the server itself. Without MLflow's job runner (GenAI scorers, which the engine does not
    use): its eight consumer processes took 21 s more CPU and 2 GB more memory in the server's
    first 40 s on this 2-core machine."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = root / "server.log"
    proc = start(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'backend.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        log,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    try:
        yield StartingServer(f"http://127.0.0.1:{port}", proc, log)
    finally:
        stop(proc)


@contextlib.contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """A real tracking server that answers: its URL."""
    with starting_mlflow_server(root) as server:
        yield server.ready()


def submit_command(
    master: str,
    archive: Path,
    job: str,
    sets: Sequence[str] = (),
    *,
    executor_memory: str = "640m",
    driver_memory: str | None = None,
    cores: int = 2,
    conf: dict[str, str] | None = None,
) -> list[str]:
    """``spark-submit`` of ``jobs/<job>.py`` to ``master`` as README's cluster section shows it
    (client mode, the library zip, one core per executor, ``cores`` in all) with
    ``conf/cluster.yaml`` and ``--set`` of each of ``sets``; ``conf`` defaults to 4 shuffle
    partitions, for small test data. Driver and executors get :data:`SHORT_JVM_OPTIONS`."""
    conf = {"spark.sql.shuffle.partitions": "4"} if conf is None else conf
    conf = {
        "spark.pyspark.python": sys.executable,
        "spark.ui.enabled": "false",
        "spark.executor.extraJavaOptions": SHORT_JVM_OPTIONS,
        **conf,
    }
    return [
        str(SPARK_HOME / "bin" / "spark-submit"),
        "--master",
        master,
        "--deploy-mode",
        "client",
        "--py-files",
        str(archive),
        *(["--driver-memory", driver_memory] if driver_memory else []),
        "--driver-java-options",
        f"-XX:-DontCompileHugeMethods {SHORT_JVM_OPTIONS}",
        "--executor-memory",
        executor_memory,
        "--executor-cores",
        "1",
        "--total-executor-cores",
        str(cores),
        *[a for k, v in conf.items() for a in ("--conf", f"{k}={v}")],
        str(ROOT / "jobs" / f"{job}.py"),
        "--config",
        str(ROOT / "conf" / "cluster.yaml"),
        *[a for s in sets for a in ("--set", s)],
    ]


def package(out: Path) -> Path:
    """The library zip for executors, built with ``ml-engine package``."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ml-engine"), "package", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return out
