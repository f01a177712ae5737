"""The ``ml-engine`` command (see ``ml-engine --help``).

Exit codes: 0 success; 1 the job failed; 2 bad usage or config (or a run that cannot succeed,
seen before Spark starts); 4 the environment is missing something (Java, the standalone
master); 5 ``drift_report`` found drift and ``drift.fail_on_drift`` is set. Every failure
prints one line per problem, ``ml-engine: <what>: <why>``, on stderr; ``--debug`` (before or
after the command) adds the traceback and shows Spark's own log on the terminal.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from ml_engine import jobs as J
from ml_engine import results as R
from ml_engine.config import PACKAGED_PREFIX, ConfigError, PreflightError, load_config
from ml_engine.schemas import SchemaError

DEFAULT_DEMO_CONFIG = f"{PACKAGED_PREFIX}sample"

EXAMPLES = """\
examples:
  ml-engine demo --workdir ml-demo --rows 1000
  ml-engine run drift_report --config ml-demo/config.yaml --set batch_id=current
  ml-engine run clean detect_outliers build_features --config ml-demo/config.yaml --set batch_id=current
  ml-engine init --data ml-demo/raw/reference --out my-project
  ml-engine run pipeline --config my-project/config.yaml
  ml-engine jobs
"""


def _debug_flag() -> argparse.ArgumentParser:
    """``--debug`` for every subcommand, so it may come before or after the job name."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print tracebacks and Spark's own log on the terminal",
    )
    return parent


SET_HELP = "override one config key (repeatable), e.g. --set batch_id=2026-11-28"


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP
    )


def _parser() -> argparse.ArgumentParser:
    common = _debug_flag()
    p = argparse.ArgumentParser(
        prog="ml-engine",
        description="Spark jobs over Delta tables for the whole life of a tabular model.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--debug", action="store_true", help="print tracebacks and Spark's own log on the terminal"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        parents=[common],
        help="run jobs, or the whole pipeline",
        description=(
            "Run one or more jobs on the config's batch, in the order given, in one Spark "
            "session ('pipeline': every job in order)."
        ),
    )
    run.add_argument(
        "job",
        nargs="+",
        help=f"one or more of: {', '.join([*J.JOBS, 'pipeline'])}",
    )
    run.add_argument("--config", required=True, help="config file, e.g. conf/local.yaml")
    _add_set(run)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="generate sample data and run every job on it",
        description="Generate the sample transactions and run the whole pipeline on them.",
    )
    demo.add_argument("--workdir", required=True, help="directory for raw data, tables, MLflow")
    demo.add_argument("--rows", type=int, default=None, help="rows in the reference batch")
    demo.add_argument(
        "--config",
        default=DEFAULT_DEMO_CONFIG,
        help=f"config to start from (default {DEFAULT_DEMO_CONFIG}, packaged with the engine)",
    )
    _add_set(demo)

    init = sub.add_parser(
        "init",
        parents=[common],
        help="draft a schema and a config for your own data",
        description="Read a sample of your CSV / JSON lines / Parquet data and write a draft "
        "schema (every guess commented) and a config that runs every job on it.",
    )
    init.add_argument("--data", required=True, help="a data file or a directory of them")
    init.add_argument("--out", required=True, help="directory for schema.yaml and config.yaml")
    init.add_argument("--sample-rows", type=int, default=1000, help="rows to read (default 1000)")
    init.add_argument("--force", action="store_true", help="overwrite existing files")
    init.add_argument(
        "--label",
        default=None,
        metavar="COLUMN",
        help="the column to predict, when init does not recognise it by its name",
    )

    gen = sub.add_parser(
        "generate-sample-data", parents=[common], help="write the dirty sample CSV batches"
    )
    gen.add_argument(
        "--out", required=True, help="directory; batches go to OUT/reference and OUT/current"
    )
    gen.add_argument("--rows", type=int, default=20_000)
    gen.add_argument("--current-rows", type=int, default=None)
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--files", type=int, default=2)
    gen.add_argument("--config", default=None, help="config whose spark section to use")

    rep = sub.add_parser(
        "reproduce",
        parents=[common],
        help="retrain a training run from its logged config and input versions",
        description="Rebuild a train run's training set by Delta time travel at the versions "
        "recorded on the run, retrain it with its logged config and print the test metrics "
        "side by side with the original's.",
    )
    rep.add_argument("run_id", help="the MLflow run id of a train job")
    rep.add_argument(
        "--config", required=True, help="a config naming the run's tracking store (mlflow.*)"
    )
    _add_set(rep)

    model = sub.add_parser(
        "model",
        parents=[common],
        help="show the registered model version an alias or number names, or make it champion",
        description="Print the registered model version of the config's model that an alias "
        "(default champion) or a version number names; exit 1 when there is none. With "
        "--promote, move the champion alias to it.",
    )
    model.add_argument("--config", required=True, help="the config naming the model (mlflow.*)")
    model.add_argument("--alias", default="champion", help="an alias (default champion)")
    model.add_argument("--version", type=int, default=None, help="a version number instead")
    model.add_argument(
        "--promote",
        action="store_true",
        help="make that version the champion (a rollback: --version of an earlier one; or "
        "--alias challenger); score and drift_report use it from their next run",
    )
    _add_set(model)

    pkg = sub.add_parser(
        "package", parents=[common], help="zip the library for spark-submit --py-files"
    )
    pkg.add_argument("--out", default="dist/ml_engine.zip", help="zip file to write")

    sub.add_parser("jobs", parents=[common], help="list the jobs with what each reads and writes")
    for command in sub.choices.values():  # so that main() reports in the command's own usage
        command.set_defaults(command_parser=command)
    return p


def _print_failure(what: str, why: str) -> None:
    from ml_engine.config import redact_secrets

    # A line naming the one job the command ran ("clean: ...", "reproduce: ...") would say it
    # twice after "run clean: "; a run of several jobs keeps the name of the one that failed.
    named = what.removeprefix("run ") + ": "
    for line in redact_secrets(str(why)).strip().splitlines() or [""]:
        if line.strip():
            print(f"ml-engine: {what}: {line.strip().removeprefix(named)}", file=sys.stderr)


def _fail(what: str, why: str, code: int, debug: bool) -> int:
    if debug:
        from ml_engine.config import redact_secrets

        print(redact_secrets(traceback.format_exc()), file=sys.stderr, end="")
    _print_failure(what, why)
    return code


def print_result(result: R.JobResult, batch: str | None = None) -> None:
    """Prints a job's outputs and figures for a person reading the terminal; ``batch``: the
    batch a per-batch job processed."""
    print(f"[{result.job}] done" + (f": batch {batch}" if batch is not None else ""))
    for name, path in result.outputs.items():
        print(f"  {name:<14} {path}")
    if result.metrics:
        print(f"  metrics        {json.dumps(result.metrics, default=str, sort_keys=True)}")
    for note in result.notes:
        print(f"  {note}")


def _preflight(cfg, names: list[str]) -> None:
    from ml_engine.preflight import preflight

    problems = preflight(cfg, names)
    if problems:
        raise PreflightError("\n".join(problems))


def _run(args) -> int:
    cfg = load_config(args.config, args.overrides)
    names: list[str] = []
    for job in args.job:
        if job == "pipeline":
            names += J.PIPELINE
        else:
            J.job_spec(job)  # an unknown job fails before Spark starts
            names.append(job)
    _preflight(cfg, names)
    app = f"ml-engine:{'+'.join(args.job)}"
    spark, tables = J.open_session_and_tables(cfg, app, quiet=not args.debug)
    _plain_interrupt(args.debug)
    code = R.EXIT_OK
    for n in names:
        result = J.run_job(n, spark, cfg, tables)
        print_result(result, _batch_of(n, cfg))
        code = max(code, result.exit_code)
    return code


def _batch_of(job: str, cfg) -> str | None:
    """The batch a job's run processed; None for a job over every batch, and for
    build_features by event time or with ``features.rebuild`` (its ``replaced`` says what)."""
    if not J.job_spec(job).per_batch or (job == "build_features" and not cfg.features.by_batch):
        return None
    return cfg.effective_batch_id()


def _plain_interrupt(debug: bool) -> None:
    """Ctrl-C raises KeyboardInterrupt at once (the one line of :func:`main`) instead of
    PySpark's handler, which cancels the Spark jobs through the gateway the main thread is
    blocked on and prints tracebacks of the clash. Without the Python process the driver JVM
    stops, and its jobs with it."""
    import signal
    import threading

    if not debug and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _reproduce(args) -> int:
    from ml_engine.tracking import connect
    from ml_engine.training.job import logged_config, reproduce

    connect(load_config(args.config, args.overrides))
    cfg = logged_config(args.run_id, args.overrides)
    _preflight(cfg, ["train"])
    spark, tables = J.open_session_and_tables(cfg, "ml-engine:reproduce", quiet=not args.debug)
    _plain_interrupt(args.debug)
    result = reproduce(spark, cfg, tables, args.run_id)
    inputs = ", ".join(f"{n} v{v}" for n, (_, v) in sorted(result.inputs.items()))
    print(f"reproduced run {result.run_id} as run {result.new_run_id} (inputs: {inputs})")
    for line in result.table():
        print(f"  {line}")
    return R.EXIT_OK


def _model(args) -> int:
    from ml_engine.preflight import tracking_problems
    from ml_engine.scoring import make_champion, resolve_model_version

    cfg = load_config(args.config, args.overrides)
    # An unreachable server is named as such, and no store or experiment is made to look a
    # model up.
    problems = tracking_problems(cfg)
    if problems:
        raise PreflightError("\n".join(problems))
    mv = resolve_model_version(cfg, args.alias, args.version, keys=("--alias", "--version"))
    if args.promote:
        print(make_champion(cfg, mv))
        return R.EXIT_OK
    aliases = ", ".join(sorted(mv.aliases)) or "none"
    print(f"{mv.name} version {mv.version} (run {mv.run_id}; aliases: {aliases})")
    return R.EXIT_OK


def _init(args) -> int:
    from ml_engine.scaffold import scaffold

    result = scaffold(
        args.data, args.out, sample_rows=args.sample_rows, force=args.force, label=args.label
    )
    for path in result.written:
        print(f"wrote {path}")
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(result.next_steps)
    return R.EXIT_OK


def _generate(args) -> int:
    from ml_engine.config import SparkConfig
    from ml_engine.sample_data import generate_sample_data
    from ml_engine.session import build_session

    spark_cfg = load_config(args.config).spark if args.config else SparkConfig()
    spark = build_session(
        spark_cfg, app_name="ml-engine:generate-sample-data", quiet=not args.debug
    )
    summary = generate_sample_data(
        spark,
        args.out,
        rows=args.rows,
        seed=args.seed,
        current_rows=args.current_rows,
        files=args.files,
    )
    print(f"sample data written to {Path(args.out).resolve()}")
    for line in summary.lines():
        print(f"  {line}")
    return R.EXIT_OK


def build_archive(out: str | Path) -> Path:
    """Zips the ``ml_engine`` package (sources and packaged resources) for
    ``spark-submit --py-files``.

    Returns the absolute path of the archive.
    """
    import zipfile

    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    package_dir = Path(__file__).resolve().parent
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(package_dir.rglob("*")):
            if f.is_file() and f.suffix in (".py", ".yaml", ".properties"):
                zf.write(f, f.relative_to(package_dir.parent).as_posix())
    return out


def spark_error_reason(exc: BaseException) -> str | None:
    """The innermost Java exception of a Spark / Py4J error as ``Class: message``, after the
    one naming the file whose read failed, when there is one.

    Returns None when ``exc`` carries no Java exception.
    """
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java is None:
        return None

    def line(e) -> str:
        message = str(e.getMessage() or "").strip().splitlines()
        return f"{e.getClass().getName()}: {message[0] if message else ''}".strip()

    try:
        chain = [java]
        while chain[-1].getCause() is not None and len(chain) < 50:
            chain.append(chain[-1].getCause())
        reading = [e for e in chain[:-1] if _names_the_file(str(e.getMessage() or ""))]
        return "; ".join(line(e) for e in [*reading[:1], chain[-1]])
    except Exception:  # noqa: BLE001 - the JVM may be gone; fall back to the Python message
        return None


def _names_the_file(message: str) -> bool:
    """A Spark error that says which file's read failed and why, beyond its cause's words."""
    return "[FAILED_READ_FILE." in message and "[FAILED_READ_FILE.NO_HINT]" not in message


def _log_hint() -> str:
    log = os.environ.get("ML_ENGINE_SPARK_LOG")
    return f" (Spark's log: {log}; --debug shows everything)" if log else " (--debug for more)"


def main(argv: list[str] | None = None) -> int:
    """Runs the command line; returns the exit code (see the module docstring)."""
    from ml_engine.session import JavaNotFoundError, MasterUnreachableError

    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # the command's usage, not the top level's
        args.command_parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.debug = bool(getattr(args, "debug", False))
    if not args.debug:
        _quiet_libraries()
    jobs = " ".join(getattr(args, "job", None) or [])
    what = {"run": f"run {jobs}".strip()}.get(args.command, args.command)
    try:
        if args.command == "jobs":
            for name, spec in J.JOBS.items():
                reads, writes = spec.listed
                print(f"{name:<20} reads {reads}; writes {writes}")
            return R.EXIT_OK
        if args.command == "run":
            return _run(args)
        if args.command == "demo":
            from ml_engine.demo import run_demo

            return run_demo(
                args.workdir,
                config=args.config,
                rows=args.rows,
                overrides=args.overrides,
                quiet=not args.debug,
            )
        if args.command == "init":
            from ml_engine.scaffold import ScaffoldError

            try:
                return _init(args)
            except ScaffoldError as exc:  # bad input to init: usage, in one plain line
                return _fail(what, str(exc), R.EXIT_USAGE, args.debug)
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "model":
            return _model(args)
        if args.command == "generate-sample-data":
            return _generate(args)
        if args.command == "package":
            print(build_archive(args.out))
            return R.EXIT_OK
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(
            f"ml-engine: {what}: interrupted; nothing it had not committed was kept (each table "
            "is at its last committed version): run the same command again",
            file=sys.stderr,
        )
        return R.EXIT_INTERRUPTED
    except (ConfigError, SchemaError) as exc:
        return _fail(what, _config_lines(exc), R.EXIT_USAGE, args.debug)
    except KeyError as exc:
        return _fail(what, exc.args[0] if exc.args else str(exc), R.EXIT_USAGE, args.debug)
    except (JavaNotFoundError, MasterUnreachableError) as exc:
        return _fail(what, str(exc), R.EXIT_ENVIRONMENT, args.debug)
    except R.JobError as exc:
        return _fail(what, " ".join(str(exc).split()), R.EXIT_JOB_FAILED, args.debug)
    except Exception as exc:  # noqa: BLE001 - any other failure still gets a one-line reason
        reason = spark_error_reason(exc)
        if reason is None:
            first = (str(exc).strip().splitlines() or [""])[0]
            reason = f"{type(exc).__name__}: {first}"
        return _fail(what, reason + _log_hint(), R.EXIT_JOB_FAILED, args.debug)
    return R.EXIT_USAGE


def _quiet_libraries() -> None:
    """Keeps the terminal for the engine's own lines: MLflow's info logs and library
    warnings show only with ``--debug``."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # PySpark logs every failed DataFrame operation as a JSON line with a Java stack trace
    # before the exception reaches the one-line error.
    from pyspark.logger import PySparkLogger

    for name in ("DataFrameQueryContextLogger", "SQLQueryContextLogger"):
        PySparkLogger.getLogger(name).setLevel(logging.CRITICAL)
    # Py4J logs through the root logger (tracebacks of a gateway call cut short by Ctrl-C).
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(logging.BASIC_FORMAT))
        handler.addFilter(lambda record: f"{os.sep}py4j{os.sep}" not in record.pathname)
        root.addHandler(handler)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)


def _config_lines(exc: Exception) -> str:
    """A config or schema error as lines, each saying it is one."""
    prefix = "" if isinstance(exc, PreflightError) else "config error: "
    return "\n".join(f"{prefix}{line}" for line in str(exc).splitlines() if line.strip())


def job_main(job: str, argv: list[str] | None = None) -> int:
    """Entry point of ``jobs/<job>.py`` under spark-submit or python: the same as
    ``ml-engine run <job> ARGS``. Returns the exit code."""
    return main(["run", job, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
