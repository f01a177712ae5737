"""The ``vacuum`` job: compacts small files and deletes the files of replaced rows that no job
will read again.

Every rerun of a batch, every record a later batch takes over (``latest_by_key``) and every
rebuilt feature table leaves the replaced Parquet files on disk, readable by Delta time
travel; a failed write leaves files no version references. A daily pipeline's storage grows
by them without end. The job deletes, in every table of the storage root, the files the
latest version does not reference once they are ``vacuum.retain_hours`` old (Delta's
``VACUUM``), except the files of the versions the engine still reads:

* the version each batch's last complete run recorded, when jobs read the batch there rather
  than at the latest version (a later run of it did not complete;
  :meth:`~ml_engine.catalog.BatchCatalog.pinned_versions`);
* with ``vacuum.keep_model_inputs``, the table versions every registered version of
  ``mlflow.registered_model`` was trained from (its run's lineage tags), which
  ``ml-engine reproduce`` rebuilds the training set from.

Time travel to any other version older than the retention stops working, as with Delta's own
``VACUUM``; earlier runs' ``dq_metrics`` (read by time travel) among them.

Each job writes a batch as several files (one per Spark task), and a small daily batch stays
that many small files in every table, each opened by every job that reads the table whole.
With ``vacuum.compact`` the job first compacts every table (Delta's ``OPTIMIZE``): each
partition's small files become one, in a commit that changes no row. The run log does not
count it as a change of the batches it rewrote (:func:`~ml_engine.catalog.rewritten_after`),
so jobs read them at the new version and no version is kept for them; the replaced files
are deleted by the first vacuum ``retain_hours`` later.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from pyspark.sql import SparkSession

from ml_engine.catalog import readable_from
from ml_engine.config import TABLE_NAMES, Config
from ml_engine.results import JobError, JobResult
from ml_engine.session import describe
from ml_engine.tables.base import DeltaTables, table_location
from ml_engine.tables.log import delta_log

STAGE = "vacuum"


def model_inputs(cfg: Config) -> dict[str, dict[int, list[str]]]:
    """Table path (:func:`~ml_engine.tables.base.table_location`) -> version -> the registered
    model versions of ``mlflow.registered_model`` trained from that version of the table.

    Raises:
        JobError: the tracking store cannot be read.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from ml_engine.tracking import input_versions, use_store

    name = cfg.mlflow.registered_model
    found: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    try:
        use_store(cfg)
        client = MlflowClient()
        versions = client.search_model_versions(f"name = '{name}'")
        for mv in sorted(versions, key=lambda mv: int(mv.version)):
            if not mv.run_id:
                continue
            tags = client.get_run(mv.run_id).data.tags
            for path, version in input_versions(tags).values():
                found[table_location(path)][version].append(f"{name} v{mv.version}")
    except MlflowException as exc:
        raise JobError(
            f"vacuum: cannot read the registered versions of model '{name}' from "
            f"{cfg.tracking_uri()} (mlflow.tracking_uri): {exc.message}. Nothing was deleted; "
            "start the tracking server, or set vacuum.keep_model_inputs to false to vacuum "
            "without keeping the models' training inputs"
        ) from None
    return found


def versions_to_keep(
    tables: DeltaTables, path: str, trained: dict[int, list[str]]
) -> dict[int, list[str]]:
    """Version -> why the vacuum of the table at ``path`` keeps it, oldest first: the batches
    jobs read there (:meth:`~ml_engine.catalog.BatchCatalog.pinned_versions`) and the model
    versions ``trained`` from it. The latest version (kept anyway), a version the log no
    longer holds and one a table made anew has not reached are left out."""
    why: dict[int, list[str]] = defaultdict(list)
    for version, batches in tables.pinned_versions(path).items():
        why[version].append(f"jobs read batch(es) {', '.join(batches)} there")
    for version, models in trained.items():
        why[version].append(f"{', '.join(models)} trained on it")
    oldest, latest = readable_from(delta_log(path, tables.spark)) or 0, tables.version(path)
    return {v: why[v] for v in sorted(why) if oldest <= v < latest}


def _inputs_elsewhere(
    inputs: dict[str, dict[int, list[str]]], vacuumed: Iterable[str]
) -> list[str]:
    """A note naming the models' input versions in tables this vacuum did not look at."""
    here = {table_location(p) for p in vacuumed}
    elsewhere = [
        f"{path} v{v} ({', '.join(models)})"
        for path, by_version in sorted(inputs.items())
        if path not in here
        for v, models in sorted(by_version.items())
    ]
    if not elsewhere:
        return []
    return [
        "inputs of registered models in tables outside this storage root (kept when their own "
        "root is vacuumed): " + "; ".join(elsewhere)
    ]


def run_vacuum(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """Vacuums every table of the storage root, keeping the versions the engine reads.

    ``tables`` is the job's :class:`~ml_engine.catalog.BatchCatalog` (it knows the versions
    the run log pins). No Spark job on the ``rs`` backend: the log says which files to keep.

    Returns:
        ``JobResult("vacuum")``: each vacuumed table's path; metrics ``retain_hours``,
        ``files_compacted`` (the small files compaction replaced) and ``files_deleted``, in
        all and per table; a note per table that keeps older versions, naming them and why.

    Raises:
        JobError: the registered models' inputs cannot be read (see :func:`model_inputs`).
    """
    vc = cfg.vacuum
    inputs = model_inputs(cfg) if vc.keep_model_inputs else {}
    outputs: dict[str, str] = {}
    compacted: dict[str, int] = {}
    deleted: dict[str, int] = {}
    notes: list[str] = []
    for name in TABLE_NAMES:
        path = cfg.storage.table_path(name)
        if not tables.exists(path):
            continue
        if vc.compact:
            describe(spark, f"compact {name}")
            compacted[name] = tables.compact(path)
        # after the compaction: the version it replaced as the latest may be a model's input
        keep = versions_to_keep(tables, path, inputs.get(table_location(path), {}))
        describe(spark, f"vacuum {name}")
        outputs[name], deleted[name] = path, len(tables.vacuum(path, vc.retain_hours, list(keep)))
        if keep:
            kept = "; ".join(f"v{v} ({', '.join(reasons)})" for v, reasons in keep.items())
            notes.append(f"{name}: kept {kept}")
    notes += _inputs_elsewhere(inputs, outputs.values())
    return JobResult(
        job=STAGE,
        outputs=outputs,
        metrics={
            "retain_hours": vc.retain_hours,
            "files_compacted": sum(compacted.values()),
            "files_compacted_by_table": compacted,
            "files_deleted": sum(deleted.values()),
            "files_deleted_by_table": deleted,
        },
        notes=notes,
    )
