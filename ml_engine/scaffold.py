"""``ml-engine init``: a draft schema and config from a sample of the user's own data.

:func:`scaffold` reads the first rows of a CSV, JSON-lines or Parquet file (or of a directory of
them) once, without Spark, and writes two commented drafts next to each other:

* ``schema.yaml``: every column with the type its sampled values have (timestamps and dates
  with the Spark datetime pattern of their text), ``nullable`` and a guessed role; each column's
  line ends with a ``# guessed:`` comment saying what was guessed and why;
* ``config.yaml``: the few keys that make every job run on that data, building on the engine's
  packaged defaults (``inherits: ml-engine:defaults``), paths relative to the file.

Text is typed the way ``ingest`` will parse it: CSV and JSON values are read as text by ingest
(see ``ml_engine.quality.ingest``), so both are typed from their text here; Parquet columns keep
the file's own types, except text columns, which are typed from their values like CSV. One
value in :data:`TOLERATED_SHARE` may break a column's type or role: a date/time column with
such values keeps its type (ingest quarantines those rows); numbers with a few other values,
or with :data:`NO_VALUE_WORDS` (``NA``, ``-``) in up to half of the rows, stay text in the
schema and ``clean.coerce`` in the config casts them, the words becoming nulls; identifiers with a few empty or repeated values stay the record id
or the entity key (declared not nullable, as the event time is, so ingest quarantines the rows
without one).

Detected timestamp text (Spark datetime patterns; ``[.SSSSSS]``: optional fraction, up to 6
digits, ``[.SSSSSSSSS]`` when the sample has more)::

    yyyy-MM-dd'T'HH:mm:ss          yyyy-MM-dd HH:mm:ss         (+ fraction, + XXX / XX offset)
    yyyy-MM-dd'T'HH:mm             yyyy-MM-dd HH:mm
    yyyy/MM/dd HH:mm:ss            yyyy/MM/dd HH:mm
    dd/MM/yyyy HH:mm:ss            dd/MM/yyyy HH:mm            (d/M/yyyy H:mm when unpadded)
    MM/dd/yyyy HH:mm:ss            MM/dd/yyyy HH:mm            (when a day above 12 says so)

and dates ``yyyy-MM-dd``, ``yyyy/MM/dd``, ``dd/MM/yyyy``, ``MM/dd/yyyy`` (``d/M/yyyy``,
``M/d/yyyy`` when unpadded).

Example::

    result = scaffold("data/customers.csv", "my-project")
    print(result.next_steps)
"""

from __future__ import annotations

import dataclasses
import difflib
import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import yaml

from ml_engine.preflight import format_by_name
from ml_engine.schemas import (
    EPOCH_UNITS,
    ROLE_CATEGORICAL,
    ROLE_EVENT_TIME,
    ROLE_KEY,
    ROLE_LABEL,
    ROLE_NUMERIC,
    ROLE_RECORD_ID,
    NumberText,
    column_names,
    csv_column_names,
    grouped_by_commas,
)
from ml_engine.training import RESERVED_COLUMNS, SCORE_COL

SCHEMA_FILE = "schema.yaml"
CONFIG_FILE = "config.yaml"

# A string column is categorical when it has at most this many distinct values in the sample
# and fewer than half as many as non-empty values.
MAX_CATEGORIES = 50
# One value in this many may break a column's pattern (a bad timestamp, a record sent twice)
# without changing its guessed type or role: ingest and clean deal with such rows.
TOLERATED_SHARE = 50
# An integral label with at most this many distinct values is a class, not a quantity.
MAX_CLASSES = 20

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1

_COMPRESSED = ".gz"
_DELIMITERS = (",", "\t", ";", "|")
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", "|": "pipe"}

_EXACT_LABELS = ("label", "target", "y", "class", "outcome")
# A two-valued column with a word starting so is the event a model predicts: churned,
# fraudulent, defaulted, failure, converted, cancelled, attrition, defective, survived, clicked.
_FLAG_LABEL_WORDS = (
    "churn", "fraud", "default", "fail", "convert", "cancel", "attrit", "defect", "surviv", "click",
    "returned", "purchased", "approved", "responded",
)  # fmt: skip
# Words of a column name that say its values are the thing a record is about.
_ENTITY_WORDS = frozenset(
    "customer user account client member subscriber patient player device machine sensor "
    "meter vehicle store shop site station terminal merchant household entity".split()
)
_EVENT_TIME_NAMES = ("event_time", "timestamp", "ts", "time", "datetime", "event_ts", "date")
_EVENT_TIME_SUFFIXES = ("_at", "_time", "_ts", "_timestamp", "_date", "_datetime")


class ScaffoldError(ValueError):
    """The data cannot be scaffolded; the message names the path and what to do."""


@dataclass(frozen=True)
class ColumnGuess:
    """What was guessed for one column.

    Attributes:
        name: the column name written to the schema.
        type: its schema type (``string``, ``int``, ``long``, ``double``, ``boolean``, ``date``,
            ``timestamp`` or, from Parquet, ``decimal(p,s)``).
        roles: its roles (empty: no role).
        format: the Spark datetime pattern of a timestamp or date read from text, else None.
        nullable: whether the schema lets it be empty.
        reason: why, as written in the column's ``# guessed:`` comment.
    """

    name: str
    type: str
    roles: tuple[str, ...]
    format: str | None
    nullable: bool
    reason: str


@dataclass(frozen=True)
class ScaffoldResult:
    """What :func:`scaffold` wrote and guessed.

    Attributes:
        schema_path: the schema file written.
        config_path: the config file written.
        data_format: ``csv``, ``json`` or ``parquet``.
        rows_sampled: how many rows the guesses rest on.
        guesses: one entry per column, in file order.
        warnings: what the user must still do or check (a job that cannot run yet, an
            ambiguous guess, lines skipped in the sample).
        next_steps: text for the terminal: what to review and the commands to run.
    """

    schema_path: str
    config_path: str
    data_format: str
    rows_sampled: int
    guesses: tuple[ColumnGuess, ...]
    warnings: tuple[str, ...]
    next_steps: str

    @property
    def written(self) -> tuple[str, str]:
        """The paths written: schema, then config."""
        return (self.schema_path, self.config_path)


# --------------------------------------------------------------------------- reading a sample


@dataclass
class _RawColumn:
    """One column of the sample: its values (text, or native values from Parquet)."""

    name: str
    values: list[Any]
    native_type: str | None = None  # a schema type taken from the file (Parquet), else None
    native_note: str = ""
    renamed_from: str | None = None
    # The keys to a field of a nested JSON object or Parquet struct (``("user", "age")``).
    path: tuple[str, ...] = ()
    # A number as the file writes it (``$1,234.50``), when init read its values as numbers.
    written_as: str | None = None


@dataclass
class _Sample:
    fmt: str
    files: list[Path]
    columns: list[_RawColumn]
    rows: int
    delimiter: str = ","
    encoding: str = "utf-8"
    warnings: list[str] = field(default_factory=list)
    # (column, value) that shows numbers written with a decimal comma (1.234,5), when so.
    decimal_comma: tuple[str, str] | None = None
    # (separator, column, value) that shows thousands grouped (1,234.5 1 234,5), when so.
    thousands: tuple[str, str, str] | None = None
    # (column, value) that shows a currency or percent sign around numbers ($5, 12%), when so.
    signs: tuple[str, str] | None = None


def _known_extensions(last: str = "and") -> str:
    """The formats ``init`` reads, the last joined by ``last`` (``or`` for "a ... file")."""
    return (
        "CSV (.csv, .tsv, .csv.gz), JSON lines (.json, .jsonl, .ndjson, also .gz) "
        f"{last} Parquet (.parquet)"
    )


def _data_files(path: Path) -> tuple[str, list[Path]]:
    """The format and the files to sample: the file itself, or a directory's data files.

    Raises:
        ScaffoldError: the path is missing, has an unknown format, or is a directory with no
            data files or files of several formats.
    """
    if not path.exists():
        raise ScaffoldError(
            f"{path}: no such file or directory; give --data the path of a {_known_extensions('or')} "
            f"file or of a directory of them"
        )
    if path.is_file():
        fmt = format_by_name(path) or _sniffed_format(path)
        if fmt is None:
            raise ScaffoldError(
                f"{path}: cannot tell the format from the name '{path.name}'; ml-engine reads "
                f"{_known_extensions()}: rename the file to its format's extension or convert it"
            )
        return fmt, [path]
    # Spark reads every file of a directory except hidden ones (names starting with . or _).
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    if not files:
        subdirs = sorted(p.name for p in path.iterdir() if p.is_dir())
        hint = (
            f" (it has subdirectories {subdirs[:5]}: point --data at the one holding the files)"
            if subdirs
            else ""
        )
        raise ScaffoldError(
            f"{path}: the directory holds no data files{hint}; ml-engine reads "
            f"{_known_extensions()}"
        )
    by_format: dict[str, list[str]] = {}
    for f in files:
        fmt = format_by_name(f) or _sniffed_format(f) or "unknown format"
        by_format.setdefault(fmt, []).append(f.name)
    if len(by_format) > 1:
        listed = "; ".join(
            f"{fmt}: {', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
            for fmt, names in sorted(by_format.items())
        )
        raise ScaffoldError(
            f"{path}: the directory holds files of more than one format ({listed}); ingest reads "
            f"every file of the directory as one format: move the other files out, or give "
            f"--data one file"
        )
    fmt = next(iter(by_format))
    if fmt == "unknown format":
        raise ScaffoldError(
            f"{path}: the directory holds no data files ml-engine can read (found "
            f"{', '.join(by_format[fmt][:3])}); it reads {_known_extensions()}"
        )
    return fmt, files


def _sniffed_format(path: Path) -> str | None:
    """The format of a file named otherwise (``sales.txt``, ``export.dat``) by its content:
    Parquet's magic bytes, a JSON object on the first line, or lines that split into as many
    fields by one of the CSV delimiters init knows; None when it is none of these."""
    if path.name.lower().endswith(_COMPRESSED):
        return None
    with open(path, "rb") as f:
        if f.read(4) == b"PAR1":
            return "parquet"
    with open(path, "rb") as f:
        lines = [_decode(f.readline(1 << 20))[0].strip() for _ in range(5)]
    lines = [line.lstrip("\ufeff") for line in lines if line]
    if not lines:
        return None
    try:
        if isinstance(json.loads(lines[0]), dict):
            return "json"
    except ValueError:
        pass
    delimiter = _delimiter(lines[0])
    counts = {_fields_outside_quotes(line, delimiter) for line in lines}
    return "csv" if delimiter in lines[0] and len(counts) == 1 else None


def _open_binary(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.lower().endswith(_COMPRESSED) else open(path, "rb")


def _first_line(path: Path) -> bytes:
    with _open_binary(path) as f:
        return f.readline(1 << 20)


def _decode(raw: bytes) -> tuple[str, str]:
    """(text, encoding): UTF-8 when the bytes are valid UTF-8, else ISO-8859-1."""
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1"), "iso-8859-1"


def _delimiter(header: str) -> str:
    """The candidate delimiter occurring most often outside quotes (ties: the earlier one)."""
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for ch in header:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _read_csv(path: Path, names: list[str], delimiter: str, encoding: str, limit: int):
    """Up to ``limit`` rows of a CSV file as text (empty fields as None) and lines skipped."""
    skipped: list[int] = []

    def skip(row) -> str:
        skipped.append(row.number if row.number is not None else -1)
        return "skip"

    keys = [f"c{i}" for i in range(len(names))]
    reader = pa_csv.open_csv(
        str(path),
        read_options=pa_csv.ReadOptions(
            column_names=keys, skip_rows=1, encoding="utf8" if encoding == "utf-8" else "latin1"
        ),
        parse_options=pa_csv.ParseOptions(delimiter=delimiter, invalid_row_handler=skip),
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(keys, pa.string()),
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    batches = []
    rows = 0
    for batch in reader:
        batches.append(batch)
        rows += batch.num_rows
        if rows >= limit:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema).slice(0, limit)
    return [table.column(k).to_pylist() for k in keys], skipped


def _class_score_columns(cols: list[_Typed], roles: _Roles) -> list[tuple[_Typed, str]]:
    """The columns named ``score_<class>`` for a sampled class of a classification label,
    with that class: the model's probability of the class takes the name, so ``train`` would
    stop on them. Each is renamed ``<name>_value`` in place, its roles following it (ingest
    reads a CSV file by position, a JSON key or Parquet column by its ``input_name``)."""
    label = next((c for c in cols if c.name == roles.label), None)
    if label is None or _task(label)[0] != "classification":
        return []
    by_name = {f"{SCORE_COL}_{_class_name(v)}": _class_name(v) for v in set(label.values)}
    found = [(c, by_name[c.name]) for c in cols if c.name in by_name and c is not label]
    taken = {c.name.lower() for c in cols}
    for c, _ in found:
        new = _value_name(c.name, cols.index(c) + 1, taken)
        roles.roles[new] = roles.roles.pop(c.name)
        roles.reasons[new] = roles.reasons.pop(c.name)
        for attr in ("record_id", "key", "event_time"):
            if getattr(roles, attr) == c.name:
                setattr(roles, attr, new)
        roles.label_candidates = [new if n == c.name else n for n in roles.label_candidates]
        c.renamed_from, c.name = c.renamed_from or c.name, new
    return found


def _class_name(value: Any) -> str:
    """A label value as the model names its class (the label cast to text)."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _value_name(name: str, position: int, taken: set[str]) -> str:
    """``<name>_value``, or ``<name>_value_<position>`` when a column has that name already
    (``taken``: lower-case names, the new one added)."""
    new = f"{name}_value"
    new = new if new.lower() not in taken else f"{new}_{position}"
    taken.add(new.lower())
    return new


def _unreserved(
    names: list[str], renamed: list[tuple[str, str]]
) -> tuple[list[str], list[tuple[str, str]]]:
    """CSV column names with those a model output takes (``score``) made ``<name>_value``:
    ingest reads a CSV file whose header differs from the schema only in renamed columns by
    position, so the files keep their header."""
    taken = {n.lower() for n in names}
    raw = {new: old for old, new in renamed}
    out, pairs = [], []
    for i, name in enumerate(names, start=1):
        new = name
        if name in RESERVED_COLUMNS:
            new = _value_name(name, i, taken)
        out.append(new)
        if new != name or name in raw:
            pairs.append((raw.get(name, name), new))
    return out, pairs


def _fields_outside_quotes(line: str, delimiter: str) -> int:
    """How many fields ``delimiter`` splits ``line`` into, quoted delimiters not counted."""
    quoted, fields = False, 1
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == delimiter and not quoted:
            fields += 1
    return fields


def header_below(path: Path, lines: int = 30) -> tuple[int, str] | None:
    """(the header's line number, the lines above it shown) of a CSV file whose header is not
    its first line: a report title or export date above it (``Account statement``,
    ``Generated: ...``), seen as lines of at most half as many fields above a line whose
    number of fields nine in ten later sampled lines have; None for a file without such lines.
    Ingest takes the first line of each file as its header."""
    with _open_binary(path) as f:
        read = [_decode(f.readline(1 << 20))[0].rstrip("\r\n") for _ in range(lines)]
    numbered = [(n, line) for n, line in enumerate(read, 1) if line.strip()]
    starts: list[int] = []  # per delimiter that splits the lines alike: where they start
    for delimiter in _DELIMITERS:
        counts = [_fields_outside_quotes(line, delimiter) for _, line in numbered]
        width = max(counts, default=1)
        start = counts.index(width)
        rest = counts[start:]
        if width >= 2 and len(rest) >= 3 and rest.count(width) >= len(rest) * 0.9:
            # Lines above of at most half as many fields (not a header narrower than rows
            # ending in a delimiter).
            if start == 0 or max(counts[:start]) <= width // 2:
                starts.append(start)
    if not starts or 0 in starts:
        return None
    shown = "; ".join(repr(line[:40]) for _, line in numbered[: starts[0]][:3])
    return numbered[starts[0]][0], shown


def header_below_hint(path: Path, header_at: int, shown: str) -> str:
    """What to do about a file whose header is line ``header_at``, below ``shown``."""
    return (
        f"{path}: its header is line {header_at}, below other content ({shown}); ingest takes "
        f"the first line of each file as its header: remove the lines above it, e.g. "
        f"`tail -n +{header_at} {path.name} > {path.stem}.data{path.suffix}` (and move the "
        f"original out of the directory)"
    )


def _sample_csv(files: list[Path], sample_rows: int) -> _Sample:
    first_header: list[str] | None = None
    sample = _Sample(fmt="csv", files=[], columns=[], rows=0)
    values: list[list[Any]] = []
    for path in files:
        try:
            line = _first_line(path)
        except (OSError, EOFError) as exc:
            raise ScaffoldError(f"{path}: could not be read: {exc}") from None
        if not line.strip():
            continue
        header, encoding = _decode(line)
        below = header_below(path)
        if below is not None:
            raise ScaffoldError(f"{header_below_hint(path, *below)}, then run init again")
        delimiter = _delimiter(header)
        names, renamed = _unreserved(*csv_column_names(header, delimiter))
        if first_header is None:
            first_header = names
            sample.delimiter, sample.encoding = delimiter, encoding
            values = [[] for _ in names]
            sample.columns = [_RawColumn(n, values[i]) for i, n in enumerate(names)]
            for raw, name in renamed:
                sample.columns[names.index(name)].renamed_from = raw
        elif names != first_header or delimiter != sample.delimiter:
            raise ScaffoldError(
                f"{path}: its header {names} (delimiter {_DELIMITER_NAMES[delimiter]}) differs "
                f"from {sample.files[0]}'s {first_header} ({_DELIMITER_NAMES[sample.delimiter]}); "
                f"ingest takes CSV fields by position, so every file needs the same columns: "
                f"move the odd files out or give --data one file"
            )
        try:
            try:
                cols, skipped = _read_csv(
                    path, names, delimiter, sample.encoding, sample_rows - sample.rows
                )
            except pa.ArrowInvalid as exc:
                if "UTF8" not in str(exc) or sample.encoding != "utf-8":
                    raise
                sample.encoding = "iso-8859-1"
                cols, skipped = _read_csv(
                    path, names, delimiter, sample.encoding, sample_rows - sample.rows
                )
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScaffoldError(
                f"{path}: could not be read as CSV: {' '.join(str(exc).split())}"
            ) from None
        if skipped:
            sample.warnings.append(
                f"{path}: {len(skipped)} line(s) of the sample do not have the header's "
                f"{len(names)} fields and were skipped; ingest will quarantine such lines "
                f"(check the delimiter and quoting)"
            )
        sample.files.append(path)
        for i, col in enumerate(cols):
            values[i].extend(col)
        sample.rows += len(cols[0]) if cols else 0
        if sample.rows >= sample_rows:
            break
    if first_header is None:
        where = files[0] if len(files) == 1 else files[0].parent
        raise ScaffoldError(
            f"{where}: empty: no header line; give --data a CSV file with a header line and rows"
        )
    if sample.rows == 0:
        where = files[0] if len(files) == 1 else files[0].parent
        raise ScaffoldError(
            f"{where}: empty: a header line but no data rows; types and roles are guessed from "
            f"rows, so give --data a file with rows"
        )
    return sample


def _json_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with _open_binary(path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                yield number, line


def _text(value: Any) -> Any:
    """A JSON value as the text ingest reads it as (numbers keep their original text)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return _Nested(json.dumps(value))
    return value


class _Nested(str):
    """The JSON text of a nested object or array value."""


def _object_paths(rows: list[dict[str, Any]]) -> set[tuple[str, ...]]:
    """The keys (paths of keys, inside nested objects) whose values are non-empty JSON
    objects in every row that has a value: init reads their fields as columns of their own.
    A key that holds an object in one row and another value in the next stays one column
    (its values' JSON text)."""
    kinds: dict[tuple[str, ...], set[bool]] = {}

    def walk(obj: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for key, value in obj.items():
            path = (*prefix, key)
            seen = kinds.setdefault(path, set())
            if value is not None:
                seen.add(isinstance(value, dict) and bool(value))
            if isinstance(value, dict):
                walk(value, path)

    for row in rows:
        walk(row, ())
    objects = {p for p, seen in kinds.items() if seen == {True}}
    return {p for p in objects if all(p[:i] in objects for i in range(1, len(p)))}


def _flat(
    obj: dict[str, Any], objects: set[tuple[str, ...]], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(path, text) of each value of a JSON record, the fields of ``objects`` each one."""
    for key, value in obj.items():
        path = (*prefix, key)
        if path not in objects:
            yield path, _text(value)
        elif isinstance(value, dict):  # None: none of its fields has a value in this row
            yield from _flat(value, objects, path)


def _sample_json(files: list[Path], sample_rows: int) -> _Sample:
    sample = _Sample(fmt="json", files=[], columns=[], rows=0)
    rows: list[dict[str, Any]] = []
    bad: list[str] = []
    for path in files:
        try:
            for number, line in _json_lines(path):
                if not rows and not bad and line.lstrip().startswith(b"["):
                    raise ScaffoldError(
                        f"{path}: holds a JSON array; ingest reads JSON lines (one object per "
                        f"line): convert it, e.g. with `jq -c '.[]' {path.name} > "
                        f"{path.stem}.jsonl`"
                    )
                text, encoding = _decode(line.lstrip(b"\xef\xbb\xbf") if number == 1 else line)
                if encoding != "utf-8":
                    sample.encoding = encoding
                try:
                    obj = json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
                except json.JSONDecodeError:
                    obj = None
                if not isinstance(obj, dict):
                    bad.append(f"{path.name}:{number}")
                    continue
                rows.append(obj)
                if len(rows) >= sample_rows:
                    break
        except (OSError, EOFError) as exc:
            raise ScaffoldError(f"{path}: could not be read: {exc}") from None
        sample.files.append(path)
        if len(rows) >= sample_rows:
            break
    if bad:
        sample.warnings.append(
            f"{len(bad)} line(s) of the sample are not JSON objects and were skipped "
            f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); ingest will quarantine them"
        )
    if not rows:
        where = files[0] if len(files) == 1 else files[0].parent
        raise ScaffoldError(
            f"{where}: empty: no JSON object found; give --data JSON lines (one object per line)"
        )
    objects = _object_paths(rows)
    flat = [dict(_flat(row, objects)) for row in rows]
    paths = list(dict.fromkeys(p for row in flat for p in row))
    sample.columns = [
        _RawColumn(".".join(p), [row.get(p) for row in flat], path=p if len(p) > 1 else ())
        for p in paths
    ]
    sample.rows = len(rows)
    return sample


def _native_type(t: pa.DataType) -> tuple[str | None, str]:
    """(schema type, note) of a Parquet column type; None for text, typed from its values."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return None, ""
    if pa.types.is_boolean(t):
        return "boolean", "Parquet boolean"
    if pa.types.is_integer(t):
        wide = t.bit_width > 32 or (pa.types.is_unsigned_integer(t) and t.bit_width == 32)
        return ("long" if wide else "int"), f"Parquet {t}"
    if pa.types.is_floating(t):
        return "double", f"Parquet {t}"
    if pa.types.is_decimal(t):
        return f"decimal({t.precision},{t.scale})", f"Parquet {t}"
    if pa.types.is_timestamp(t):
        return "timestamp", f"Parquet {t}"
    if pa.types.is_date(t):
        return "date", f"Parquet {t}"
    return "string", f"Parquet {t} (read as text)"


def _sample_parquet(files: list[Path], sample_rows: int) -> _Sample:
    sample = _Sample(fmt="parquet", files=[], columns=[], rows=0)
    tables: list[pa.Table] = []
    schema: pa.Schema | None = None
    for path in files:
        try:
            pf = pq.ParquetFile(path)
            if schema is not None and pf.schema_arrow.names != schema.names:
                raise ScaffoldError(
                    f"{path}: its columns {pf.schema_arrow.names} differ from "
                    f"{sample.files[0]}'s {schema.names}; move the odd files out or give --data "
                    f"one file"
                )
            schema = schema or pf.schema_arrow
            want = sample_rows - sample.rows
            for batch in pf.iter_batches(batch_size=min(want, 65_536)):
                tables.append(pa.Table.from_batches([batch]).slice(0, want))
                sample.rows += min(batch.num_rows, want)
                want = sample_rows - sample.rows
                if want <= 0:
                    break
        except (pa.ArrowInvalid, OSError) as exc:
            raise ScaffoldError(
                f"{path}: could not be read as Parquet: {' '.join(str(exc).split())}"
            ) from None
        sample.files.append(path)
        if sample.rows >= sample_rows:
            break
    if schema is None or sample.rows == 0:
        where = files[0] if len(files) == 1 else files[0].parent
        raise ScaffoldError(f"{where}: empty: no rows; give --data Parquet files with rows")
    table = pa.concat_tables(tables, promote_options="permissive")
    for path, col in _struct_fields(table):
        native, note = _native_type(col.type)
        if native == "string" and note:
            values = [None if v is None else str(v) for v in col.to_pylist()]
        else:
            values = col.to_pylist()
        nested = path if len(path) > 1 else ()
        sample.columns.append(_RawColumn(".".join(path), values, native, note, path=nested))
    return sample


def _struct_fields(table: pa.Table) -> Iterator[tuple[tuple[str, ...], pa.Array]]:
    """(path, values) of each column of ``table``, and of each field of its struct columns
    (a null struct's fields being null)."""

    def fields(path: tuple[str, ...], values: pa.Array) -> Iterator[tuple[tuple[str, ...], Any]]:
        if pa.types.is_struct(values.type) and values.type.num_fields:
            for child, inner in zip(values.type, values.flatten(), strict=True):
                yield from fields((*path, child.name), inner)
        else:
            yield path, values

    for name in table.column_names:
        yield from fields((name,), table.column(name).combine_chunks())


def _example_with(
    values: list[str], numbers: NumberText, mark: str = ","
) -> tuple[str | None, bool]:
    """(a value holding the regex ``mark``, whether all but one in :data:`TOLERATED_SHARE`
    values) of the non-empty stripped ``values`` that are numbers as ``numbers`` writes them."""
    matching = [v for v in values if numbers.plain(v) is not None]
    example = next((v for v in matching if re.search(mark, v)), None)
    return example, len(values) - len(matching) <= len(values) // TOLERATED_SHARE


# Thousands grouped by blanks (1 234,5, with a decimal comma) or apostrophes (1'234.5): no
# other reading of such a number exists. (numbers, the grouping between two digits)
_UNAMBIGUOUS_GROUPINGS = (
    (NumberText(",", " ", signs=True), r"\d[ \u00a0\u202f]\d"),
    (NumberText(".", "'", signs=True), r"\d'\d"),
)


def _read_number_text(sample: _Sample) -> None:
    """Decides how the sample's CSV numbers are written and rewrites every number written so
    as a plain one (``$1,234.50`` -> ``1234.50``, ``1.234,5`` -> ``1234.5``, ``12%`` ->
    ``12``), as ingest reads them; each column so rewritten keeps an example in
    ``written_as``.

    A decimal comma (``ingest.csv.decimal: ","``, in ``sample.decimal_comma``): a column of
    numbers (all but one in :data:`TOLERATED_SHARE`) with a comma and no column's number with
    a decimal point (``3.14``). Commas grouping thousands (``ingest.csv.thousands: ","``, in
    ``sample.thousands``): a column of such numbers whose commas can only group (``1,234.5``,
    ``1,234,567``), or whose commas all stand before three digits (``1,234``) beside a column
    with a decimal point. Columns of both kinds: a warning, as ingest reads one decimal
    separator. A currency or percent sign around the numbers (``ingest.csv.strip_signs``,
    in ``sample.signs``)."""
    comma: list[tuple[str, str]] = []
    grouped: list[tuple[str, str, bool]] = []  # (column, example, only grouping commas)
    point: list[tuple[str, str]] = []
    for c in sample.columns:
        values = [v.strip() for v in c.values if v is not None and v.strip()]
        for numbers, mark in _UNAMBIGUOUS_GROUPINGS:
            example, mostly = _example_with(values, numbers, mark)
            if example and mostly and sample.thousands is None:
                sample.thousands = (numbers.grouping, c.name, example)
                sample.decimal_comma = (c.name, example) if numbers.decimal == "," else None
        example, mostly = _example_with(values, NumberText(",", signs=True))
        if example and mostly:
            comma.append((c.name, example))
        example, mostly = _example_with(values, NumberText(".", ",", signs=True))
        if example and mostly:
            grouping = any(grouped_by_commas(v) for v in values)
            grouped.append((c.name, next(filter(grouped_by_commas, values), example), grouping))
        with_point = next(
            (v for v in values if _FLOAT_RE.fullmatch(v) and not _COMMA_NUMBER_RE.fullmatch(v)),
            None,
        )
        if with_point:
            point.append((c.name, with_point))
    grouped_names = {name for name, _, _ in grouped}
    decimal_commas = [(name, v) for name, v in comma if name not in grouped_names]
    if sample.thousands is not None:
        comma = point = []
    elif any(grouping for _, _, grouping in grouped) or (grouped and point and not decimal_commas):
        column, example, _ = next((g for g in grouped if g[2]), grouped[0])
        sample.thousands = (",", column, example)
        comma, point = decimal_commas, [(column, example)]
    if comma and point:
        sample.warnings.append(
            f"column '{comma[0][0]}' writes numbers with a decimal comma ('{comma[0][1]}'), "
            f"column '{point[0][0]}' with a point ('{point[0][1]}'): ingest reads one decimal "
            f"separator (ingest.csv.decimal), so the other column's values will not parse"
        )
    if comma and not point:
        sample.decimal_comma = comma[0]
    separators = (
        "," if sample.decimal_comma else ".",
        sample.thousands[0] if sample.thousands else None,
    )
    numbers, unsigned = NumberText(*separators, signs=True), NumberText(*separators)
    for c in sample.columns:
        plain = [None if v is None else numbers.plain(v) for v in c.values]
        written = next(
            (v.strip() for v, p in zip(c.values, plain, strict=True) if p and p != v.strip()),
            None,
        )
        if written is None:
            continue
        signed = next(
            (v for v in c.values if v and unsigned.plain(v) is None and numbers.plain(v)), None
        )
        if sample.signs is None and signed is not None:
            sample.signs = (c.name, signed.strip())
        c.written_as = written
        c.values = [v if p is None else p for v, p in zip(c.values, plain, strict=True)]


_COMMA_NUMBER_RE = re.compile(NumberText(",", signs=True).pattern)


_SEPARATOR_NAMES = {",": "commas", " ": "blanks", "'": "apostrophes"}

# What a column is called in each input format.
_FIELD = {"csv": "header", "json": "key", "parquet": "column"}


def _name_for_tables(columns: list[_RawColumn]) -> None:
    """Names JSON keys and Parquet columns of characters other than letters, digits and ``_``
    as such a CSV header field is named (``reading.temp`` -> ``reading_temp``): the tables'
    columns and the config's expressions then need no quoting, and the schema reads each
    from its input name (``input_name``). So are names a model output takes (``score`` ->
    ``score_value``), as :func:`_unreserved` names such CSV header fields."""
    names = _unreserved(*column_names([c.name for c in columns]))[0]
    for c, new in zip(columns, names, strict=True):
        if new != c.name:
            c.renamed_from, c.name = c.name, new


def _sample(fmt: str, files: list[Path], sample_rows: int) -> _Sample:
    reader = {"csv": _sample_csv, "json": _sample_json, "parquet": _sample_parquet}[fmt]
    return reader(files, sample_rows)


# --------------------------------------------------------------------------- types from text

_TEMPORAL_RE = re.compile(
    r"(?:(?P<iso>(?P<iy>\d{4})-(?P<im>\d{2})-(?P<id>\d{2}))"
    r"|(?P<ymd>(?P<sy>\d{4})/(?P<sm>\d{2})/(?P<sd>\d{2}))"
    r"|(?P<xy>(?P<a>\d{1,2})(?P<xs>[/.-])(?P<b>\d{1,2})(?P=xs)(?P<xyear>\d{4})))"
    r"(?:(?P<sep>[T ])(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?:(?P<ampm_sep> ?)(?P<ampm>[AaPp][Mm]))?"
    r"(?P<z>Z|[+-]\d{2}:\d{2}|[+-]\d{4})?)?"
)
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_FLOAT_WORDS = {"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def _is_number(text: str) -> bool:
    """Whether stripped ``text`` parses as a number (a whole or decimal number, NaN, infinity)."""
    return bool(_FLOAT_RE.fullmatch(text)) or text.lower() in _FLOAT_WORDS


def _valid_time(y: int, mo: int, d: int, h: int, mi: int, s: int, zone: str | None) -> bool:
    try:
        datetime(y, mo, d, h, mi, s)
    except ValueError:
        return False
    if zone and zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[-2:])
        return hours <= 18 and minutes < 60
    return True


@dataclass(frozen=True)
class _Temporal:
    type: str  # timestamp or date
    format: str  # Spark datetime pattern
    note: str = ""


def _mostly_temporal(values: list[str]) -> tuple[_Temporal | None, list[str]]:
    """(the pattern, the values that do not match it): every value matches, or all but at most
    one in :data:`TOLERATED_SHARE` share one pattern (dirty rows that ingest quarantines)."""
    whole = _temporal(values)
    if whole is not None or len(values) < TOLERATED_SHARE:
        return whole, []
    groups: dict[tuple[str, str], list[str]] = {}
    for v in values:
        one = _temporal([v])
        if one is not None:
            groups.setdefault((one.type, one.format), []).append(v)
    if not groups:
        return None, []
    largest = max(groups.values(), key=len)
    if len(values) - len(largest) > len(values) // TOLERATED_SHARE:
        return None, []
    kept = set(largest)
    return _temporal(largest), [v for v in values if v not in kept]


def _temporal(values: list[str]) -> _Temporal | None:
    """The timestamp or date pattern every value matches, or None.

    All values must share one shape (date style, separator, seconds present, offset present);
    fractions of a second may vary in length and be absent.
    """
    shape = None
    frac = 0
    zones: set[str] = set()
    unpadded = short_hour = False
    day_first_ok = month_first_ok = True
    for v in values:
        m = _TEMPORAL_RE.fullmatch(v)
        if m is None:
            return None
        style = "iso" if m["iso"] else "ymd" if m["ymd"] else "xy"
        has_time = m["sep"] is not None
        ampm = m["ampm_sep"] if m["ampm"] else None  # the text before AM/PM: " " or ""
        this = (style, m["xs"], m["sep"], has_time, m["S"] is not None, m["z"] is not None, ampm)
        if shape is None:
            shape = this
        elif this != shape:
            return None
        if style != "iso" and (m["sep"] == "T" or m["z"]):
            return None
        if has_time and len(m["H"]) == 1 and style != "xy" and ampm is None:
            return None
        if ampm is not None and (m["sep"] == "T" or not 1 <= int(m["H"]) <= 12):
            return None
        short_hour |= has_time and len(m["H"]) == 1
        h, mi, s = (int(m["H"]) % 12, int(m["M"]), int(m["S"] or 0)) if has_time else (0, 0, 0)
        if m["f"]:
            frac = max(frac, len(m["f"]))
        if m["z"]:
            zones.add("Z" if m["z"] == "Z" else "colon" if ":" in m["z"] else "plain")
        if style == "xy":
            a, b, y = int(m["a"]), int(m["b"]), int(m["xyear"])
            unpadded |= len(m["a"]) == 1 or len(m["b"]) == 1 or (has_time and len(m["H"]) == 1)
            day_first_ok &= _valid_time(y, b, a, h, mi, s, m["z"])
            month_first_ok &= _valid_time(y, a, b, h, mi, s, m["z"])
            if not (day_first_ok or month_first_ok):
                return None
        else:
            y, mo, d = (int(m["iy"]), int(m["im"]), int(m["id"])) if style == "iso" else (
                int(m["sy"]), int(m["sm"]), int(m["sd"])
            )  # fmt: skip
            if not _valid_time(y, mo, d, h, mi, s, m["z"]):
                return None
    if shape is None or {"colon", "plain"} <= zones:
        return None
    style, xs, sep, has_time, has_seconds, has_zone, ampm = shape
    note = ""
    if style == "iso":
        day = "yyyy-MM-dd"
    elif style == "ymd":
        day = "yyyy/MM/dd"
    else:
        d, mo = ("d", "M") if unpadded else ("dd", "MM")
        day = f"{d}{xs}{mo}{xs}yyyy" if day_first_ok else f"{mo}{xs}{d}{xs}yyyy"
        if day_first_ok and month_first_ok:
            note = (
                "day/month order not decided by the sample (no day above 12): "
                "day first assumed, check it"
            )
    if not has_time:
        return _Temporal("date", day, note)
    hour = "H" if style == "xy" and unpadded else "HH"
    if ampm is not None:  # a 12-hour clock
        hour = "h" if unpadded or short_hour else "hh"
    pattern = day + ("'T'" if sep == "T" else " ") + f"{hour}:mm"
    if has_seconds:
        pattern += ":ss"
        if frac:
            pattern += "[.SSSSSS]" if frac <= 6 else "[.SSSSSSSSS]"
    if ampm is not None:
        pattern += f"{ampm}a"
    if has_zone:
        pattern += "XX" if "plain" in zones else "XXX"
    return _Temporal("timestamp", pattern, note)


@dataclass
class _Typed:
    """A sampled column with its schema type and the statistics the role guesses use."""

    name: str
    type: str
    format: str | None
    type_reason: str
    values: list[Any]  # non-empty values, typed
    nulls: int
    renamed_from: str | None = None
    nested: bool = False
    note: str = ""
    # Numbers but for a few values: kept as text in the schema and cast to this type by
    # clean.coerce, where the values that do not cast (``odd``) become nulls.
    coerce: str | None = None
    odd: tuple[str, ...] = ()

    @property
    def distinct(self) -> int:
        return len(set(self.values))

    @property
    def value_type(self) -> str:
        """The type of the values the jobs after clean see: the coerced type, if any."""
        return self.coerce or self.type

    @property
    def is_numeric(self) -> bool:
        t = self.value_type
        return t in ("int", "long", "double") or t.startswith("decimal")

    @property
    def is_temporal(self) -> bool:
        return self.type in ("timestamp", "date")

    def unique(self, rows: int) -> bool:
        """Distinct in all but at most one row in 50 of the ``rows`` sampled: rows with no
        value (ingest quarantines them when the column is declared not nullable) and
        repeated values (records sent twice, which clean's deduplication removes) together.
        A word for "no value" (``n/a``) makes the column a measure, never unique."""
        if self.odd:
            return False
        return rows > 1 and rows - self.distinct <= rows // TOLERATED_SHARE


# Text that means "no value" in a column of numbers, however often it comes.
NO_VALUE_WORDS = frozenset(
    {"na", "n/a", "n.a.", "#n/a", "null", "none", "nil", "missing", "-", "--", "?", "."}
)


def _mostly_numbers(values: list[str]) -> tuple[str, list[Any], list[str]] | None:
    """(numeric type, the numbers typed, the other values) when all but at most one in
    :data:`TOLERATED_SHARE` values are numbers (``n/a``, ``-``, ``missing``: text that means
    no value), or when at least half are and every other value is one of
    :data:`NO_VALUE_WORDS` (``NA`` in a tenth of the rows); else None."""
    if len(values) < TOLERATED_SHARE:
        return None
    numbers, odd = [], []
    for v in values:
        (numbers if _is_number(v.strip()) else odd).append(v)
    no_values = all(v.strip().lower() in NO_VALUE_WORDS for v in odd)
    if not numbers or len(odd) > len(values) // (2 if no_values else TOLERATED_SHARE):
        return None
    type_, _, _, typed, _ = _type_from_text(numbers)
    numeric = type_ in ("int", "long", "double")
    return (type_, typed, odd) if numeric else None


def _type_from_text(values: list[str]) -> tuple[str, str | None, str, list[Any], str]:
    """(type, format, why, typed values, note) of non-empty text values."""
    stripped = [v.strip() for v in values]
    if all(_INT_RE.fullmatch(v) for v in stripped):
        if any(re.fullmatch(r"[+-]?0\d+", v) for v in stripped):
            return "string", None, "digits with leading zeros -> string", values, ""
        ints = [int(v) for v in stripped]
        if all(_INT_MIN <= i <= _INT_MAX for i in ints):
            return "int", None, "whole numbers that fit int -> int", ints, ""
        if all(_LONG_MIN <= i <= _LONG_MAX for i in ints):
            return "long", None, "whole numbers beyond int -> long", ints, ""
        return "string", None, "whole numbers beyond long -> string", values, ""
    # Numbers, not only NaN/infinity words.
    if all(map(_is_number, stripped)) and any(v.lower() not in _FLOAT_WORDS for v in stripped):
        return "double", None, "decimal numbers -> double", [float(v) for v in stripped], ""
    if all(v.lower() in ("true", "false") for v in stripped):
        typed = [v.lower() == "true" for v in stripped]
        return "boolean", None, "true/false -> boolean", typed, ""
    temporal, odd = _mostly_temporal(values)
    if temporal is not None:
        good = next(v for v in values if v not in odd)
        why = f"text like '{good}' -> {temporal.type}, format {temporal.format}"
        if odd:
            why += (
                f" ({len(odd)} of {len(values)} values do not match, e.g. '{odd[0]}': ingest "
                f"quarantines such rows)"
            )
        return temporal.type, temporal.format, why, values, temporal.note
    return "string", None, "text -> string", values, ""


def _typed(col: _RawColumn) -> _Typed:
    typed = _typed_values(col)
    return _epoch_time(typed) or _compact_date(typed) or typed


def _time_named(name: str) -> bool:
    """``ts``, ``created_at``, ``readAt``, ``event_time``: a name a time column has."""
    lower = name.lower()
    return (
        lower in _EVENT_TIME_NAMES
        or lower.endswith(_EVENT_TIME_SUFFIXES)
        or bool(re.search(r"[a-z0-9](At|Time|Date)$", name))
    )


def _epoch_time(col: _Typed) -> _Typed | None:
    """A column of whole numbers named like a time whose every value is a time since 1970 in
    seconds or milliseconds between 2001 and 2096 (``1759300000``, ``1759300000123``), as a
    timestamp of format ``epoch_seconds`` / ``epoch_millis``; else None."""
    if col.type not in ("int", "long") or not col.values or not _time_named(col.name):
        return None
    for fmt, per_second in EPOCH_UNITS.items():
        if all(1e9 * per_second <= v < 4e9 * per_second for v in col.values):
            times = [datetime.fromtimestamp(v / per_second, tz=timezone.utc) for v in col.values]
            why = (
                f"whole numbers named like a time, e.g. {col.values[0]} = "
                f"{times[0]:%Y-%m-%d %H:%M:%S} UTC -> timestamp, format {fmt}"
            )
            return dataclasses.replace(
                col, type="timestamp", format=fmt, type_reason=why, values=times
            )
    return None


def _compact_date(col: _Typed) -> _Typed | None:
    """A column of 8-digit whole numbers named like a time whose every value is a date from
    1900 to 2099 written ``yyyyMMdd`` (``20261005``), as a date of that format; else None."""
    if col.type not in ("int", "long") or not col.values or not _time_named(col.name):
        return None
    dates = []
    for v in col.values:
        y, md = divmod(v, 10_000)
        if not 1900 <= y <= 2099 or not _valid_time(y, md // 100, md % 100, 0, 0, 0, None):
            return None
        dates.append(date(y, md // 100, md % 100))
    why = f"8-digit numbers named like a date, e.g. {col.values[0]} -> date, format yyyyMMdd"
    return dataclasses.replace(col, type="date", format="yyyyMMdd", type_reason=why, values=dates)


def _typed_values(col: _RawColumn) -> _Typed:
    present = [v for v in col.values if v is not None]
    nulls = len(col.values) - len(present)
    if col.native_type is not None:
        why = f"{col.native_note} -> {col.native_type}"
        nested = col.native_type == "string"
        return _Typed(
            col.name, col.native_type, None, why, present, nulls, col.renamed_from, nested=nested
        )
    if not present:
        why = "empty in the whole sample -> string"
        return _Typed(col.name, "string", None, why, [], nulls, col.renamed_from)
    if any(isinstance(v, _Nested) for v in present):
        why = "nested JSON values -> string (their JSON text)"
        return _Typed(col.name, "string", None, why, present, nulls, col.renamed_from, nested=True)
    text = [str(v) for v in present]
    type_, fmt, reason, typed, note = _type_from_text(text)
    if col.written_as is not None and type_ in ("int", "long", "double"):
        reason = reason.replace(" -> ", f", written like '{col.written_as}' -> ", 1)
    mostly = _mostly_numbers(text) if type_ == "string" else None
    if mostly is not None:
        number_type, numbers, odd = mostly
        written = f" written like '{col.written_as}'" if col.written_as is not None else ""
        reason = (
            f"numbers{written} but {len(odd)} of {len(text)} values (e.g. '{odd[0]}') -> "
            f"string, cast to {number_type} by clean.coerce (values that do not cast become "
            f"nulls, counted in dq_metrics)"
        )
        return _Typed(
            col.name,
            "string",
            None,
            reason,
            numbers,
            nulls,
            col.renamed_from,
            coerce=number_type,
            odd=tuple(odd),
        )
    return _Typed(col.name, type_, fmt, reason, typed, nulls, col.renamed_from, note=note)


# --------------------------------------------------------------------------- roles


def _words(name: str) -> list[str]:
    """Lower-case words of a snake_case, kebab-case or camelCase name."""
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return re.findall(r"[a-z0-9]+", snake.lower())


def _id_named(name: str) -> bool:
    """``id``, ``customer_id``, ``customer-id``, ``customerId``, ``CustomerID``, ``Customer ID``,
    ``customer.id``, ``order_uuid``."""
    return name.lower().endswith("uuid") or _words(name)[-1:] == ["id"]


def _id_shaped(col: _Typed) -> bool:
    """Values an identifier can have: whole numbers, or short text without blanks (not
    numbers with words for "no value": a measure)."""
    if col.coerce:
        return False
    if col.type in ("int", "long"):
        return True
    return (
        col.type == "string"
        and not col.nested
        and all(len(v) <= 64 and not re.search(r"\s", v) for v in col.values)
    )


def _entity_key(cols: list[_Typed], rows: int) -> tuple[_Typed | None, str]:
    """The column the records are about when none is named like an identifier: codes such as
    ``C0048`` or a column named like an entity (``customer``, ``machine``), empty in at most
    one of 50 sampled rows, each value repeating over a few records, too many distinct values
    for a category. A column named like an entity wins over one that only looks like codes;
    failing both, a column whose name ends in an entity word (``meter``, ``store``, not
    ``merchant_category``) with few distinct values is the key (and stays a category)."""

    def codes(c: _Typed) -> bool:
        return all(re.search(r"[A-Za-z]", v) and re.search(r"[0-9]", v) for v in c.values)

    repeating = [
        c
        for c in cols
        if c.values
        and c.nulls <= rows // TOLERATED_SHARE
        and c.type == "string"
        and _id_shaped(c)
        and 1 < c.distinct < len(c.values) - len(c.values) // TOLERATED_SHARE
    ]
    candidates = [c for c in repeating if c.distinct > MAX_CATEGORIES]
    named = [c for c in candidates if _ENTITY_WORDS.intersection(_words(c.name))]
    if named:
        c = named[0]
        return c, f"named like an entity, {c.distinct} distinct values repeating in {rows} rows"
    coded = [c for c in candidates if codes(c)]
    if coded:
        c = coded[0]
        return c, f"codes repeating in the sample ({c.distinct} distinct in {rows} rows)"
    few = [
        c
        for c in repeating
        if c.distinct <= MAX_CATEGORIES and (_words(c.name) or [""])[-1] in _ENTITY_WORDS
    ]
    if few:
        c = few[0]
        return c, f"named like an entity, {c.distinct} distinct values repeating in {rows} rows"
    return None, ""


@dataclass
class _Roles:
    roles: dict[str, list[str]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    record_id: str | None = None
    key: str | None = None
    event_time: str | None = None
    label: str | None = None
    label_candidates: list[str] = field(default_factory=list)


def _event_time_rank(col: _Typed) -> tuple[int, int]:
    lower = col.name.lower()
    if lower in _EVENT_TIME_NAMES:
        by_name = _EVENT_TIME_NAMES.index(lower)
    elif _time_named(col.name):
        by_name = len(_EVENT_TIME_NAMES)
    else:
        by_name = len(_EVENT_TIME_NAMES) + 1
    return by_name, 0 if col.type == "timestamp" else 1


def _label_tier(col: _Typed) -> int | None:
    """0: an exact label name; 1: a churn/fraud/default/failure... flag
    (:data:`_FLAG_LABEL_WORDS`); 2: an ``is_*`` flag; else None."""
    if col.is_temporal or col.nested or not col.values:
        return None
    if col.name.lower() in _EXACT_LABELS:
        return 0
    words = _words(col.name)
    if col.distinct > 2:
        return None
    if any(w.startswith(_FLAG_LABEL_WORDS) for w in words):
        return 1
    if len(words) > 1 and words[0] == "is":
        return 2
    return None


def _guess_roles(cols: list[_Typed], rows: int, label: str | None = None) -> _Roles:
    r = _Roles(roles={c.name: [] for c in cols})
    sample = f"{rows}-row sample"
    given = next((c for c in cols if c.name == label), None)
    every = cols
    cols = [c for c in cols if c is not given]  # the given label is no id, time or feature

    ids = [c for c in cols if _id_named(c.name) and _id_shaped(c)]
    unique_ids = [c for c in ids if c.unique(rows)]
    record = unique_ids[0] if unique_ids else None
    record_why = f"unique in the {sample}"
    repeated = len(record.values) - record.distinct if record is not None else 0
    if repeated:
        record_why += f" but for {repeated} repeated value(s) (records sent twice)"
    if record is None:
        # No identifier by name: a column of unique identifier-shaped text, or whole numbers
        # in the first column (a row number); a unique number elsewhere is more likely a measure.
        for i, c in enumerate(cols):
            if c.unique(rows) and _id_shaped(c) and (c.type == "string" or i == 0):
                record = c
                record_why = f"unique identifier-shaped values in the {sample}"
                break
    others = [c for c in ids if c is not record]
    key = next((c for c in others if not c.unique(rows)), others[0] if others else None)
    if key is None:
        key, key_why = _entity_key([c for c in cols if c is not record], rows)
    else:
        repeats = "repeats in the sample" if not key.unique(rows) else "besides the record id"
        key_why = f"identifier-like name, {repeats}"
    if record is not None:
        r.record_id = record.name
        r.roles[record.name].append(ROLE_RECORD_ID)
        if key is None:
            r.key = record.name
            r.roles[record.name].append(ROLE_KEY)
            r.reasons[record.name] = (
                f"{record_why} -> record id and entity key (no other column looks like an "
                f"entity key)"
            )
        else:
            r.reasons[record.name] = f"{record_why} -> record id"
    if key is not None:
        r.key = key.name
        r.roles[key.name].append(ROLE_KEY)
        r.reasons[key.name] = f"{key_why} -> entity key"
        if not _id_named(key.name) and key.distinct <= MAX_CATEGORIES:
            r.roles[key.name].append(ROLE_CATEGORICAL)
            r.reasons[key.name] += " and categorical feature"

    temporal = [c for c in cols if c.is_temporal]
    if temporal:
        best = min(temporal, key=_event_time_rank)
        r.event_time = best.name
        r.roles[best.name].append(ROLE_EVENT_TIME)
        why = "the only date/time column" if len(temporal) == 1 else "its name ranks first"
        r.reasons[best.name] = f"{why} -> event time"

    taken = {r.record_id, r.key, r.event_time}
    tiers = [(t, c) for c in cols if c.name not in taken and (t := _label_tier(c)) is not None]
    if given is not None:
        r.label = given.name
        r.roles[given.name].append(ROLE_LABEL)
        task, distinct = _task(given)
        r.reasons[given.name] = f"given with --label -> label ({distinct} in the sample: {task})"
    elif tiers:
        top = min(t for t, _ in tiers)
        candidates = [c for t, c in tiers if t == top]
        if top == 0:
            candidates.sort(key=lambda c: _EXACT_LABELS.index(c.name.lower()))
        label = candidates[0]
        r.label = label.name
        r.label_candidates = [c.name for c in candidates[1:]]
        r.roles[label.name].append(ROLE_LABEL)
        kind = f"named '{label.name}'" if top == 0 else "a two-valued flag named like a label"
        also = f"; also possible: {', '.join(r.label_candidates)}" if r.label_candidates else ""
        task, distinct = _task(label)
        r.reasons[label.name] = f"{kind} -> label ({distinct} in the sample: {task}{also})"

    for c in cols:
        if r.roles[c.name] or c.name in r.reasons:
            continue
        if not c.values or c.nested:
            r.reasons[c.name] = "no role"
        elif _id_named(c.name):
            r.reasons[c.name] = "identifier-like name -> no role (not a feature)"
        elif c.is_temporal:
            r.reasons[c.name] = (
                f"another date/time column besides {r.event_time} -> no role "
                f"(features.date_parts can derive features from it)"
            )
        elif c.is_numeric:
            r.roles[c.name].append(ROLE_NUMERIC)
            r.reasons[c.name] = "not an id or the label -> numeric feature"
        elif c.type == "boolean":
            r.roles[c.name].append(ROLE_CATEGORICAL)
            r.reasons[c.name] = "a flag, not the label -> categorical feature"
        elif c.distinct <= MAX_CATEGORIES and c.distinct < len(c.values) / 2:
            r.roles[c.name].append(ROLE_CATEGORICAL)
            r.reasons[c.name] = (
                f"{c.distinct} distinct values in {len(c.values)} non-empty rows -> "
                f"categorical feature"
            )
        else:
            r.reasons[c.name] = (
                f"{c.distinct} distinct values in {len(c.values)} non-empty rows: free text or "
                f"an identifier, left out of the features"
            )
    r.roles = {c.name: r.roles[c.name] for c in every}
    return r


def _task(label: _Typed) -> tuple[str, str]:
    """(``train.task``, ``"<k> distinct values"``) for a label column.

    Text and true/false labels are classes; whole numbers are classes when there are at most
    :data:`MAX_CLASSES` distinct ones; decimal numbers are quantities.
    """
    k = label.distinct
    distinct = f"{k} distinct value{'s' if k != 1 else ''}"
    t = label.value_type
    if t in ("boolean", "string") or (t in ("int", "long") and k <= MAX_CLASSES):
        return "classification", distinct
    return "regression", distinct


# --------------------------------------------------------------------------- writing YAML

_PLAIN_RE = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(value: Any) -> str:
    """``value`` as a YAML flow scalar: plain when it reads back as the same string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if (
        _PLAIN_RE.fullmatch(text)
        and text.lower() not in _YAML_WORDS
        and yaml.safe_load(text) == text
    ):
        return text
    return json.dumps(text, ensure_ascii=False)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _comment_block(lines: list[str], width: int = 96) -> list[str]:
    """Comment lines: each entry wrapped at ``width`` characters."""
    out: list[str] = []
    for line in lines:
        words = line.split(" ")
        current = "#"
        for w in words:
            if len(current) + 1 + len(w) > width and current != "#":
                out.append(current)
                current = "# " + w
            else:
                current = f"{current} {w}"
        out.append(current)
    return out


def _column_line(
    c: _Typed, roles: list[str], nullable: bool, input_name: str | list[str] | None
) -> str:
    items = [f"name: {_scalar(c.name)}"]
    if isinstance(input_name, list):
        items.append(f"input_name: [{', '.join(map(_scalar, input_name))}]")
    elif input_name is not None:
        items.append(f"input_name: {_scalar(input_name)}")
    items += [f"type: {c.type}", f"nullable: {_scalar(nullable)}"]
    if len(roles) == 1:
        items.append(f"role: {roles[0]}")
    elif roles:
        items.append(f"role: [{', '.join(roles)}]")
    if c.format:
        items.append(f"format: {_scalar(c.format)}")
    return "  - {" + ", ".join(items) + "}"


def _aligned(pairs: list[tuple[str, str]], cap: int = 72) -> list[str]:
    """``text  # comment`` lines, comments aligned (up to column ``cap``)."""
    width = min(max(len(t) for t, _ in pairs), cap)
    return [f"{t.ljust(width)}  # {_one_line(c)}" if c else t for t, c in pairs]


# What names a batch or a folder of batches rather than the data: a trailing day/batch/part
# number or date (``churn_day1``, ``orders_2026_11_01``) is left out of a name, and a name
# that is nothing else, or one of these words, is passed over.
BATCH_SUFFIX = r"(_?(day|batch|part|week|month|run|chunk)_?[0-9]+|_?[0-9]{4}_[0-9]{2}(_[0-9]{2})?)$"
BATCH_FOLDERS = frozenset(
    "reference current raw data input inputs incoming landing batch batches latest new "
    "today daily train test".split()
)


def _dataset_name(path: Path) -> str:
    """The name of the experiment and model: the file's stem or the directory's name, passing
    over names of batches (``2026-11-01/``, ``day1/``, ``reference/``, ``raw/``) to the stem
    the directory's files share, then to the parent directories' names."""

    def stem(p: Path) -> str:
        return re.sub(r"(\.[A-Za-z0-9]+)?(\.gz)?$", "", p.name)

    candidates = [stem(path) if path.is_file() else path.name]
    if path.is_dir():
        stems = {
            stem(f) for f in path.iterdir() if f.is_file() and not f.name.startswith((".", "_"))
        }
        candidates += list(stems) if len(stems) == 1 else []
    candidates += [p.name for p in path.resolve().parents[:2]]
    for candidate in candidates:
        name = re.sub(r"[^a-z0-9]+", "_", candidate.lower()).strip("_")
        name = re.sub(BATCH_SUFFIX, "", name).strip("_")
        if name and not re.fullmatch(r"[0-9_]+", name) and name not in BATCH_FOLDERS:
            return name
    return "dataset"


def _ingest_path(data: Path, out: Path) -> str:
    """``data`` relative to ``out`` when it lies below ``out`` or its parent, else absolute."""
    rel = Path(os.path.relpath(data, out))
    if rel.parts[:2] == ("..", "..") or rel.is_absolute():
        return data.as_posix()
    return rel.as_posix()


# --------------------------------------------------------------------------- scaffold


def scaffold(
    data: str,
    out: str,
    *,
    sample_rows: int = 1000,
    force: bool = False,
    label: str | None = None,
) -> ScaffoldResult:
    """Writes a draft ``schema.yaml`` and ``config.yaml`` for ``data`` into ``out``.

    Reads the first ``sample_rows`` rows of ``data`` once, without Spark, guesses each
    column's type, nullability and role, and writes both files as commented drafts (every guess
    carries a ``# guessed:`` comment). The config inherits ``ml-engine:defaults`` and names the
    data relative to ``out`` when it lies below ``out`` or beside it.

    Args:
        data: a ``.csv``/``.tsv`` (optionally ``.gz``), ``.json``/``.jsonl``/``.ndjson``
            (JSON lines, optionally ``.gz``) or ``.parquet`` file, or a directory of files of
            one of these formats (hidden files, starting with ``.`` or ``_``, are ignored as
            Spark ignores them).
        out: the directory to write to (created when missing).
        sample_rows: how many rows to read (from the first files, in name order).
        force: overwrite existing ``schema.yaml`` / ``config.yaml`` in ``out``.
        label: the column to predict, when its name is not one the guess recognises (its
            task, classification or regression, is still guessed from its values).

    Returns:
        The paths written, the guesses, warnings and the next steps to print.

    Raises:
        ScaffoldError: ``data`` is missing, empty, of an unknown format, a directory with no
            data files or several formats or different columns per file; ``sample_rows`` is
            below 1; a file to write exists and ``force`` is not set; or ``label`` is not
            a column of the data.
    """
    if sample_rows < 1:
        raise ScaffoldError(f"sample_rows must be at least 1, got {sample_rows}")
    source = Path(data).expanduser().resolve()
    target = Path(out).expanduser().resolve()
    schema_path, config_path = target / SCHEMA_FILE, target / CONFIG_FILE
    existing = [p for p in (schema_path, config_path) if p.exists()]
    if existing and not force:
        raise ScaffoldError(
            f"{' and '.join(map(str, existing))} already exist{'s' if len(existing) == 1 else ''}; "
            f"pass --force to overwrite, or choose another --out directory"
        )
    fmt, files = _data_files(source)
    sample = _sample(fmt, files, sample_rows)
    if fmt == "csv":
        _read_number_text(sample)
    else:
        _name_for_tables(sample.columns)
    if label is not None:  # the name in the data given for a renamed column
        label = next((c.name for c in sample.columns if c.renamed_from == label), label)
    cols = [_typed(c) for c in sample.columns]
    names = [c.name for c in cols]
    if label is not None and label not in names:
        # A name holding what was typed (prio -> priority_level), else the closest spelling.
        holding = [n for n in names if label.lower() in n.lower()]
        close = holding if len(holding) == 1 else difflib.get_close_matches(label, names, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ScaffoldError(
            f"--label '{label}' is not a column of {source}; {hint}its columns: {', '.join(names)}"
        )
    roles = _guess_roles(cols, sample.rows, label)
    class_scores = _class_score_columns(cols, roles)
    name = _dataset_name(source)
    today = date.today().isoformat()
    warnings = list(sample.warnings)

    guesses: list[ColumnGuess] = []
    lines: list[tuple[str, str]] = []
    required = {roles.record_id, roles.key, roles.event_time}
    raw_paths = {c.name: c.path for c in sample.columns}
    for c in cols:
        col_roles = roles.roles[c.name]
        # The record id, the entity key and the event time are never nullable: ingest
        # quarantines the few rows sampled without one (with their reason) instead of loading
        # records that cannot be told apart, grouped by entity or placed in time.
        nullable = c.name not in required
        parts = [c.type_reason, roles.reasons[c.name]]
        empty = (
            f"{c.nulls} of the {sample.rows} sampled rows {'has' if c.nulls == 1 else 'have'} "
            f"no value"
        )
        if not nullable and c.nulls:
            parts.append(f"{empty} -> not nullable: ingest will quarantine such rows")
        elif not nullable:
            parts.append("never empty -> not nullable")
        path = raw_paths.get(c.name, ())
        if c.renamed_from is not None and fmt == "csv":
            parts.append(f"header {c.renamed_from!r} renamed")
        elif path:
            inside = " in ".join(repr(k) for k in reversed(path[:-1]))
            parts.append(f"field {path[-1]!r} of object {inside}, read by its input_name")
        elif c.renamed_from is not None:
            parts.append(f"{_FIELD[fmt]} {c.renamed_from!r} renamed, read by its input_name")
        if c.note:
            parts.append(c.note)
            warnings.append(f"column '{c.name}': {c.note}")
        reason = _one_line("; ".join(parts))
        input_name = list(path) if path else c.renamed_from if fmt != "csv" else None
        lines.append((_column_line(c, col_roles, nullable, input_name), f"guessed: {reason}"))
        guesses.append(ColumnGuess(c.name, c.type, tuple(col_roles), c.format, nullable, reason))

    schema_header = [
        f"Draft schema written by `ml-engine init` on {today} from {source} ({fmt}): types, "
        f"nullability and roles are guessed from its first {sample.rows} rows.",
        "Check every '# guessed:' comment, then add the constraints your data must meet "
        'under a column\'s constraints key (constraints: {min: 0, max: 100}, {allowed: ["yes", '
        '"no"]} with text values quoted, {pattern: "C[0-9]+"}); the format is described in '
        "README.md, 'Adapting config and schema'.",
    ]
    if roles.label is None:
        schema_header.append(
            "No label was recognised (no column named label, target, y, class or outcome, nor "
            "a two-valued churn/fraud/failure/conversion/... or is_* flag): give the column to "
            "predict `role: label`."
        )
    schema_text = "\n".join(
        [*_comment_block(schema_header), f"name: {_scalar(name)}", "columns:", *_aligned(lines)]
    )

    warnings += _job_warnings(cols, roles)

    def was(c: _Typed) -> str:
        return (
            f"the header's '{c.renamed_from}'"
            if fmt == "csv"
            else f"the {_FIELD[fmt]} '{c.renamed_from}'"
        )

    kept = (
        "the CSV files keep their header: ingest reads them by position"
        if fmt == "csv"
        else f"the files keep it: ingest reads the {_FIELD[fmt]} by its input_name"
    )
    warnings += [
        f"column '{c.name}': {was(c)} is a name a model output takes, so the schema names it "
        f"otherwise ({kept})"
        for c in cols
        if (c.renamed_from or "").strip() in RESERVED_COLUMNS
    ]
    warnings += [
        f"column '{c.name}': {was(c)} is the name the model's probability of class {value!r} "
        f"of label '{roles.label}' takes, so the schema names it otherwise ({kept})"
        for c, value in class_scores
    ]

    config_text = _config_text(source, target, fmt, sample, cols, roles, name, today)
    target.mkdir(parents=True, exist_ok=True)
    schema_path.write_text(schema_text + "\n", encoding="utf-8")
    config_path.write_text(config_text, encoding="utf-8")

    next_steps = "\n".join(
        [
            f"Wrote a draft schema and config from {sample.rows} rows of {source}:",
            f"  {schema_path}",
            f"  {config_path}",
            "Review every '# guessed:' line of the schema (types, roles, nullable) and add "
            "what belongs to this dataset to the config (clean rules, outlier detectors, "
            "features, model settings).",
            "Then run every job:",
            f"  ml-engine run pipeline --config {config_path}",
            "or one at a time, in this order:",
            *(
                f"  ml-engine run {job} --config {config_path}"
                for job in (
                    "ingest",
                    "clean",
                    "detect_outliers",
                    "build_features",
                    "build_training_set",
                    "train",
                    "score",
                    "drift_report",
                )
            ),
        ]
    )
    return ScaffoldResult(
        schema_path=str(schema_path),
        config_path=str(config_path),
        data_format=fmt,
        rows_sampled=sample.rows,
        guesses=tuple(guesses),
        warnings=tuple(warnings),
        next_steps=next_steps,
    )


def _job_warnings(cols: list[_Typed], roles: _Roles) -> list[str]:
    """What the user must add before a job can run on the scaffolded config."""
    out: list[str] = []
    if roles.event_time is None:
        out.append(
            "no date/time column was found: the jobs take the time ingest loads a row "
            "(`ingested_at`) as its event time, so window aggregates count the rows that "
            "arrived in the window and each label is paired with its own row's features. If "
            "one of the columns holds when each row happened in a format not detected, give it "
            "`type: timestamp`, its `format` and `role: event_time` in schema.yaml."
        )
    if roles.key is None:
        out.append(
            "no entity key was found: build_features and build_training_set need a column "
            "with role key (the entity each row is about, e.g. a customer id); give one column "
            "`role: key` in schema.yaml (`role: [record_id, key]` when each row is its own "
            "entity)."
        )
    if roles.record_id is None:
        out.append(
            "no record id was found: config.yaml sets clean.dedup to exact (drop rows equal in "
            "every column) instead of keeping the latest row per record id."
        )
    if roles.label is None:
        out.append(
            "no label was recognised: build_training_set and train need the column to predict "
            "with role label; rerun init with --label COLUMN, or give it `role: label` in "
            "schema.yaml and set train.task (classification or regression) in config.yaml."
        )
    elif roles.label_candidates:
        out.append(
            f"label: '{roles.label}' was chosen; {roles.label_candidates} also look like labels. "
            f"Keep one `role: label` in schema.yaml."
        )
    if not any(ROLE_NUMERIC in roles.roles[c.name] for c in cols):
        out.append(
            "no numeric feature was found: config.yaml sets outliers.detectors: [] (no outlier "
            "detection); give numeric columns `role: numeric_feature` in schema.yaml and remove "
            "that line to check them."
        )
    return out


#: A class below this share of the labelled sample gets ``train.class_weight: balanced``.
RARE_CLASS_SHARE = 0.2


def _rare_class(label: _Typed) -> tuple[Any, int, int] | None:
    """(value, count, sampled labels) of the label's least frequent class when it is below
    :data:`RARE_CLASS_SHARE` of the sampled labels; None otherwise."""
    counts = Counter(label.values)
    if len(counts) < 2:
        return None
    value, n = min(counts.items(), key=lambda kv: (kv[1], str(kv[0])))
    return (value, n, len(label.values)) if n < RARE_CLASS_SHARE * len(label.values) else None


# Values that mean "yes" in a two-class label: the class the binary metrics are about.
_YES_WORDS = frozenset(
    {"yes", "y", "true", "t", "1", "ja", "j", "oui", "si", "sí", "sim", "da", "tak", "positive"}
)


def _positive_class(label: _Typed, roles: _Roles) -> tuple[str, str] | None:
    """(the class, the other) of a two-class label whose class that means yes (``ja``,
    ``oui``) is not the alphabetically last one, which the model takes as the positive class
    by default; else None. Values as clean leaves them (trimmed, lower-cased when spelled in
    both cases)."""
    lower = bool(_case_spellings(label, roles))
    classes = sorted({_class_name(v).strip() for v in label.values})
    classes = sorted({c.lower() for c in classes}) if lower else classes
    yes = [c for c in classes if c.lower() in _YES_WORDS]
    if len(classes) != 2 or len(yes) != 1 or yes[0] == classes[-1]:
        return None
    return yes[0], classes[-1]


def _case_spellings(col: _Typed, roles: _Roles) -> list[str]:
    """Two sampled spellings of one value that differ only in case (after clean's trim), for
    a categorical feature or a text label; empty when there are none."""
    wanted = ROLE_CATEGORICAL in roles.roles[col.name] or col.name == roles.label
    if not wanted or col.type != "string" or col.coerce:
        return []
    seen: dict[str, str] = {}
    for v in sorted({v.strip() for v in col.values}):
        if v.lower() in seen:
            return [seen[v.lower()], v]
        seen[v.lower()] = v
    return []


#: The most numeric features a drafted window aggregates.
WINDOW_COLUMNS = 3
_PART_WORDS = {"hour": "hour", "dayofweek": "day of the week"}


def _feature_lines(cols: list[_Typed], roles: _Roles) -> list[tuple[str, str]]:
    """The features a draft config starts with, from the guessed roles: the event time's
    hour and weekday, and with an entity key other than the record id, per-entity windows
    over the first :data:`WINDOW_COLUMNS` numeric features. None without an event time."""
    if roles.event_time is None:
        return []
    event = next(c for c in cols if c.name == roles.event_time)
    parts = ["hour", "dayofweek"] if event.type == "timestamp" else ["dayofweek"]
    lines = [
        ("features:", "guessed from the roles in schema.yaml; remove what you do not want"),
        ("  date_parts:", ""),
        (
            f"    {_scalar(event.name)}: [{', '.join(parts)}]",
            " and ".join(_PART_WORDS[part] for part in parts)
            + " of the event time as features: "
            + ", ".join(f"{event.name}_{part}" for part in parts),
        ),
    ]
    # (a numeric feature clean coerces is text in the schema, a number in silver)
    numeric = [c.name for c in cols if ROLE_NUMERIC in roles.roles.get(c.name, [])][:WINDOW_COLUMNS]
    if roles.key is None or roles.key == roles.record_id or not numeric:
        return lines
    return lines + [
        (
            "  windows:",
            f"per {roles.key} (the entity key): its rows in the days up to each row's {event.name}",
        ),
        (f"    columns: [{', '.join(_scalar(n) for n in numeric)}]", ""),
        ("    days: [7, 30]", ""),
        (
            "    aggs: [count, mean, max]",
            f"{len(numeric) * 6} columns, {numeric[0]}_count_7d to {numeric[-1]}_max_30d",
        ),
    ]


def _config_text(
    source: Path,
    target: Path,
    fmt: str,
    sample: _Sample,
    cols: list[_Typed],
    roles: _Roles,
    name: str,
    today: str,
) -> str:
    header = _comment_block(
        [
            f"Draft config written by `ml-engine init` from {source} on {today}. Paths are "
            f"relative to this file.",
            "It builds on the engine's packaged defaults; add what belongs to this dataset "
            "below (clean rules, outlier detectors, features, model settings: see README.md, "
            "'Adapting config and schema').",
        ]
    )
    lines: list[tuple[str, str]] = [
        ("inherits: ml-engine:defaults", ""),
        (f"schema: {SCHEMA_FILE}", "the draft schema written next to this file"),
        ("storage:", ""),
        ("  root: work", "tables, models and reports go to <this directory>/work"),
        ("ingest:", ""),
        (f"  path: {_scalar(_ingest_path(source, target))}", "the data `ml-engine init` read"),
        (f"  format: {fmt}", ""),
    ]
    csv_opts: list[tuple[str, str]] = []
    if fmt == "csv" and sample.delimiter != ",":
        csv_opts.append(
            (
                f"    delimiter: {_scalar(sample.delimiter)}",
                f"{_DELIMITER_NAMES[sample.delimiter]}, detected in the header line",
            )
        )
    if sample.decimal_comma is not None:
        column, value = sample.decimal_comma
        csv_opts.append(
            ('    decimal: ","', f"decimal comma, detected in column '{column}' (e.g. {value})")
        )
    if sample.signs is not None:
        column, value = sample.signs
        csv_opts.append(
            (
                "    strip_signs: true",
                f"currency or percent signs, detected in column '{column}' (e.g. {value})",
            )
        )
    if sample.thousands is not None:
        separator, column, value = sample.thousands
        csv_opts.append(
            (
                f"    thousands: {_scalar(separator)}",
                f"{_SEPARATOR_NAMES[separator]} group thousands, detected in column '{column}' "
                f"(e.g. {value})",
            )
        )
    if sample.encoding != "utf-8":
        csv_opts.append(
            (f"    encoding: {sample.encoding}", "the sample is not valid UTF-8 (Latin-1 assumed)")
        )
    if csv_opts:
        lines += [("  csv:", "also applies to JSON" if fmt == "json" else ""), *csv_opts]
    for type_, key in (("timestamp", "timestamp_format"), ("date", "date_format")):
        found = [c for c in cols if c.type == type_ and c.format]
        if found:
            first = next((c for c in found if c.name == roles.event_time), found[0])
            lines.append(
                (
                    f"  {key}: {_scalar(first.format)}",
                    f"detected in column '{first.name}' (the format schema.yaml gives a "
                    f"column wins)",
                )
            )
    clean: list[tuple[str, str]] = []
    if roles.record_id is None:
        clean.append(
            (
                "  dedup: exact",
                "no record id: latest_by_key would keep one row per "
                + (f"'{roles.key}'" if roles.key else "key"),
            )
        )
    coerced = [c for c in cols if c.coerce]
    if coerced:
        clean.append(("  coerce:", "text columns cast to numbers; what does not cast is null"))
        clean += [
            (
                f"    {_scalar(c.name)}: {c.coerce}",
                f"{len(c.odd)} of {len(c.values) + len(c.odd)} sample values are not numbers, "
                f"e.g. {_scalar(c.odd[0])}",
            )
            for c in coerced
        ]
    cased = [(c, spellings) for c in cols if (spellings := _case_spellings(c, roles))]
    if cased:
        clean.append(("  case:", "categories written in upper and lower case made one"))
        clean += [
            (
                f"    {_scalar(c.name)}: lower",
                f"{len({v.strip() for v in c.values})} spellings of "
                f"{len({v.strip().lower() for v in c.values})} values, e.g. "
                + ", ".join(_scalar(v) for v in spellings),
            )
            for c, spellings in cased
        ]
    if clean:
        lines += [("clean:", ""), *clean]
    if not any(ROLE_NUMERIC in roles.roles[c.name] for c in cols):
        lines += [
            ("outliers:", ""),
            ("  detectors: []", "no numeric column to check: no outlier detection"),
        ]
    lines += _feature_lines(cols, roles)
    lines += [
        ("mlflow:", ""),
        (f"  experiment: {_scalar(name)}", ""),
        (f"  registered_model: {_scalar(name + '-model')}", ""),
    ]
    if roles.label is not None:
        label = next(c for c in cols if c.name == roles.label)
        task, distinct = _task(label)
        lines += [
            ("train:", ""),
            (f"  task: {task}", f"label '{label.name}' has {distinct} in the sample"),
        ]
        rare = _rare_class(label) if task == "classification" else None
        if rare is not None:
            value, n, sampled = rare
            why = (
                f"the rarest class, {_scalar(value)}, is {n} of {sampled} sampled labels "
                f"({n / sampled:.1%}): weighted up so the model does not ignore it"
            )
            if n * TOLERATED_SHARE <= sampled:
                why += "; if it is a typo, not a class, list the label's allowed values"
            lines.append(("  class_weight: balanced", why))
        positive = _positive_class(label, roles) if task == "classification" else None
        if positive is not None:
            positive, other = positive
            lines.append(
                (
                    f"  positive_class: {_scalar(positive)}",
                    f"'{positive}' means yes: precision, recall, F1 and the score output are "
                    f"about it (else about '{other}', the alphabetically last class)",
                )
            )
        if task == "regression":
            metric = "r2"
        else:
            metric = "auc_roc" if label.distinct <= 2 else "f1"
        lines.append(
            (
                f"  # gate_thresholds: {{{metric}: 0.7}}",
                "none set: the first model trained becomes champion whatever it scores; "
                "set the least a model must reach",
            )
        )
    else:
        lines.append(
            ("# train: {task: classification}", "set once schema.yaml gives a column role label")
        )
    return "\n".join([*header, *_aligned(lines, cap=40)]) + "\n"
