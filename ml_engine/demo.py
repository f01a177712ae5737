"""``ml-engine demo``: the whole pipeline, locally, on generated sample data.

Layout of the work directory (DESIGN.md contract)::

    DIR/config.yaml        the effective config of the run
    DIR/raw/reference/     training batch (CSV, with dirt)     DIR/raw/current/  later batch, drifted
    DIR/raw/MANIFEST.json  what dirt and drift the generator injected
    DIR/tables/<name>/     Delta tables (bronze, quarantine, silver, dq_metrics, ...)
    DIR/models/            fitted stages (outlier detector)
    DIR/mlflow.db          MLflow tracking store, artifacts under DIR/mlartifacts/
    DIR/reports/           drift report
"""

from __future__ import annotations

import time
from pathlib import Path

from ml_engine import jobs as J
from ml_engine.config import Config, dump_config, load_config

# Jobs per batch, in order. The reference batch fits (outlier detector, later the model);
# the current batch reuses what was fitted.
REFERENCE_JOBS = [
    "ingest",
    "clean",
    "detect_outliers",
    "build_features",
    "build_training_set",
    "train",
]
CURRENT_JOBS = ["ingest", "clean", "detect_outliers", "build_features", "score", "drift_report"]


def demo_config(workdir: Path, config: str, rows: int | None, overrides: list[str]) -> Config:
    """The config of a demo run: ``config`` with storage, MLflow and input under ``workdir``."""
    workdir = workdir.resolve()
    demo_overrides = [
        f"storage.root={workdir}",
        f"ingest.path={workdir / 'raw' / 'reference'}",
        f"mlflow.tracking_uri=sqlite:///{workdir / 'mlflow.db'}",
        "batch_id=reference",
    ]
    if rows is not None:
        demo_overrides.append(f"sample_data.rows={rows}")
    return load_config(config, [*demo_overrides, *overrides])


def _for_batch(cfg: Config, workdir: Path, batch: str, refit: bool) -> Config:
    c = cfg.model_copy(deep=True)
    c.batch_id = batch
    c.ingest.path = str(workdir / "raw" / batch)
    c.outliers.refit = refit
    c._schema = cfg._schema
    return c


def run_demo(
    workdir: str, config: str, rows: int | None = None, overrides: list[str] = ()
) -> list[J.JobResult]:
    """Generates sample data into ``workdir`` and runs every built job on both batches.

    Prints where each output is. Jobs that are not built yet are listed, not faked.

    Raises:
        ConfigError: the starting config is invalid.
        JobError: a job failed.
    """
    from ml_engine.sample_data import generate_sample_data

    wd = Path(workdir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(wd, config, rows, list(overrides))
    dump_config(cfg, wd / "config.yaml")
    started = time.time()
    spark, tables = J.open_session_and_tables(cfg, "ml-engine:demo")
    print(f"ml-engine demo in {wd} (Delta backend: {tables.name}, Spark {spark.version})")

    sd = cfg.sample_data
    summary = generate_sample_data(
        spark,
        str(wd / "raw"),
        rows=sd.rows,
        seed=sd.seed,
        current_rows=sd.current_rows,
        files=sd.files,
    )
    print(f"[sample data] {wd / 'raw'}: {summary}")

    results: list[J.JobResult] = []
    not_built: list[str] = []
    for batch, names, refit in (
        ("reference", REFERENCE_JOBS, True),
        ("current", CURRENT_JOBS, False),
    ):
        bcfg = _for_batch(cfg, wd, batch, refit)
        print(f"--- batch '{batch}' ---")
        for name in names:
            if not J.is_built(name):
                not_built.append(f"{name} ({batch})")
                continue
            t0 = time.time()
            result = J.run_job(name, spark, bcfg, tables)
            results.append(result)
            from ml_engine.cli import print_result

            print_result(result)
            print(f"  took           {time.time() - t0:.1f} s")

    print("\n=== where everything is ===")
    print(f"  config          {wd / 'config.yaml'}")
    print(f"  raw data        {wd / 'raw'} (MANIFEST.json documents the injected dirt and drift)")
    for name in sorted({n for r in results for n in r.outputs}):
        path = next(r.outputs[name] for r in results if name in r.outputs)
        print(f"  {name:<15} {path}")
    if (wd / "mlflow.db").exists():  # written once a job tracks runs (train, drift_report)
        print(f"  mlflow          sqlite:///{wd / 'mlflow.db'}")
    if not_built:
        print(f"  not built yet:  {', '.join(not_built)} (skipped, nothing faked)")
    print(
        f'\nlook at a table:  python -c "from deltalake import DeltaTable; '
        f"print(DeltaTable('{cfg.storage.table_path('quarantine')}').to_pandas().head())\""
    )
    print(f"demo finished in {time.time() - started:.0f} s")
    return results
