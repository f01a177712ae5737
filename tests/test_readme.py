"""Every command README shows in a ``bash`` block, every example of ``ml-engine --help`` and
every closing hint of the demo, run as printed (slow: a full demo and several pipelines).

The commands run in order in a scratch copy of the project (its own ``demo/`` and
``my-project/``), with the project's ``.venv`` linked in, so ``make demo`` finds the
environment installed and runs what a user's ``make demo`` runs. ``make test`` and ``make
test-slow`` are what CI itself runs, so they are the only commands not repeated here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

NOT_REPEATED = ("make test",)


def bash_blocks(markdown: str) -> list[str]:
    """The command lines of the ```bash blocks, continuation lines joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """A scratch copy of the project sharing the installed environment."""
    work = tmp_path_factory.mktemp("checkout")
    for name in ("ml_engine", "conf", "schemas", "jobs", "benchmarks", ".venv"):
        os.symlink(ROOT / name, work / name)
    for name in ("Makefile", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, work / name)
    # Older than the environment's stamp: make sees the environment as installed.
    stamp = (ROOT / ".venv" / ".installed").stat().st_mtime
    os.utime(work / "pyproject.toml", (stamp - 60, stamp - 60))
    return work


def sh(command: str, cwd: Path, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=cwd, timeout=timeout
    )


def serves(command: str, cwd: Path, url: str) -> None:
    """Starts a server command, waits until ``url`` answers 200, stops it."""
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {command}"],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(1)
            assert proc.poll() is None, f"{command} exited with {proc.returncode}"
        raise AssertionError(f"{command}: {url} never answered")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def run_as_printed(command: str, cwd: Path) -> str:
    if re.search(r"\bmlflow ui\b", command):
        port = re.search(r"--port (\d+)", command).group(1)
        serves(command, cwd, f"http://127.0.0.1:{port}/")
        return ""
    done = sh(command, cwd)
    assert done.returncode == 0, f"{command}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    assert done.stderr == "", f"{command} wrote to stderr:\n{done.stderr[-3000:]}"
    return done.stdout


def latest_train_run(store: Path) -> str:
    client = MlflowClient(tracking_uri=f"sqlite:///{store}", registry_uri=f"sqlite:///{store}")
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string="tags.`ml_engine.job` = 'train'",
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.run_id


def test_readme_commands_run_as_printed(checkout):
    commands = bash_blocks((ROOT / "README.md").read_text())
    assert commands[:2] == ["make demo", "make test"]
    ran = []
    for command in commands:
        if command.startswith(NOT_REPEATED):
            continue
        if "<run-id>" in command:
            command = command.replace("<run-id>", latest_train_run(checkout / "demo" / "mlflow.db"))
        out = run_as_printed(command, checkout)
        ran.append(command)
        if command == "make demo":
            hints = out.split("next, for example:\n")[1].split("demo finished")[0]
            for hint in [h.strip() for h in hints.splitlines() if h.strip()]:
                run_as_printed(hint, checkout)
    assert any(c.startswith(".venv/bin/ml-engine reproduce") for c in ran)


def test_help_examples_run_as_printed(checkout, tmp_path):
    text = sh(".venv/bin/ml-engine --help", checkout).stdout
    examples = [line.strip() for line in text.split("examples:\n")[1].splitlines() if line.strip()]
    assert examples[0].startswith("ml-engine demo ")
    bin_dir = checkout / ".venv" / "bin"
    for example in examples:
        run_as_printed(f"PATH={bin_dir}:$PATH {example}", tmp_path)
