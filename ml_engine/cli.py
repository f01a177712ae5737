"""The ``ml-engine`` command.

::

    ml-engine run <job> --config FILE [--set key=value ...]
    ml-engine demo --workdir DIR [--rows N] [--config FILE]
    ml-engine generate-sample-data --out DIR [--rows N] [--seed S]
    ml-engine jobs

Exit codes: 0 success; 1 the job failed; 2 bad usage or config; 3 the job is not built yet;
4 the environment is missing something (Java). Every failure prints one line
``ml-engine: <what>: <why>`` on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path

from ml_engine import jobs as J
from ml_engine.config import ConfigError, load_config
from ml_engine.schemas import SchemaError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOCAL_CONFIG = PROJECT_ROOT / "conf" / "local.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ml-engine",
        description="Spark jobs over Delta tables for the life of a tabular model.",
    )
    p.add_argument("--debug", action="store_true", help="print tracebacks on failure")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run one job")
    run.add_argument("job", help=f"one of: {', '.join([*J.JOBS, 'pipeline'])}")
    run.add_argument("--config", required=True, help="config file, e.g. conf/local.yaml")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable), e.g. --set batch_id=2026-11-28",
    )

    demo = sub.add_parser("demo", help="generate sample data and run every built job on it")
    demo.add_argument("--workdir", required=True, help="directory for raw data, tables, MLflow")
    demo.add_argument("--rows", type=int, default=None, help="rows in the reference batch")
    demo.add_argument(
        "--config",
        default=str(DEFAULT_LOCAL_CONFIG),
        help=f"config to start from (default {DEFAULT_LOCAL_CONFIG})",
    )
    demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    gen = sub.add_parser("generate-sample-data", help="write the dirty sample CSV batches")
    gen.add_argument(
        "--out", required=True, help="directory; batches go to OUT/reference and OUT/current"
    )
    gen.add_argument("--rows", type=int, default=20_000)
    gen.add_argument("--current-rows", type=int, default=None)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--files", type=int, default=2)
    gen.add_argument("--config", default=None, help="config whose spark section to use")

    pkg = sub.add_parser("package", help="zip the library for spark-submit --py-files")
    pkg.add_argument("--out", default="dist/ml_engine.zip", help="zip file to write")

    sub.add_parser("jobs", help="list the jobs and whether they are built")
    return p


def _fail(what: str, why: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    one_line = " | ".join(line.strip() for line in str(why).strip().splitlines() if line.strip())
    if len(one_line) > 2000:
        one_line = one_line[:2000] + " ... (run with --debug for the whole message)"
    print(f"ml-engine: {what}: {one_line}", file=sys.stderr)
    return code


def print_result(result: J.JobResult) -> None:
    """Prints a job's outputs and figures for a person reading the terminal."""
    print(f"[{result.job}] done")
    for name, path in result.outputs.items():
        print(f"  {name:<14} {path}")
    if result.metrics:
        print(f"  metrics        {json.dumps(result.metrics, default=str, sort_keys=True)}")


def _run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.job == "pipeline":
        names = [n for n in J.PIPELINE if J.is_built(n)]
        missing = [n for n in J.PIPELINE if not J.is_built(n)]
    else:
        J.job_function(args.job)  # unknown or not built: fail before Spark starts
        names, missing = [args.job], []
    spark, tables = J.open_session_and_tables(cfg, f"ml-engine:{args.job}")
    for n in names:
        print_result(J.run_job(n, spark, cfg, tables))
    if missing:
        raise J.JobNotBuiltError(
            f"pipeline ran {', '.join(names)}; not built yet: {', '.join(missing)}"
        )
    return J.EXIT_OK


def _generate(args) -> int:
    from ml_engine.config import SparkConfig
    from ml_engine.sample_data import generate_sample_data
    from ml_engine.session import build_session

    spark_cfg = load_config(args.config).spark if args.config else SparkConfig()
    spark = build_session(spark_cfg, app_name="ml-engine:generate-sample-data")
    summary = generate_sample_data(
        spark,
        args.out,
        rows=args.rows,
        seed=args.seed,
        current_rows=args.current_rows,
        files=args.files,
    )
    print(f"sample data written to {Path(args.out).resolve()}")
    print(f"  {summary}")
    return J.EXIT_OK


def build_archive(out: str | Path) -> Path:
    """Zips the ``ml_engine`` package (sources only) for ``spark-submit --py-files``.

    Returns the absolute path of the archive.
    """
    import zipfile

    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    package_dir = Path(__file__).resolve().parent
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(package_dir.rglob("*.py")):
            zf.write(f, f.relative_to(package_dir.parent).as_posix())
    return out


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code (see the module docstring)."""
    from ml_engine.session import JavaNotFoundError

    args = _parser().parse_args(argv)
    what = {"run": f"run {getattr(args, 'job', '')}".strip()}.get(args.command, args.command)
    try:
        if args.command == "jobs":
            for name in J.JOBS:
                print(f"{name:<20} {'built' if J.is_built(name) else 'not built yet'}")
            return J.EXIT_OK
        if args.command == "run":
            return _run(args)
        if args.command == "demo":
            from ml_engine.demo import run_demo

            run_demo(args.workdir, config=args.config, rows=args.rows, overrides=args.overrides)
            return J.EXIT_OK
        if args.command == "generate-sample-data":
            return _generate(args)
        if args.command == "package":
            print(build_archive(args.out))
            return J.EXIT_OK
    except (ConfigError, SchemaError) as exc:
        return _fail(what, f"config error: {exc}", J.EXIT_USAGE, args.debug)
    except KeyError as exc:
        return _fail(what, exc.args[0] if exc.args else str(exc), J.EXIT_USAGE, args.debug)
    except J.JobNotBuiltError as exc:
        return _fail(what, str(exc), J.EXIT_NOT_BUILT, args.debug)
    except JavaNotFoundError as exc:
        return _fail(what, str(exc), J.EXIT_ENVIRONMENT, args.debug)
    except J.JobError as exc:
        return _fail(what, str(exc), J.EXIT_JOB_FAILED, args.debug)
    except Exception as exc:  # noqa: BLE001 - any other failure still gets a one-line reason
        first = (str(exc).strip().splitlines() or [""])[0]
        return _fail(what, f"{type(exc).__name__}: {first}", J.EXIT_JOB_FAILED, args.debug)
    return J.EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
