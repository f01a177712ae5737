"""The default tracking store, a sqlite file, opened by several processes at once."""

from __future__ import annotations

import fcntl
import multiprocessing
import time

from mlflow import MlflowClient

from ml_engine.config import load_config
from ml_engine.tracking import use_store


def _open_store(cfg, started) -> None:
    """What a job does first: point MLflow at the store, then use it."""
    started.release()
    MlflowClient(tracking_uri=use_store(cfg)).search_experiments(max_results=1)


def test_processes_opening_a_new_sqlite_store_at_once_wait_for_the_first_to_create_it(tmp_path):
    """MLflow creates and migrates a sqlite store on a process's first open; four processes
    doing that at once broke the store for good in two rounds of three. The first open waits
    for the lock beside the store."""
    store = tmp_path / "store" / "mlflow.db"
    (tmp_path / "schema.yaml").write_text(
        "name: s\ncolumns:\n  - {name: id, type: string, nullable: false, role: [record_id, key]}\n"
        "  - {name: x, type: double, role: numeric_feature}\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "inherits: ml-engine:defaults\nschema: schema.yaml\nstorage: {root: store}\n"
        f"mlflow: {{tracking_uri: 'sqlite:///{store}'}}\n"
    )
    cfg = load_config(config)
    store.parent.mkdir()
    forked = multiprocessing.get_context("fork")  # MLflow is imported already: quick to start
    started = forked.Semaphore(0)
    procs = [forked.Process(target=_open_store, args=(cfg, started)) for _ in range(4)]
    with open(tmp_path / "store" / "mlflow.db.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # as a first process creating the store holds it
        for p in procs:
            p.start()
        for _ in procs:
            assert started.acquire(timeout=20)
        time.sleep(1)
        assert (store.exists(), [p.is_alive() for p in procs]) == (False, [True] * 4)
        fcntl.flock(lock, fcntl.LOCK_UN)
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    uri = f"sqlite:///{store}"
    assert [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()] == ["Default"]
