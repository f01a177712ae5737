"""MLflow glue shared by the jobs that track runs (``train``, ``drift_report``, ``reproduce``).

* :func:`connect` points MLflow at the config's tracking store and experiment (an explicit
  artifact location for a sqlite store, so artifacts never land in the working directory);
* :func:`config_params` flattens the effective config into run params, with ``${VAR}``
  placeholders instead of secret values;
* :func:`lineage_tags` records the git commit, the engine version and the Delta version of
  every input table;
* :func:`log_effective_config` stores the config as an artifact a later run can load again.

MLflow client calls retry on network errors for minutes by default; the engine lowers that
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``) unless they are set, so
a tracking server that goes away fails a job quickly with a clear message.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from ml_engine.config import Config, dump_config

CONFIG_ARTIFACT = "config/config.yaml"
TAG_PREFIX = "ml_engine."
# MLflow refuses param values longer than this.
MAX_PARAM_LENGTH = 6000


def engine_version() -> str:
    """The installed ml-engine version (``unknown`` when run from a source tree only)."""
    try:
        return importlib.metadata.version("ml-engine")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def git_commit() -> str:
    """The git commit of the engine's source tree, or ``unknown`` outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return "unknown"
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def use_store(cfg: Config) -> str:
    """Points MLflow's tracking and registry URIs (process-wide, as MLflow keeps them) at the
    config's store; returns the URI."""
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    uri = cfg.tracking_uri()
    store = cfg.sqlite_store()
    if store is not None:
        store.parent.mkdir(parents=True, exist_ok=True)
        _open_sqlite_store(uri, store)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


_OPENED: set[str] = set()


def _open_sqlite_store(uri: str, store: Path) -> None:
    """Opens the sqlite store once per process, under an exclusive lock on ``<store>.lock``.

    MLflow creates and migrates a sqlite store when a process first opens it. Processes that
    open a new store at once (two jobs of a schedule starting together) run the migrations
    against each other and leave the store broken for good ("table _alembic_tmp_tags already
    exists" on every later open). Under the lock the first process creates it whole; the
    others then find every table and only check the schema.
    """
    if uri in _OPENED:
        return
    import fcntl

    from mlflow import MlflowClient

    try:
        lock = open(store.with_name(store.name + ".lock"), "a")
    except OSError:  # a directory one may only read: the store is there to read, not to make
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    _OPENED.add(uri)


def connect(cfg: Config) -> str:
    """Points MLflow at the config's tracking store and experiment; returns the experiment id.

    A new experiment gets ``cfg.artifact_location()`` (``<storage root>/mlartifacts`` for a
    sqlite store).
    """
    import mlflow

    use_store(cfg)
    name = cfg.mlflow.experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(name, artifact_location=cfg.artifact_location())
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: data}


def config_params(cfg: Config) -> dict[str, str]:
    """The effective config's leaves as MLflow params (``train.grid.regParam`` ->
    ``[0.01, 0.1]``), the engine's defaults included, so runs compare on every setting.

    Values set in the config files come as written (``${VAR}`` placeholders, never their
    values); lists stay one param. Values longer than MLflow's limit are cut with ``...``.
    """
    leaves = _leaves(cfg.to_dict())
    if cfg._raw is not None:
        leaves.update(_leaves(cfg._raw))
    params = {}
    for key, value in leaves.items():
        text = "null" if value is None else str(value)
        if len(text) > MAX_PARAM_LENGTH:
            text = text[: MAX_PARAM_LENGTH - 3] + "..."
        params[key] = text
    return params


def lineage_tags(inputs: dict[str, tuple[str, int]]) -> dict[str, str]:
    """Tags for the code and data a run used.

    Args:
        inputs: input table name -> (path, Delta version read).
    """
    tags = {
        f"{TAG_PREFIX}git_commit": git_commit(),
        f"{TAG_PREFIX}engine_version": engine_version(),
    }
    for name, (path, version) in inputs.items():
        tags[f"{TAG_PREFIX}input.{name}.path"] = path
        tags[f"{TAG_PREFIX}input.{name}.version"] = str(version)
    return tags


def input_versions(tags: dict[str, str]) -> dict[str, tuple[str, int]]:
    """The inverse of :func:`lineage_tags` for the input tables: name -> (path, version)."""
    found: dict[str, dict[str, str]] = {}
    prefix = f"{TAG_PREFIX}input."
    for key, value in tags.items():
        if key.startswith(prefix):
            name, _, field = key[len(prefix) :].rpartition(".")
            found.setdefault(name, {})[field] = value
    return {
        name: (f["path"], int(f["version"]))
        for name, f in found.items()
        if "path" in f and "version" in f
    }


def log_effective_config(cfg: Config) -> None:
    """Logs the effective config (placeholders kept) as the artifact :data:`CONFIG_ARTIFACT`."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(CONFIG_ARTIFACT).name
        dump_config(cfg, path)
        mlflow.log_artifact(str(path), artifact_path=str(Path(CONFIG_ARTIFACT).parent))
