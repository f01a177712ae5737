"""``ml-engine demo``: the whole pipeline, locally, on generated sample data.

Layout of the work directory (DESIGN.md contract)::

    DIR/config.yaml        the effective config of the run (owner-only; ${VAR} kept)
    DIR/raw/reference/     training batch (CSV, with dirt)     DIR/raw/current/  later batch, drifted
    DIR/raw/MANIFEST.json  what dirt and drift the generator injected
    DIR/tables/<name>/     Delta tables (bronze, quarantine, silver, dq_metrics, ...)
    DIR/models/            fitted stages (outlier detector)
    DIR/mlflow.db          MLflow tracking store, artifacts under DIR/mlartifacts/
    DIR/reports/           drift report
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
from pathlib import Path

from ml_engine import jobs as J
from ml_engine import results as R
from ml_engine.config import Config, PreflightError, dump_config, load_config

# Jobs per batch, in order. The reference batch fits (outlier detector, model); the current
# batch reuses what was fitted and is scored and compared with the reference.
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
        # The batch scored is filled with the values the training batch learned.
        "clean.impute_from=reference",
    ]
    if rows is not None:
        demo_overrides.append(f"sample_data.rows={rows}")
    return load_config(config, [*demo_overrides, *overrides])


def _for_batch(cfg: Config, workdir: Path, batch: str) -> Config:
    c = cfg.model_copy(deep=True)
    c.batch_id = batch
    c.ingest.path = str(workdir / "raw" / batch)
    c._schema = cfg._schema
    return c


def command(name: str) -> str:
    """How to call the executable ``name`` of this installation, as a user would type it."""
    sibling = Path(sys.executable).parent / name
    on_path = shutil.which(name)
    if on_path and (not sibling.exists() or Path(on_path).resolve() == sibling.resolve()):
        return name
    return str(sibling) if sibling.exists() else name


def _double_quoted(text: str) -> str:
    """``text`` in double quotes for a POSIX shell (easier to read than shlex's quoting)."""
    escaped = "".join("\\" + ch if ch in '"$`\\' else ch for ch in text)
    return f'"{escaped}"'


def closing_hints(cfg: Config, workdir: Path) -> list[str]:
    """Commands a user can paste next; each runs as printed (tested)."""
    config = shlex.quote(str(workdir / "config.yaml"))
    quarantine = cfg.storage.table_path("quarantine")
    # pyarrow reads the files delta-rs lists (delta-rs's to_pandas can abort at exit, see README)
    look = (
        f"import pyarrow.parquet as pq; from deltalake import DeltaTable; "
        f"print(pq.read_table(DeltaTable({quarantine!r}).file_uris(), "
        f"columns=['reason', 'raw_record']).to_pandas().head(10))"
    )
    hints = [
        f"{command('python')} -c {_double_quoted(look)}",
        f"{command('ml-engine')} run build_features --config {config} --set batch_id=current",
    ]
    hints.append(
        f"{command('ml-engine')} run drift_report --config {config} --set batch_id=current"
    )
    store = shlex.quote(f"sqlite:///{workdir / 'mlflow.db'}")
    hints.append(f"{command('mlflow')} ui --backend-store-uri {store} --port 5000")
    return hints


def run_demo(
    workdir: str,
    config: str,
    rows: int | None = None,
    overrides: list[str] = (),
    quiet: bool = True,
) -> int:
    """Generates sample data into ``workdir`` and runs every built job on both batches.

    Prints where each output is and what to run next.

    Returns:
        The exit code: 0, or the drift report's code when it asks for one.

    Raises:
        ConfigError: the starting config is invalid.
        JobError: a job failed.
    """
    from ml_engine.cli import print_result
    from ml_engine.preflight import tracking_problems
    from ml_engine.sample_data import generate_sample_data

    wd = Path(workdir).resolve()
    wd.mkdir(parents=True, exist_ok=True)
    cfg = demo_config(wd, config, rows, list(overrides))
    problems = tracking_problems(cfg)
    if problems:
        raise PreflightError("\n".join(problems))
    dump_config(cfg, wd / "config.yaml")
    started = time.time()
    spark, tables = J.open_session_and_tables(cfg, "ml-engine:demo", quiet=quiet)
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
    print(f"[sample data] {wd / 'raw'}")
    for line in summary.lines():
        print(f"  {line}")

    results: list[R.JobResult] = []
    code = R.EXIT_OK
    for batch, names in (("reference", REFERENCE_JOBS), ("current", CURRENT_JOBS)):
        bcfg = _for_batch(cfg, wd, batch)
        print(f"--- batch '{batch}' ---")
        for name in names:
            t0 = time.time()
            result = J.run_job(name, spark, bcfg, tables)
            results.append(result)
            if name == "train" and result.metrics.get("gate") != "champion":
                # The demo shows the whole chain: without a champion it scores the new version.
                cfg.score.model_version = result.metrics["model_version"]
                result.notes.append(
                    f"the demo scores version {result.metrics['model_version']} although it is "
                    f"not champion (score.model_version)"
                )
            print_result(result)
            print(f"  took           {time.time() - t0:.1f} s")
            code = max(code, result.exit_code)

    print("\n=== where everything is ===")
    print(f"  config          {wd / 'config.yaml'}")
    print(f"  raw data        {wd / 'raw'} (MANIFEST.json documents the injected dirt and drift)")
    for name in sorted({n for r in results for n in r.outputs}):
        path = next(r.outputs[name] for r in results if name in r.outputs)
        print(f"  {name:<15} {path}")
    if (wd / "mlflow.db").exists():  # written once a job tracks runs (train, drift_report)
        print(f"  mlflow          sqlite:///{wd / 'mlflow.db'}")
    print("\nnext, for example:")
    for hint in closing_hints(cfg, wd):
        print(f"  {hint}")
    print(f"demo finished in {time.time() - started:.0f} s")
    return code
