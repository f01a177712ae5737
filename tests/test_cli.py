"""The command line: exit codes and one-line reasons, checked by running the real command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "ml_engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_unknown_job_exits_2_naming_the_jobs():
    r = run_cli("run", "bake", "--config", "conf/local.yaml")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "ml-engine: run bake: unknown job 'bake'; jobs: ingest, clean, detect_outliers, "
        "build_features, build_training_set, train, score, drift_report"
    ]


@pytest.mark.parametrize("job", ["train", "score", "drift_report"])
def test_job_not_built_yet_exits_3_and_never_succeeds_silently(job):
    r = run_cli("run", job, "--config", "conf/local.yaml")
    assert r.returncode == 3
    assert r.stderr.strip() == (
        f"ml-engine: run {job}: job '{job}' is not built yet in this version of ml-engine; "
        "nothing was run"
    )


@pytest.mark.parametrize("job", ["train", "drift_report"])
def test_job_script_of_unbuilt_job_exits_non_zero(job):
    r = subprocess.run(
        [sys.executable, f"jobs/{job}.py", "--config", "conf/local.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert r.returncode == 3
    assert "is not built yet" in r.stderr


def test_bad_config_exits_2_with_file_and_key_on_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"inherits: {ROOT / 'conf' / 'base.yaml'}\nclean: {{dedup: sometimes}}\n")
    r = run_cli("run", "clean", "--config", str(bad))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ml-engine: run clean: config error: invalid config:")
    assert f"{bad}: clean.dedup: Input should be 'latest_by_key', 'exact' or 'none'" in lines[0]


def test_jobs_lists_what_is_built():
    r = run_cli("jobs")
    assert r.returncode == 0
    assert "ingest               built" in r.stdout
    assert "train                not built yet" in r.stdout


def _path_without_java(tmp_path: Path) -> str:
    """A PATH holding only make: no java anywhere on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("make"), bin_dir / "make")
    return str(bin_dir)


def test_missing_java_is_explained_by_the_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = _path_without_java(tmp_path)
    r = run_cli("run", "ingest", "--config", "conf/local.yaml", env=env)
    assert r.returncode == 4
    assert r.stderr.strip().startswith(
        "ml-engine: run ingest: Java was not found (no JAVA_HOME, no 'java' on PATH). "
        "Spark needs Java 17: install it"
    )
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["test", "demo"])
def test_missing_java_is_explained_by_make(tmp_path, target):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = _path_without_java(tmp_path)
    r = subprocess.run(
        ["make", "-s", target], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert r.returncode != 0
    assert "Java 17 is needed by Spark and was not found" in r.stdout
    assert "openjdk-17-jre-headless" in r.stdout
