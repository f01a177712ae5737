"""Checks that need no data and no Spark: run before the session starts, so a run that cannot
succeed fails in a second with a plain message instead of after a JVM start and a stack trace.

What is checked, for the jobs of one run (:func:`preflight`):

* the schema roles each job needs (``build_features``: key and event time; training sets:
  key, event time and label, unless ``training_set.*`` names the columns; ``train``: label);
* input tables a job reads that no earlier job of the same run writes: they must exist, and
  the run's batch must be in the table the job takes its batch from (read from the Delta log);
* ``ingest.path`` exists and holds files of ``ingest.format`` (Parquet by its magic bytes,
  JSON and CSV by their names), Parquet files hold every declared column, and the timestamp
  and date columns of its first data lines (text columns of Parquet) match the formats in the
  schema / ``ingest.timestamp_format`` (only when every sampled value fails: single bad rows
  are quarantined by ingest, not refused here);
* the MLflow tracking server answers, for jobs that track runs.

Example::

    problems = preflight(cfg, ["clean", "detect_outliers"])
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import io
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import types as T

from ml_engine.config import Config, ConfigError
from ml_engine.jobs import job_spec
from ml_engine.schemas import (
    EPOCH_UNITS,
    ROLE_EVENT_TIME,
    ROLE_KEY,
    ROLE_LABEL,
    TableSchema,
    column_names,
    csv_name,
)

SAMPLE_LINES = 20

# Java DateTimeFormatter letters -> strptime directives (the common subset).
_JAVA_TOKENS = [
    ("yyyy", "%Y"),
    ("uuuu", "%Y"),
    ("yy", "%y"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("hh", "%I"),
    ("h", "%I"),
    ("a", "%p"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("XXX", "%z"),
    ("XX", "%z"),
    ("xxx", "%z"),
    ("Z", "%z"),
]


def java_to_strptime(pattern: str) -> str | None:
    """The ``strptime`` format of a Java datetime pattern, or None when it uses letters this
    check does not know (then the format is not checked)."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "'":
            end = pattern.find("'", i + 1)
            if end < 0:
                return None
            out.append(pattern[i + 1 : end].replace("%", "%%") or "'")
            i = end + 1
            continue
        if ch == "S":
            j = i
            while j < len(pattern) and pattern[j] == "S":
                j += 1
            if j - i > 6:
                return None
            out.append("%f")
            i = j
            continue
        for token, directive in _JAVA_TOKENS:
            if pattern.startswith(token, i):
                out.append(directive)
                i += len(token)
                break
        else:
            if ch.isalpha():
                return None
            out.append("%%" if ch == "%" else ch)
            i += 1
    return "".join(out)


def java_alternatives(pattern: str) -> list[str]:
    """``pattern`` with each optional section ``[...]`` both kept and left out."""
    m = re.search(r"\[([^\[\]]*)\]", pattern)
    if m is None:
        return [pattern]
    head, tail = pattern[: m.start()], pattern[m.end() :]
    return java_alternatives(head + m.group(1) + tail) + java_alternatives(head + tail)


def _matches_java(value: str, java: str) -> bool | None:
    """Whether ``value`` matches the Java pattern (None when the pattern cannot be checked);
    ``epoch_seconds`` and ``epoch_millis`` take a number."""
    if java in EPOCH_UNITS:
        return bool(re.fullmatch(r"\s*[+-]?\d+(\.\d*)?\s*", value))
    formats = [java_to_strptime(alt) for alt in java_alternatives(java)]
    if any(f is None for f in formats):
        return None
    return any(_matches(value, f) for f in formats)


def _matches(value: str, fmt: str) -> bool:
    try:
        datetime.strptime(value.strip(), fmt)
    except ValueError:
        return False
    return True


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _input_files(path: str) -> list[Path]:
    p = Path(_local(path))
    if any(ch in path for ch in "*?["):
        return sorted(Path(f) for f in glob.glob(_local(path)) if Path(f).is_file())
    if p.is_dir():
        return sorted(
            f
            for f in p.rglob("*")
            if f.is_file() and not f.name.startswith((".", "_")) and f.stat().st_size > 0
        )
    return [p] if p.is_file() else []


def _open_text(path: Path, encoding: str) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding=encoding, errors="replace")
    if path.suffix == ".bz2":
        return io.TextIOWrapper(bz2.open(path), encoding=encoding, errors="replace")
    return open(path, encoding=encoding, errors="replace", newline="")


def _csv_rows(cfg: Config, text: io.TextIOBase) -> Iterator[list[str]]:
    """The CSV records of ``text`` as ingest's options split them."""
    options = cfg.ingest.csv
    escape = None if options.escape == options.quote else options.escape
    return csv.reader(
        text,
        delimiter=options.delimiter,
        quotechar=options.quote,
        escapechar=escape,
        doublequote=escape is None,
    )


def _sample_values(cfg: Config, file: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    """Text values of ``columns`` in the first data lines of ``file`` (CSV, JSON lines, or the
    first rows of a Parquet file's text columns)."""
    ing = cfg.ingest
    # Each column by its name in the input files.
    read_as = {c.name: c.read_as for c in cfg.table_schema.columns}
    paths = {c.name: c.input_path for c in cfg.table_schema.columns}
    names = [read_as[n] for n in cfg.table_schema.names]
    values: dict[str, list[str]] = {c: [] for c in columns}
    if ing.format == "parquet":
        seen = _parquet_text(file, [read_as[c] for c in columns])
        for c in columns:
            values[c] = [v for v in seen.get(read_as[c], []) if v.strip()]
        return values
    with _open_text(file, ing.csv.encoding) as text:
        if ing.format == "csv":
            rows = _csv_rows(cfg, text)
            position = {c: names.index(read_as[c]) for c in columns}
            if ing.csv.header:
                found = _header_positions(
                    next(rows, None) or [], names, [read_as[c] for c in columns]
                )
                position = {c: found[read_as[c]] for c in columns} if found else position
            for n, row in enumerate(rows):
                if n >= SAMPLE_LINES:
                    break
                for c in columns:
                    i = position[c]
                    if i < len(row) and row[i].strip():
                        values[c].append(row[i])
        else:
            for n, line in enumerate(text):
                if n >= SAMPLE_LINES:
                    break
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    for c in columns:
                        v = _at_path(record, paths[c])
                        if isinstance(v, str) and v.strip():
                            values[c].append(v)
    return values


def _at_path(record: dict, path: tuple[str, ...]) -> Any:
    """The value the keys ``path`` lead to in a JSON record, None where one is missing."""
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _header_problems(cfg: Config, file: Path) -> list[str]:
    """A CSV header that lacks schema columns and has another number of fields than the
    schema declares (no line of the file could load), or as many but a shared column at
    another field (:func:`~ml_engine.quality.ingest.shifted_header`)."""
    ing, schema = cfg.ingest, cfg.table_schema
    with _open_text(file, ing.csv.encoding) as text:
        header = next(_csv_rows(cfg, text), None)
    if not header:
        return []
    from ml_engine.quality.ingest import shifted_header

    names = column_names(header)[0]
    shifted = shifted_header(str(file), names, schema)
    if shifted:
        return [f"ingest.path: {shifted}"]
    fields = [n.lower() for n in names]
    lacking = [c.name for c in schema.columns if csv_name(c.read_as).lower() not in fields]
    if not lacking or len(fields) == len(schema.names):
        return []
    from ml_engine.scaffold import header_below, header_below_hint

    below = header_below(file)
    if below is not None:
        return [f"ingest.path: {header_below_hint(file, *below)}"]
    return [
        f"ingest.path: the header of {file} names {len(fields)} columns where schema "
        f"'{schema.name}' ({schema.source}) declares {len(schema.names)}: it lacks {lacking}, "
        f"so none of its lines would load. Point ingest.path at the data files (ingest.csv."
        f"delimiter is {ing.csv.delimiter!r}), or make the files and the schema file agree"
    ]


def _header_positions(
    header: Sequence[str], names: Sequence[str], columns: Sequence[str]
) -> dict[str, int] | None:
    """Where ``columns`` are in a CSV file whose header names every schema column (in
    another order or beside undeclared ones), as ingest reads such a file; None for a header
    that does not (its fields are read by position)."""
    fields = [n.lower() for n in column_names(header)[0]]
    if any(csv_name(n).lower() not in fields for n in names):
        return None
    return {c: fields.index(csv_name(c).lower()) for c in columns}


def _parquet_text(file: Path, columns: Sequence[str]) -> dict[str, list[str]]:
    """The first :data:`SAMPLE_LINES` non-null values of the text columns among ``columns``
    (matched without case) of a Parquet file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(file)
    by_lower = {f.name.lower(): f for f in pf.schema_arrow}
    text = {
        c: by_lower[c.lower()].name
        for c in columns
        if c.lower() in by_lower and pa.types.is_string(by_lower[c.lower()].type)
    }
    if not text or pf.metadata.num_rows == 0:
        return {}
    batch = next(pf.iter_batches(batch_size=SAMPLE_LINES, columns=list(set(text.values()))))
    return {
        c: [v for v in batch.column(name).to_pylist() if v is not None] for c, name in text.items()
    }


def input_problems(cfg: Config) -> list[str]:
    """``ingest.path`` exists, holds files of ``ingest.format``, and its first values of
    timestamp and date columns match the declared formats; Parquet files also hold every
    declared column."""
    ing = cfg.ingest
    if not ing.path:
        return ["ingest.path: not set; set it to the raw file, directory or glob to load"]
    if not _is_local(ing.path):
        return []
    files = _input_files(ing.path)
    if not files:
        exists = Path(_local(ing.path)).exists()
        what = "holds no data files" if exists else "does not exist"
        return [f"ingest.path: {ing.path} {what}; point it at the raw file, directory or glob"]
    found = _file_format(files[0])
    if found is not None and found != ing.format:
        return [
            f"ingest.format: {ing.format}, but {files[0]} of ingest.path is a {found} file; "
            f"set ingest.format: {found} (or --set ingest.format={found})"
        ]
    schema = cfg.table_schema
    nested = [c for c in schema.columns if c.nested]
    if ing.format == "csv" and nested:
        return [
            f"ingest.format: csv, but column {nested[0].name} of {schema.source} is read from "
            f"the nested field {list(nested[0].input_path)} (input_name), which only JSON and "
            f"Parquet input have; name the CSV header field, or set ingest.format"
        ]
    if ing.format == "parquet":
        problems = _parquet_problems(files, schema)
        if problems:
            return problems
    if ing.format == "csv" and ing.csv.header:
        problems = _header_problems(cfg, files[0])
        if problems:
            return problems
    formats = {}
    for c in schema.columns:
        if c.type in ("timestamp", "date"):
            default = ing.timestamp_format if c.type == "timestamp" else ing.date_format
            formats[c.name] = (c.format or default, "the schema's format" if c.format else None)
    if not formats:
        return []
    sample = _sample_values(cfg, files[0], list(formats))
    problems = []
    for column, (java, from_schema) in formats.items():
        seen = sample[column]
        if not seen or any(_matches_java(v, java) in (True, None) for v in seen):
            continue
        key = from_schema or (
            "ingest.timestamp_format"
            if schema.column(column).type == "timestamp"
            else "ingest.date_format"
        )
        where = f"{key} of column {column} in {schema.source}" if from_schema else key
        problems.append(
            f"{where}: '{java}' matches none of the first {len(seen)} values of column "
            f"'{column}' in {files[0]} (first: {seen[0]!r}); set it to the file's format"
            f"{_suggestion(seen[0])}"
        )
    return problems


#: Data file extensions and the input format they hold.
FORMAT_BY_EXTENSION = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".parquet": "parquet",
}


def format_by_name(path: Path, compressed: Sequence[str] = (".gz",)) -> str | None:
    """``csv``, ``json`` or ``parquet`` from the file name, None when unknown; a name ending in
    one of ``compressed`` is that of a compressed CSV or JSON file (Parquet compresses
    inside)."""
    name = path.name.lower()
    for suffix in compressed:
        if name.endswith(suffix):
            fmt = FORMAT_BY_EXTENSION.get(Path(name[: -len(suffix)]).suffix)
            return fmt if fmt != "parquet" else None
    return FORMAT_BY_EXTENSION.get(Path(name).suffix)


def _file_format(file: Path) -> str | None:
    """``parquet`` for a Parquet file (its magic bytes), ``json`` / ``csv`` by the name's
    extension (compressed as ingest reads them), else None (no opinion)."""
    with open(file, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    found = format_by_name(file, (".gz", ".bz2"))
    return found if found != "parquet" else None  # named .parquet, not Parquet: no opinion


# Parquet footers read before Spark starts; the rest of a large directory is left to Spark.
PARQUET_FILES_CHECKED = 50


def _parquet_problems(files: Sequence[Path], declared: TableSchema) -> list[str]:
    """Declared columns that none of the first files holds (matched without case, as Spark
    does)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    present: dict[str, str] = {}
    paths: set[tuple[str, ...]] = set()
    for file in files[:PARQUET_FILES_CHECKED]:
        try:
            schema = pq.read_schema(file)
        except (OSError, pa.ArrowException) as exc:
            return [f"ingest.path: {file} is not a readable Parquet file ({exc})"]
        present.update((name.lower(), name) for name in schema.names)
        paths |= _arrow_paths(list(schema))
    missing = [
        c.read_as for c in declared.columns if tuple(k.lower() for k in c.input_path) not in paths
    ]
    if not missing:
        return []
    checked = "" if len(files) == 1 else f" (the first {min(len(files), PARQUET_FILES_CHECKED)})"
    return [
        f"ingest.path: column(s) {missing} declared in schema '{declared.name}' "
        f"({declared.source}) are in none of the Parquet files{checked}; the files have columns "
        f"{list(present.values())}. Fix the schema's names or the files"
    ]


def _arrow_paths(fields: list, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The paths (lower case) of Arrow ``fields``, and of their structs' fields."""
    import pyarrow as pa

    paths: set[tuple[str, ...]] = set()
    for f in fields:
        path = (*prefix, f.name.lower())
        paths.add(path)
        if pa.types.is_struct(f.type):
            paths |= _arrow_paths(list(f.type), path)
    return paths


_SUGGESTIONS = (
    "yyyy-MM-dd HH:mm:ss",
    "yyyy-MM-dd'T'HH:mm:ss",
    "yyyy-MM-dd HH:mm:ss.SSS",
    "yyyy-MM-dd'T'HH:mm:ss.SSS",
    "yyyy-MM-dd'T'HH:mm:ssXXX",
    "yyyy/MM/dd HH:mm:ss",
    "dd/MM/yyyy HH:mm:ss",
    "MM/dd/yyyy HH:mm:ss",
    "yyyy-MM-dd HH:mm",
    "dd/MM/yyyy HH:mm",
    "MM/dd/yyyy HH:mm",
    "dd.MM.yyyy HH:mm:ss",
    "dd.MM.yyyy HH:mm",
    "MM/dd/yyyy hh:mm:ss a",
    "MM/dd/yyyy hh:mm a",
    "yyyy-MM-dd",
    "yyyy/MM/dd",
    "dd/MM/yyyy",
    "dd.MM.yyyy",
    "dd-MM-yyyy",
)


def _suggestion(value: str) -> str:
    for java in _SUGGESTIONS:
        fmt = java_to_strptime(java)
        if fmt and _matches(value, fmt):
            return f', e.g. "{java}"'
    return ""


def _role_problems(cfg: Config, job: str, roles: Sequence[str]) -> list[str]:
    schema: TableSchema = cfg.table_schema
    ts = cfg.training_set
    given = {
        ROLE_KEY: schema.key,
        ROLE_EVENT_TIME: schema.time_column,
        ROLE_LABEL: schema.label,
    }
    if job == "build_training_set":
        # training_set.* may name the label table's columns instead of the schema's roles.
        given = {
            ROLE_KEY: ts.key or schema.key,
            ROLE_EVENT_TIME: ts.label_time or schema.time_column,
            ROLE_LABEL: ts.label or schema.label,
        }
    if job == "train":
        given[ROLE_LABEL] = ts.label or schema.label
    why = {
        ROLE_KEY: "the entity a row belongs to",
        ROLE_EVENT_TIME: "when the row's event happened",
        ROLE_LABEL: "what the model learns to predict",
    }
    return [
        f"{job} needs a column with role {role} ({why[role]}) in schema '{schema.name}' "
        f"({schema.source}); declare one"
        + (" (a column can be both: role: [record_id, key])" if role == ROLE_KEY else "")
        for role in roles
        if given.get(role) is None
    ]


def _table_problems(cfg: Config, job: str, written: set[str]) -> list[str]:
    from ml_engine.catalog import logged_runs_of_batch
    from ml_engine.tables.rs import logged_batches

    spec = job_spec(job)
    problems = []
    reads = list(spec.reads)
    if job == "build_training_set" and cfg.training_set.labels_path is None:
        reads.append("silver")
    for table in reads:
        if table in written:
            continue
        path = cfg.storage.table_path(table)
        if _is_local(path) and not (Path(_local(path)) / "_delta_log").is_dir():
            producer = next((s for s in _producers(table)), "the job that writes it")
            problems.append(
                f"{job}: its input table {table} does not exist at {path}; run {producer} "
                f"first (or check storage.root)"
            )
    if job == "build_training_set" and cfg.training_set.labels_path:
        labels = cfg.training_set.labels_path
        if _is_local(labels) and not (Path(_local(labels)) / "_delta_log").is_dir():
            problems.append(
                f"training_set.labels_path: no Delta table at {labels}; fix the path or write "
                f"the labels table first"
            )
    if job == "build_training_set" and not problems:
        problems += _label_table_problems(cfg, written)
    batch_table = spec.batch_input
    if job == "build_features" and (cfg.features.start or cfg.features.end or cfg.features.rebuild):
        batch_table = None
    if batch_table and batch_table not in written and not problems:
        path = cfg.storage.table_path(batch_table)
        batches = logged_batches(path) if _is_local(path) else None
        try:
            batch = cfg.effective_batch_id()
        except ConfigError as exc:
            return [str(exc)]
        if batches is not None and batch not in batches:
            shown = ", ".join(batches[-20:]) or "none"
            runs = logged_runs_of_batch(cfg.storage.table_path("job_runs"), path, batch)
            if runs:  # the batch was written, with no rows
                producer, at = runs[-1]
                problems.append(
                    f"{job}: batch '{batch}' has no rows in its input table {batch_table} "
                    f"({path}): {producer} last ran for it (completed "
                    f"{at:%Y-%m-%d %H:%M:%S} UTC) and left it without rows. Check the batch's "
                    f"input (and the quarantine, for rows {producer} rejected), then rerun "
                    f"{producer}; or set batch_id to another batch: {shown}"
                )
            else:
                problems.append(
                    f"{job}: batch '{batch}' is not in its input table {batch_table} ({path}); "
                    f"batches there: {shown}. Set batch_id to one of them or run the jobs "
                    f"before {job} for this batch"
                )
    return problems


def _label_table_problems(cfg: Config, written: set[str]) -> list[str]:
    """The label table's columns against ``training_set.*`` and the schema's roles, from the
    tables' logs (local tables only; the roles themselves are checked by _role_problems)."""
    from ml_engine.tables.rs import logged_schema
    from ml_engine.training_set import label_columns, label_roles

    labels = cfg.training_set.labels_path or cfg.storage.table_path("silver")
    if labels == cfg.storage.table_path("silver") and "silver" in written:
        return []
    label_table = logged_schema(labels) if _is_local(labels) else None
    if label_table is None or None in label_roles(cfg).values():
        return []
    schema = cfg.table_schema
    features = cfg.storage.table_path("features")
    feature_table = None
    if "features" not in written and _is_local(features):
        feature_table = logged_schema(features)
    # A features table this run builds has the schema's record id and key.
    feature_names = feature_table.names if feature_table else [schema.record_id, schema.key]
    return label_columns(cfg, labels, label_table.names, feature_names)[1]


def type_problems(cfg: Config, jobs: Sequence[str]) -> list[str]:
    """Columns whose type in the schema file (and, for silver, ``clean.coerce``) differs from
    the existing bronze or silver table's: ingest and clean would refuse to write them. Read
    from the tables' logs (local tables only)."""
    from ml_engine.quality.schema_change import type_change
    from ml_engine.tables.rs import logged_schema

    schema = cfg.table_schema
    silver = [T.StructField(c, cfg.clean.column_type(schema, c)) for c in schema.names]
    checks = {
        "ingest": ("bronze", schema.struct, f"the schema file {cfg.schema_path}"),
        "clean": (
            "silver",
            T.StructType(silver),
            f"the schema file {cfg.schema_path} and clean.coerce",
        ),
    }
    problems = []
    for job, (table, struct, typed_by) in checks.items():
        path = cfg.storage.table_path(table)
        if job not in jobs or not _is_local(path):
            continue
        logged = logged_schema(_local(path))
        problem = logged and type_change(logged, struct, path, job, typed_by)
        if problem:
            problems.append(problem)
    return problems


def _producers(table: str) -> list[str]:
    from ml_engine.jobs import PIPELINE

    return [name for name in PIPELINE if table in job_spec(name).writes]


def tracking_problems(cfg: Config, timeout: float = 5.0) -> list[str]:
    """The MLflow tracking store can be reached (a server answers its health check)."""
    uri = cfg.tracking_uri()
    store = cfg.sqlite_store()
    if store is not None:
        folder = store.parent
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            return [f"mlflow.tracking_uri: {uri}: no directory {folder} can be made"]
        return []
    if not uri.startswith(("http://", "https://")):
        return []
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s)
            if response.status == 200:
                return []
            status = f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        status = f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        status = str(getattr(exc, "reason", exc))
    return [
        f"mlflow.tracking_uri: the tracking server {_redacted(uri)} does not answer ({status}); "
        f"start it or fix the URI (MLFLOW_TRACKING_URI)"
    ]


def _redacted(uri: str) -> str:
    """``uri`` without a password or secret (see :func:`ml_engine.config.redact_secrets`)."""
    from ml_engine.config import redact_secrets

    return redact_secrets(uri)


def preflight(cfg: Config, jobs: Sequence[str]) -> list[str]:
    """Every problem of running ``jobs`` in order with ``cfg`` that shows without data.

    Returns:
        One line per problem, each naming the config key, file or table and what to do;
        empty when nothing is wrong.
    """
    problems: list[str] = []
    written: set[str] = set()
    for job in jobs:
        spec = job_spec(job)
        problems += _role_problems(cfg, job, spec.roles)
        problems += _table_problems(cfg, job, written)
        written |= set(spec.writes)
    if "ingest" in jobs:
        problems += input_problems(cfg)
    problems += type_problems(cfg, jobs)
    problems += reserved_name_problems(cfg, jobs)
    if any(job_spec(j).tracks(cfg) for j in jobs):
        unreachable = tracking_problems(cfg)
        problems += unreachable or model_problems(cfg, jobs)
    return list(dict.fromkeys(problems))


def reserved_name_problems(cfg: Config, jobs: Sequence[str]) -> list[str]:
    """Schema or engineered columns named like a model output, for the jobs that train or
    use a model (the model would overwrite them; drift would compare one for the other)."""
    from ml_engine.training import RESERVED_COLUMNS, reserved_column_hint

    model_jobs = [j for j in jobs if j in ("train", "score", "drift_report")]
    if not model_jobs:
        return []
    schema: TableSchema = cfg.table_schema
    cannot = f"{', '.join(model_jobs)} cannot use it"
    problems = [
        f"schema '{schema.name}' ({schema.source}): column '{c}': {cannot}: "
        f"{reserved_column_hint()}"
        for c in schema.names
        if c in RESERVED_COLUMNS
    ]
    problems += [
        f"features: engineered column '{c}': {cannot}: a model output takes this name; give "
        "it another name in the config"
        for c in cfg.features.output_names()
        if c in RESERVED_COLUMNS
    ]
    return problems


def model_problems(cfg: Config, jobs: Sequence[str]) -> list[str]:
    """The registered model version ``score`` or ``drift_report`` would use exists, unless a
    ``train`` earlier in ``jobs`` makes it: the registry's answer, before Spark starts."""
    from ml_engine.results import JobError
    from ml_engine.scoring import model_choice, resolve_model_version

    users = [j for j in jobs if j in ("score", "drift_report")]
    if not users or "train" in jobs[: jobs.index(users[0])]:
        return []
    alias, keys = model_choice(cfg, users[0])
    try:
        resolve_model_version(cfg, alias=alias, version=cfg.score.model_version, keys=keys)
    except JobError as exc:
        return [str(exc)]
    return []
