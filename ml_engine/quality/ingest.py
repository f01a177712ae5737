r"""Ingest: raw files -> ``bronze`` (a typed copy of every parseable row) + ``quarantine``.

What ingest enforces, and nothing more (schema constraints such as min/max/allowed/pattern
become rules in the clean job):

* the field count of a CSV record (Spark's PERMISSIVE parser puts records with too few or too
  many fields in the corrupt-record column), and well-formed JSON records;
* that every typed column parses: numbers, ints, booleans with ``try_cast`` (CSV numbers
  with a decimal comma, ``1.234,5``, under ``ingest.csv.decimal: ","``, with thousands
  grouped, ``1,234.5``, under ``ingest.csv.thousands``, with a currency or percent sign,
  ``$5``, ``12%``, under ``ingest.csv.strip_signs``), timestamps and dates with the column's
  ``format`` or ``ingest.timestamp_format`` / ``ingest.date_format``;
* that non-nullable columns are present;
* valid UTF-8: a field holding U+FFFD after decoding had bytes that are not valid in the
  file's encoding (``ingest.csv.encoding``).

Every input record ends in exactly one of the two outputs: input records = bronze rows +
quarantine rows. Each quarantine row says why in ``reason`` (all problems of the row,
``"; "``-separated, columns in schema order), e.g.::

    column amount: 'abc' is not a double
    expected 12 fields, found 11 (check ingest.csv.delimiter and the file's columns)
    column event_time: '2026-13-45' does not match timestamp format yyyy-MM-dd HH:mm:ss
    column customer_id: null but declared non-nullable

CSV records and lines. By default (``ingest.csv``: ``multiline: true``, ``escape`` equal to
``quote``) files are read as RFC 4180 says: a quoted field may hold delimiters, line breaks
and doubled quotes (``"gro""cery"`` is ``gro"cery``), so one record may span several
physical lines. A *physical line* is what a line reader yields: text ended by ``\n``,
``\r\n`` or ``\r`` (or by the end of a file that does not end with a line break). A
*blank line* is a physical line that is empty or holds only characters up to U+0020 (space,
tab, ``\r``, control characters: what Java's ``trim`` removes) outside any quoted field; it
is not a record (Spark's line reader skips it; with ``multiline`` a whitespace-only line
that Spark returns as a record of one field is dropped here) and is counted instead. The
*raw lines* of a batch are the physical lines of its files without the header lines (one
per file with ``header``: the first non-blank line; with ``multiline`` the first non-empty
one, as Spark takes it). Then, exactly::

    raw_lines = bronze_lines + quarantined_lines + blank_lines

where ``bronze_lines``/``quarantined_lines`` are the physical lines of the records that went
to each output (a record spanning three lines counts three). :func:`run_ingest` reports all
of them; ``raw_lines`` and the whitespace-only lines come from a plain text read of the same
files (:func:`read_line_counts`), the record lines from the parsed records, so the identity
is a check between two independent reads. It holds for any file whose quotes are balanced,
and for unbalanced ones too (a record then runs to the next quote or the end of the file
and is counted with all its lines), except in two corner cases of the multi-line reader:
an unclosed quote in the last field at the very end of a file that ends with a line break,
and a one-column (or whitespace-delimited) file holding a quoted whitespace-only record.

``raw_record`` of a quarantine row is the original record (all its lines) for a CSV record
that could not be split into fields (Spark's corrupt record), else the row's raw text fields
joined again with ``to_csv`` (same delimiter, quote and escape: the original record unless
it used optional quoting; for a file read by its header, its declared fields in the schema's
order). For JSON it is the original text of a malformed record, else
``to_json`` of the raw fields; for Parquet ``to_json`` of the row. ``record_key`` is the
record id (or, when the schema declares none, the entity key) of rows whose fields could be
split.

Spark notes: compressed files (``.gz``, ``.bz2`` and Hadoop's other codecs) are decompressed
by their extension, both by the CSV reader and by the line count; a compressed file is read
in one task. ``try_cast`` accepts what Spark's cast accepts, e.g. surrounding blanks,
``NaN``, ``Infinity`` and a trailing ``d``/``f`` on doubles (``'1.5d'``), but not ``'3.5'``
for an int.
"""

from __future__ import annotations

import bz2
import codecs
import dataclasses
import functools
import gzip
import json
import os
import urllib.parse
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import Column, DataFrame, DataFrameReader, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import Config, CsvOptions, IngestConfig
from ml_engine.preflight import PARQUET_FILES_CHECKED
from ml_engine.quality.quarantine import quarantine_rows
from ml_engine.quality.schema_change import added_note, columns_to_add
from ml_engine.results import JobError, JobResult
from ml_engine.schemas import (
    EPOCH_UNITS,
    PLAIN_NUMBERS,
    ColumnSpec,
    NumberText,
    TableSchema,
    article,
    csv_column_names,
    csv_name,
    epoch_timestamp,
    grouped_by_commas,
)
from ml_engine.session import describe
from ml_engine.tables.base import (
    BATCH_COLUMN,
    INGESTED_AT_COLUMN,
    META_COLUMNS,
    SOURCE_FILE_COLUMN,
    DeltaTables,
    quote_name,
)

CORRUPT_COLUMN = "_corrupt_record"
INGEST_STAGE = "ingest"
REPLACEMENT_CHAR = "\ufffd"

# Columns of the intermediate parsed frame (besides the typed schema columns).
_REASON = "_reason"
_RAW_RECORD = "_raw_record"
_RECORD_KEY = "_record_key"
_LINES = "_lines"  # physical lines of the record
_BLANK_LINES = "_blank_lines"  # whitespace-only physical lines inside the record (quoted)
# Of a CSV read whose files differ in their columns: the fields of each line's file.
FILE_FIELDS = "_file_fields"

# A physical line break, as Hadoop's line reader (and Python's bytes.splitlines) see them.
LINE_BREAK = r"\r\n|\r|\n"
# A line Spark's CSV line reader skips: empty or only characters <= U+0020 (Java's trim).
# \z, not $: Java's $ also matches before a final line terminator such as U+0085.
WHITESPACE_ONLY = r"^[\x00-\x20]*\z"
# Encodings whose line breaks are not the single bytes \n and \r: lines are counted by
# decoding whole files.
WIDE_ENCODINGS = ("utf-16", "utf-32")
# With multiline, a file's header record is looked for in its first lines (empty lines
# before it included); a longer header counts as this many lines.
HEADER_SCAN_LINES = 32


def raw_struct(schema: TableSchema, fmt: str = "csv") -> T.StructType:
    """The all-string read schema of ``schema`` (plus the corrupt-record column for CSV/JSON).

    Args:
        schema: the declared input schema.
        fmt: ``csv``, ``json`` or ``parquet``.
    """
    if fmt == "json":
        fields = _string_fields([c.input_path for c in schema.columns])
    else:
        fields = [T.StructField(c.name, T.StringType(), True) for c in schema.columns]
    if fmt in ("csv", "json"):
        fields.append(T.StructField(CORRUPT_COLUMN, T.StringType(), True))
    return T.StructType(fields)


def _read_csv(
    reader: DataFrameReader, paths: str | list[str], struct: T.StructType, options: CsvOptions
) -> DataFrame:
    """CSV files read into the all-string ``struct``, fields taken by position."""
    return (
        reader.schema(struct)
        .options(
            header=str(options.header).lower(),
            sep=options.delimiter,
            encoding=options.encoding,
            quote=options.quote,
            escape=options.escape,
            multiLine=str(options.multiline).lower(),
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=CORRUPT_COLUMN,
            enforceSchema="true",
        )
        .csv(paths)
    )


def shifted_header(file: str, header: Sequence[str], schema: TableSchema) -> str | None:
    """Why a CSV file cannot be read, when its header lacks a schema column and names a
    declared one at another field than the schema's, with as many fields as the schema
    declares (a column dropped and another added): read by position, values would load under
    other columns' names; None otherwise (a header renamed by hand keeps every field it shares
    with the schema in the schema's place)."""
    declared = [csv_name(c.read_as).lower() for c in schema.columns]
    names = [n.lower() for n in header]
    lacking = [c.name for c, d in zip(schema.columns, declared, strict=True) if d not in names]
    if not lacking or len(names) != len(declared):
        return None
    moved = [
        (c.name, names.index(d) + 1, i + 1)
        for i, (c, d) in enumerate(zip(schema.columns, declared, strict=True))
        if d in names and names.index(d) != i
    ]
    if not moved:
        return None
    name, at, where = moved[0]
    return (
        f"{file}: the header lacks {lacking} and names {[m[0] for m in moved]} at other "
        f"fields than schema '{schema.name}' ({schema.source}) declares them ({name}: field "
        f"{at} in the file, {where} in the schema); read by position, its values would load "
        "under other columns' names. Make the files and the schema file agree (a column "
        "added or dropped: add or remove it in the schema file)"
    )


def _by_header(
    spark: SparkSession, df: DataFrame, schema: TableSchema, options: CsvOptions
) -> tuple[DataFrame, list[str]]:
    """``df`` with the files whose header names every schema column, in another order or
    beside columns the schema does not declare, read by their header; and notes on the
    files whose header does not name the schema's columns.

    A positional read would put one column's values under another's name (two numeric
    columns swapped load without an error), and a file with one more column than the schema
    would have all its lines quarantined. Header names compare as ``ml-engine init`` writes
    them (:func:`csv_column_names`), ignoring case. A file read by its header leaves its
    undeclared columns out (a note names them). Files whose header is the schema's order, or
    lacks a schema name, stay read by position (a schema renamed by hand keeps working; a
    file missing a column has its lines quarantined, and when its field count differs a
    note names the columns it lacks and has). Reads each file's first line on the driver.
    The read frame has ``FILE_FIELDS`` (each file's field count) when a file is read by its
    header."""
    if not options.header or len(options.delimiter) != 1:
        return df, []
    declared = [csv_name(c.read_as).lower() for c in schema.columns]
    by_name = {d: c.name for d, c in zip(declared, schema.columns, strict=True)}
    uris = sorted(df.inputFiles())
    files = [urllib.parse.unquote(uri) for uri in uris]  # as spark.read takes them
    orders: dict[tuple[str, ...], list[str]] = {}
    undeclared: dict[tuple[str, ...], list[str]] = {}
    unmatched: dict[tuple[int, tuple[str, ...], tuple[str, ...]], list[str]] = {}
    for uri, file in zip(uris, files, strict=True):
        line = _first_line(spark, uri, options.encoding)
        header = csv_column_names(line or "", options.delimiter, options.quote)[0]
        names = [n.lower() for n in header]
        if not line or names == declared:
            continue
        shifted = shifted_header(_file_name(file), header, schema)
        if shifted:
            raise ValueError(shifted)
        extra = tuple(h for h, n in zip(header, names, strict=True) if n not in by_name)
        lacking = tuple(by_name[d] for d in declared if d not in names)
        if not lacking:
            orders.setdefault(tuple(names), []).append(file)
            if extra:
                undeclared.setdefault(extra, []).append(_file_name(file))
        elif len(names) != len(declared):
            unmatched.setdefault((len(names), lacking, extra), []).append(_file_name(file))
    notes = [
        _not_loaded(f"{_shown(set(group))}: column(s) {list(extra)} of the header", schema)
        for extra, group in undeclared.items()
    ]
    notes += [
        f"ingest: {_shown(set(group))}: the header names {fields} columns where schema "
        f"'{schema.name}' ({schema.source}) declares {len(declared)}: it lacks {list(lacking)}"
        + (f" and has {list(extra)}, which the schema does not declare" if extra else "")
        + "; its lines were read by position. Make the files and the schema file agree"
        for (fields, lacking, extra), group in unmatched.items()
    ]
    if not orders:
        return df, notes
    reordered = {f for group in orders.values() for f in group}
    groups = [(tuple(declared), [f for f in files if f not in reordered]), *orders.items()]
    parts = []
    for names, group in groups:
        if not group:
            continue
        struct = T.StructType(
            [
                T.StructField(by_name.get(n, f"_undeclared_{i}"), T.StringType(), True)
                for i, n in enumerate(names)
            ]
            + [T.StructField(CORRUPT_COLUMN, T.StringType(), True)]
        )
        part = _read_csv(spark.read, group, struct, options)
        parts.append(
            part.select(
                *[c.name for c in schema.columns],
                CORRUPT_COLUMN,
                F.col("_metadata.file_path").alias(SOURCE_FILE_COLUMN),
                F.lit(len(names)).alias(FILE_FIELDS),
            )
        )
    return functools.reduce(DataFrame.unionByName, parts), notes


def _string_fields(paths: list[tuple[str, ...]]) -> list[T.StructField]:
    """String fields that read the keys ``paths`` lead to: a path of several keys reads a
    field of a nested object, into a struct of the fields read from that object."""
    tree: dict[str, dict] = {}
    for path in paths:
        node = tree
        for key in path:
            node = node.setdefault(key, {})

    def fields(node: dict[str, dict]) -> list[T.StructField]:
        return [
            T.StructField(k, T.StructType(fields(inner)) if inner else T.StringType(), True)
            for k, inner in node.items()
        ]

    return fields(tree)


def _field_paths(struct: T.StructType, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The paths (lower case) of ``struct``'s fields, and of its structs' fields."""
    paths: set[tuple[str, ...]] = set()
    for f in struct.fields:
        path = (*prefix, f.name.lower())
        paths.add(path)
        if isinstance(f.dataType, T.StructType):
            paths |= _field_paths(f.dataType, path)
    return paths


def _undeclared_json_keys(
    spark: SparkSession, df: DataFrame, schema: TableSchema, encoding: str
) -> list[str]:
    """Notes naming the keys of each JSON file's first record that the schema does not
    declare (Spark's read leaves them out); one line per file read on the driver."""
    declared = {c.input_path for c in schema.columns}  # Spark matches JSON keys by exact name
    undeclared: dict[tuple[str, ...], set[str]] = {}
    for uri in sorted(df.inputFiles()):
        try:
            record = json.loads(_first_line(spark, uri, encoding) or "")
        except ValueError:
            continue
        if isinstance(record, dict):
            extra = tuple(_undeclared_keys(record, declared))
            if extra:
                undeclared.setdefault(extra, set()).add(_file_name(uri))
    return [
        _not_loaded(f"{_shown(group)}: key(s) {list(extra)} of the first record", schema)
        for extra, group in undeclared.items()
    ]


def _undeclared_keys(
    record: dict, declared: set[tuple[str, ...]], prefix: tuple[str, ...] = ()
) -> Iterator[str]:
    """The keys of ``record`` (``user.id`` inside a nested object whose other fields are
    declared) that no declared path reads."""
    for key, value in record.items():
        path = (*prefix, key)
        if path in declared:
            continue
        inner = any(p[: len(path)] == path for p in declared)
        if inner and isinstance(value, dict):
            yield from _undeclared_keys(value, declared, path)
        elif not inner:
            yield ".".join(path)


def _not_loaded(subject: str, schema: TableSchema) -> str:
    """The note on input columns ``subject`` names that the schema does not declare."""
    return (
        f"ingest: {subject} are not in schema '{schema.name}' ({schema.source}) and were not "
        "loaded; declare them in the schema file to load them"
    )


# Local files with these extensions are read in Python (any other extension: uncompressed);
# Hadoop's other codecs (.deflate, .lz4, .snappy, .zst) go through the JVM.
_LOCAL_OPENERS = {".gz": gzip.open, ".bz2": bz2.open}
_JVM_CODECS = {".deflate", ".lz4", ".snappy", ".zst", ".zstd"}


def _first_line(spark: SparkSession, uri: str, encoding: str) -> str | None:
    """The first line of a file (a URI as Spark lists it), decompressed by its extension;
    None for an empty file.

    Local files are read in Python (microseconds each, so a batch of thousands of small files
    costs no noticeable time); other locations and codecs through Hadoop's file system in the
    JVM, like Spark's own read (milliseconds each)."""
    parts = urllib.parse.urlsplit(uri)
    path = urllib.parse.unquote(parts.path)
    suffix = os.path.splitext(path)[1].lower()
    if parts.scheme in ("", "file") and suffix not in _JVM_CODECS:
        try:
            codecs.lookup(encoding)
        except LookupError:  # a Java charset name Python does not know
            pass
        else:
            opener = _LOCAL_OPENERS.get(suffix, open)
            with opener(path, "rt", encoding=encoding, errors="replace", newline="") as handle:
                line = handle.readline()
            return line.rstrip("\r\n") if line else None
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path = jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri))
    stream = hadoop_path.getFileSystem(conf).open(hadoop_path)
    try:
        codec = jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(conf).getCodec(
            hadoop_path
        )
        if codec is not None:
            stream = codec.createInputStream(stream)
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, encoding))
        return reader.readLine()
    finally:
        stream.close()


def read_raw(
    spark: SparkSession,
    path: str,
    fmt: str,
    schema: TableSchema,
    options: CsvOptions | None = None,
) -> DataFrame:
    """Reads raw input without type inference: :func:`read_input` without its notes."""
    return read_input(spark, path, fmt, schema, options)[0]


def read_input(
    spark: SparkSession,
    path: str,
    fmt: str,
    schema: TableSchema,
    options: CsvOptions | None = None,
) -> tuple[DataFrame, list[str]]:
    """Reads raw input without type inference, with notes on columns it left out.

    CSV and JSON are read with :func:`raw_struct` (every declared column as a string),
    ``mode=PERMISSIVE`` and ``columnNameOfCorruptRecord``; for CSV, header, delimiter,
    encoding, quote, escape and multiline come from ``options`` (``ingest.csv``) and fields
    are taken by position (``enforceSchema``: the header line is skipped), except in files
    whose header names every declared column in another order or beside undeclared ones
    (:func:`_by_header`).
    Compressed files are decompressed by their extension (``.gz``, ``.bz2``).
    Parquet is read with its own schema and must contain every declared column.

    Args:
        spark: the session.
        path: a file, a directory or a glob.
        fmt: ``csv``, ``json`` or ``parquet``.
        schema: the declared input schema.
        options: CSV options (defaults of :class:`CsvOptions` when None); its ``encoding``
            also applies to JSON.

    Returns:
        The declared columns (strings for CSV/JSON, file types for Parquet), the corrupt
        record column for CSV/JSON, ``source_file`` (``_metadata.file_path``) and, for CSV
        files read by their header, ``FILE_FIELDS``; and the notes: the undeclared columns
        of CSV headers, JSON files' first records and Parquet files (not loaded), and CSV
        headers that lack declared columns and differ in their number.

    Raises:
        FileNotFoundError: nothing exists at ``path``.
        ValueError: ``fmt`` is unknown, or a Parquet input lacks a declared column (the
            message names the path, the column and the columns the files have).
    """
    options = options or CsvOptions()
    reader = spark.read
    notes: list[str] = []
    try:
        if fmt == "csv":
            df = _read_csv(reader, path, raw_struct(schema, "csv"), options)
            df, notes = _by_header(spark, df, schema, options)
        elif fmt == "json":
            df = (
                reader.schema(raw_struct(schema, "json"))
                .options(
                    mode="PERMISSIVE",
                    columnNameOfCorruptRecord=CORRUPT_COLUMN,
                    encoding=options.encoding,
                )
                .json(path)
            )
            notes = _undeclared_json_keys(spark, df, schema, options.encoding)
        elif fmt == "parquet":
            df = reader.parquet(path)
            # A TIMESTAMP(NANOS) column reads as a long: only a declared long needs the footers.
            longs = {f.name.lower() for f in df.schema if isinstance(f.dataType, T.LongType)}
            nanos = (
                nanosecond_columns(spark, df.inputFiles()[:PARQUET_FILES_CHECKED])
                if longs & {c.read_as.lower() for c in schema.columns}
                else set()
            )
            widest = _widest_numbers(df.schema)
            if widest != df.schema:
                # The schema Spark takes from one file's footer: a file storing a column in a
                # wider type (int64 beside int32, double beside float) would fail the read.
                df = reader.schema(widest).parquet(path)
        else:
            raise ValueError(f"unknown input format '{fmt}'; use csv, json or parquet")
    except AnalysisException as exc:
        if exc.getCondition() == "PATH_NOT_FOUND":
            raise FileNotFoundError(f"input path {path} does not exist") from None
        if exc.getCondition() == "UNABLE_TO_INFER_SCHEMA":
            raise ValueError(f"{fmt} input {path} holds no {fmt} files") from None
        raise
    if fmt == "parquet":
        present = _field_paths(df.schema)
        missing = [
            c.read_as
            for c in schema.columns
            if tuple(k.lower() for k in c.input_path) not in present
        ]
        if missing:
            raise ValueError(
                f"parquet input {path}: column(s) {missing} declared in schema "
                f"'{schema.name}' ({schema.source}) are missing; the files have columns "
                f"{df.columns}. Fix the files or the schema."
            )
        declared = {c.input_path[0].lower() for c in schema.columns}
        extra = [c for c in df.columns if c.lower() not in declared]
        if extra:
            notes.append(_not_loaded(f"column(s) {extra} of parquet input {path}", schema))
        cols = [
            (_from_nanos(_input(c)) if c.read_as.lower() in nanos else _input(c)).alias(c.name)
            for c in schema.columns
        ]
    elif fmt == "json":
        cols = [_input(c).alias(c.name) for c in schema.columns]
        cols.append(F.col(CORRUPT_COLUMN))
    else:
        cols = [F.col(c.name) for c in schema.columns] + [F.col(CORRUPT_COLUMN)]
    if FILE_FIELDS in df.columns:  # CSV files read by their header
        return df.select(*cols, SOURCE_FILE_COLUMN, FILE_FIELDS), notes
    return df.select(*cols, F.col("_metadata.file_path").alias(SOURCE_FILE_COLUMN)), notes


def _input(column: ColumnSpec) -> Column:
    """The input's column (or field of a struct column) that ``column`` is read from."""
    first, *inner = column.input_path
    value = F.col(quote_name(first))
    for key in inner:
        value = value.getField(key)
    return value


def nanosecond_columns(spark: SparkSession, files: list[str]) -> set[str]:
    """The columns (lower case) that any of the Parquet ``files`` stores as TIMESTAMP(NANOS),
    pandas' default unit, from their footers read through the session's Hadoop file system.
    The session reads them as their INT64 value (``spark.sql.legacy.parquet.nanosAsLong``,
    set by :data:`ml_engine.session.ENGINE_DEFAULTS`); :func:`_from_nanos` makes them
    timestamps."""
    jvm = spark.sparkContext._jvm
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    parquet = jvm.org.apache.parquet.hadoop
    found: set[str] = set()
    for file in files:
        source = parquet.util.HadoopInputFile.fromPath(
            jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(file)), conf
        )
        reader = parquet.ParquetFileReader.open(source)
        try:
            fields = reader.getFooter().getFileMetaData().getSchema().getFields()
        finally:
            reader.close()
        for field in fields:
            logical = field.getLogicalTypeAnnotation()
            if logical is not None and logical.toString().startswith("TIMESTAMP(NANOS"):
                found.add(field.getName().lower())
    return found


def _from_nanos(nanos: Column) -> Column:
    """A timestamp from nanoseconds since the epoch, truncated to Spark's microseconds (down,
    also before 1970). A TIMESTAMP(NANOS) not adjusted to UTC (pandas' naive timestamps) reads
    as that wall-clock time in UTC, the engine's session zone."""
    micros = F.floor(nanos.cast("decimal(20,0)") / F.lit(1000))  # exact, unlike a double
    return F.timestamp_micros(micros.cast("long"))


def _widest_numbers(schema: T.StructType) -> T.StructType:
    """``schema`` with whole numbers read as ``long`` and floats as ``double``: Parquet
    readers widen narrower stored types to these, so files of one batch may differ in width
    (ingest casts to the declared type afterwards, out-of-range values quarantined)."""

    def widest(t: T.DataType) -> T.DataType:
        if isinstance(t, (T.ByteType, T.ShortType, T.IntegerType)):
            return T.LongType()
        return T.DoubleType() if isinstance(t, T.FloatType) else t

    return T.StructType([T.StructField(f.name, widest(f.dataType), True) for f in schema.fields])


def read_line_counts(
    spark: SparkSession, path: str, options: CsvOptions | None = None
) -> DataFrame:
    """Counts the physical lines of CSV input with a plain text read (no CSV parsing).

    The same files as :func:`read_raw` (same listing, decompressed by extension) are read
    line by line with Spark's ``text`` source; a line's characters are tested as bytes, which
    is exact for the ASCII-compatible encodings (utf-8, us-ascii, iso-8859-1). UTF-16 and
    UTF-32 files are read whole (``wholetext``), decoded and split into lines, so each file
    must fit in a task's memory.

    Header lines (with ``options.header``), as Spark's CSV reader takes them: a file's first
    non-blank line; with ``options.multiline`` its first record, which starts at the first
    non-empty line (even a whitespace-only one) and runs over more lines while a quoted field
    is open (an odd number of quote characters so far). That record is looked for in the
    first :data:`HEADER_SCAN_LINES` lines of a file.

    Args:
        spark: the session.
        path: a file, a directory or a glob (as given to :func:`read_raw`).
        options: CSV options (defaults of :class:`CsvOptions` when None).

    Returns:
        One row: ``physical_lines`` (all lines of all files), ``header_lines`` and
        ``whitespace_lines`` (lines that are empty or whitespace-only, header lines left out;
        this includes whitespace-only lines inside quoted fields, which the parsed records
        count in ``_blank_lines``).

    Raises:
        FileNotFoundError: nothing exists at ``path``.
    """
    options = options or CsvOptions()
    encoding = options.encoding.lower()
    try:
        if encoding.startswith(WIDE_ENCODINGS):
            files = spark.read.text(path, wholetext=True).select(
                F.decode(F.col("value").cast("binary"), encoding).alias("text"),
                F.col("_metadata.file_path").alias("file"),
            )
            # The line reader yields no empty line after a final line break, nor for an
            # empty file.
            text = F.regexp_replace("text", rf"(?:{LINE_BREAK})\z", "")
            lines = files.select(
                "file",
                F.lit(0).cast("long").alias("start"),
                F.posexplode(
                    F.when(F.col("text") == "", F.array().cast("array<string>")).otherwise(
                        F.split(text, LINE_BREAK, -1)
                    )
                ).alias("pos", "line"),
            )
        else:
            lines = spark.read.text(path).select(
                F.col("_metadata.file_path").alias("file"),
                F.col("_metadata.file_block_start").alias("start"),
                F.monotonically_increasing_id().alias("pos"),
                F.col("value").alias("line"),
            )
    except AnalysisException as exc:
        if exc.getCondition() == "PATH_NOT_FOUND":
            raise FileNotFoundError(f"input path {path} does not exist") from None
        raise
    line = F.col("line")
    blank = line.rlike(WHITESPACE_ONLY)
    if not options.header:
        header_lines, header_blank = F.lit(0), F.lit(0)
    elif not options.multiline:
        header_lines, header_blank = (F.count_if(~blank) > 0).cast("int"), F.lit(0)
    else:
        # The first lines of each file: rows of one split come in order (pos), and a split's
        # start orders the splits of a file. The header is found in them after the count,
        # so that nothing but this bounded selection runs on every line.
        first = F.min_by(line, F.struct("start", "pos"), HEADER_SCAN_LINES)
        header = F.aggregate(first, _header_start(), _header_step(options.quote))
        header_lines, header_blank = header["lines"], header["blank"]
    per_file = lines.groupBy("file").agg(
        F.count(F.lit(1)).alias("lines"),
        F.count_if(blank).alias("blank"),
        header_lines.alias("header_lines"),
        header_blank.alias("header_blank"),
    )
    return per_file.agg(
        F.coalesce(F.sum("lines"), F.lit(0)).cast("long").alias("physical_lines"),
        F.coalesce(F.sum("header_lines"), F.lit(0)).cast("long").alias("header_lines"),
        F.coalesce(F.sum(F.col("blank") - F.col("header_blank")), F.lit(0))
        .cast("long")
        .alias("whitespace_lines"),
    )


# The header record of a multi-line file, line by line: started at the first non-empty line,
# still open while an odd number of quote characters has been seen.
def _header_start() -> Column:
    return F.struct(
        F.lit(False).alias("started"),
        F.lit(False).alias("open"),
        F.lit(0).alias("lines"),
        F.lit(0).alias("blank"),
    )


def _header_step(quote: str):
    def step(acc: Column, line: Column) -> Column:
        if quote:
            quotes = F.length(line) - F.length(F.replace(line, F.lit(quote), F.lit("")))
            odd = quotes % 2 == 1
        else:
            odd = F.lit(False)
        done = acc["started"] & ~acc["open"]
        take = ~done & (acc["started"] | (line != ""))
        still_open = F.when(take, acc["open"] != odd).otherwise(acc["open"])
        return F.struct(
            (acc["started"] | take).alias("started"),
            still_open.alias("open"),
            (acc["lines"] + take.cast("int")).alias("lines"),
            (acc["blank"] + (take & line.rlike(WHITESPACE_ONLY)).cast("int")).alias("blank"),
        )

    return step


def _has_line_break(text: Column) -> Column:
    return (F.instr(text, "\n") > 0) | (F.instr(text, "\r") > 0)


def _blank_pieces(text: Column, interior_only: bool) -> Column:
    """Whitespace-only pieces of ``text`` between line breaks (only those with a line break
    on both sides when ``interior_only``: the first and last piece of a quoted field share
    their physical line with the quotes)."""
    pieces = F.split(text, LINE_BREAK, -1)
    if interior_only:
        # No column inside the lambda: in a select that also re-aliases a raw column's name
        # (the typed columns do), Spark would resolve it to that alias.
        pieces = F.slice(pieces, 2, F.greatest(F.size(pieces) - 2, F.lit(0)))
    return F.size(F.filter(pieces, lambda p: p.rlike(WHITESPACE_ONLY)))


def _csv_record_lines(
    fields: list[Column], corrupt: Column | None, delimiter: str
) -> tuple[Column, Column, Column]:
    """(physical lines, whitespace-only lines inside, is a blank line) of a multi-line record.

    Every line break of a record lies inside a quoted field, so a well-formed record has the
    line breaks of its field values and a corrupt one those of its text. The multi-line
    reader keeps the ``\r`` of a ``\r\n`` line end in the last value when the file's first
    line ended with ``\n`` alone (its line separator is detected once per file): that
    ``\r`` is not a line of its own.
    """
    joined = F.concat_ws(delimiter, *[F.coalesce(f, F.lit("")) for f in fields])
    kept_cr = joined.endswith("\r")
    if corrupt is None:
        text = joined
    else:
        text = F.coalesce(corrupt, joined)
        kept_cr = corrupt.isNull() & kept_cr
    breaks = F.when(
        _has_line_break(text),
        F.regexp_count(text, F.lit(LINE_BREAK)) - kept_cr.cast("int"),
    ).otherwise(F.lit(0))
    inside = sum(
        (F.when(_has_line_break(f), _blank_pieces(f, True)).otherwise(0) for f in fields),
        F.lit(0),
    )
    if corrupt is not None:
        inside = F.when(corrupt.isNotNull(), _blank_pieces(corrupt, False)).otherwise(inside)
    blank_inside = F.when(breaks > 0, inside).otherwise(F.lit(0))
    # A whitespace-only line the multi-line reader returned as a record (of one field, or of
    # empty fields when the delimiter is whitespace); the first-character test spares the
    # regular expression on ordinary records.
    is_blank = (breaks == 0) & (F.substring(text, 1, 1) <= F.lit(" ")) & text.rlike(WHITESPACE_ONLY)
    return F.lit(1) + breaks, blank_inside, is_blank


def _parse(
    c: ColumnSpec,
    raw: Column,
    raw_type: T.DataType,
    timestamp_format: str,
    date_format: str,
    numbers: NumberText = PLAIN_NUMBERS,
) -> tuple[Column, Column | None]:
    """(typed value, message when the non-null raw value does not parse) of one column;
    ``numbers``: how numbers written as text separate decimals and thousands."""
    target = c.spark_type
    if raw_type == target:
        return raw, None
    if isinstance(raw_type, T.StringType) and isinstance(target, T.NumericType):
        written = {",": " written with a decimal comma", ".": ""}[numbers.decimal]
        if numbers.thousands:
            written += f" (thousands grouped by '{numbers.thousands}')"
        problem = f"' is not {article(c.type)} {c.type}{written}"
        return numbers.read(raw, target), _value_message(c, raw, problem)
    epoch = c.format or (timestamp_format if isinstance(raw_type, T.StringType) else None)
    if isinstance(target, T.TimestampType) and epoch in EPOCH_UNITS:
        # Text or a number (JSON, Parquet) of seconds or milliseconds since 1970.
        typed = epoch_timestamp(raw, epoch)
        unit = epoch.removeprefix("epoch_")
        problem = f"' is not a number of {unit} since 1970-01-01 UTC (format {epoch})"
        return typed, _value_message(c, raw, problem)
    if c.format and isinstance(target, (T.DateType, T.TimestampType)):
        if isinstance(raw_type, T.IntegralType):  # 20261005 stored as a Parquet integer
            raw, raw_type = raw.cast("string"), T.StringType()
    if isinstance(raw_type, T.StringType) and isinstance(target, T.TimestampType):
        fmt = c.format or timestamp_format
        typed = F.try_to_timestamp(raw, F.lit(fmt))
        problem = f"' does not match timestamp format {fmt}"
    elif isinstance(raw_type, T.StringType) and isinstance(target, T.DateType):
        fmt = c.format or date_format
        typed = F.try_to_date(raw, fmt)
        problem = f"' does not match date format {fmt}"
    else:
        typed = raw.try_cast(target)
        name = c.type if isinstance(raw_type, T.StringType) else target.simpleString()
        problem = f"' is not {article(name)} {name}"
    if isinstance(target, T.IntegralType) and isinstance(
        raw_type, (T.FractionalType, T.DecimalType)
    ):
        # A cast to a whole-number type truncates: 15.57 would load as 15.
        typed = F.when(typed.cast(raw_type) == raw, typed)
        problem = (
            f"' ({raw_type.simpleString()}) is not a whole number in the range of "
            f"{target.simpleString()}; declare the column {raw_type.simpleString()} to load "
            "such values"
        )
    elif not isinstance(raw_type, T.StringType):
        problem = f"' ({raw_type.simpleString()}) cannot be converted to {target.simpleString()}"
    return typed, _value_message(c, raw, problem)


def _json_path(keys: tuple[str, ...]) -> str:
    """The JSONPath of ``get_json_object`` to the value ``keys`` lead to."""
    return "$" + "".join(f"['{key}']" for key in keys)


def _value_message(c: ColumnSpec, raw: Column, problem: str) -> Column:
    """``column <name>: '<value>'<problem>``: why a value of ``c`` does not parse."""
    return F.concat(F.lit(f"column {c.name}: '"), raw.cast("string"), F.lit(problem))


def with_parsed_columns(
    raw: DataFrame,
    schema: TableSchema,
    batch_id: str,
    ingested_at: datetime | Column,
    timestamp_format: str = "yyyy-MM-dd HH:mm:ss",
    date_format: str = "yyyy-MM-dd",
    fmt: str = "csv",
    options: CsvOptions | None = None,
) -> DataFrame:
    """Types every column and says why a row cannot be typed, in one ``select``.

    Args:
        raw: output of :func:`read_raw` (declared columns, optional corrupt-record column,
            ``source_file``).
        schema: the declared input schema.
        batch_id: the batch the rows belong to.
        ingested_at: load time (a datetime, tz-aware preferred, or a timestamp column).
        timestamp_format: pattern for timestamp columns without their own ``format``.
        date_format: pattern for date columns without their own ``format``.
        fmt: the input format (``csv``, ``json``, ``parquet``), for messages and raw_record.
        options: CSV options (delimiter, quote, escape, encoding) for messages and raw_record.

    Returns:
        The typed schema columns, ``batch_id``, ``source_file``, ``ingested_at`` and the
        internal ``_reason`` (null for a good row), ``_raw_record`` (null for a good row),
        ``_record_key``, ``_lines`` (physical lines of the record) and ``_blank_lines``
        (whitespace-only lines inside its quoted fields). With ``options.multiline``, CSV
        records that are whitespace-only lines are left out (they are blank lines, which
        the line reader skips without them reaching this function).
    """
    options = options or CsvOptions()
    raw_types = {f.name: f.dataType for f in raw.schema.fields}
    has_corrupt = CORRUPT_COLUMN in raw_types
    encoding_hint = (
        f"check ingest.csv.encoding ({options.encoding})"
        if fmt in ("csv", "json")
        else "check the file's encoding"
    )

    numbers = options.numbers  # text values of JSON and Parquet too
    typed_cols: list[Column] = []
    messages: list[Column] = []
    for c in schema.columns:
        rc = F.col(c.name)
        rtype = raw_types[c.name]
        typed, parse_msg = _parse(c, rc, rtype, timestamp_format, date_format, numbers)
        typed_cols.append(typed.alias(c.name))
        msg = None
        if isinstance(rtype, T.StringType):
            msg = F.when(
                F.instr(rc, REPLACEMENT_CHAR) > 0,
                F.lit(
                    f"column {c.name}: holds bytes that are not valid {options.encoding} "
                    f"(decoded as U+FFFD); {encoding_hint}"
                ),
            )
        if not c.nullable:
            cond, text = rc.isNull(), F.lit(f"column {c.name}: null but declared non-nullable")
            msg = F.when(cond, text) if msg is None else msg.when(cond, text)
        if parse_msg is not None:
            cond = rc.isNotNull() & typed.isNull()
            msg = F.when(cond, parse_msg) if msg is None else msg.when(cond, parse_msg)
        if msg is not None:
            messages.append(msg)
    column_reason = F.concat_ws("; ", *messages) if messages else F.lit("")
    if fmt in ("csv", "json") and len(schema.columns) > 1:
        # A spreadsheet's blank row (,,,,) or {}: no record, whatever the schema allows.
        empty = F.coalesce(*[F.col(c.name) for c in schema.columns]).isNull()
        column_reason = F.when(
            empty,
            F.lit(f"empty record: none of the schema's {len(schema.columns)} columns has a value"),
        ).otherwise(column_reason)

    if has_corrupt:
        corrupt = F.col(CORRUPT_COLUMN)
        if fmt == "csv":
            # Files read by their header may hold undeclared columns: each has its count.
            expected = (
                F.col(FILE_FIELDS) if FILE_FIELDS in raw_types else F.lit(len(schema.columns))
            )
            delim, quote = options.delimiter, options.quote
            # A delimiter outside quotes: followed by an even number of quote characters.
            split_re = (
                f"\\Q{delim}\\E(?=(?:[^\\Q{quote}\\E]*\\Q{quote}\\E[^\\Q{quote}\\E]*"
                f"\\Q{quote}\\E)*[^\\Q{quote}\\E]*$)"
                if quote
                else f"\\Q{delim}\\E"
            )
            found = F.size(F.split(corrupt, split_re, -1))
            if quote and options.escape in (quote, ""):
                # Quotes only come in pairs then (doubled quotes are two): an odd count is a
                # quoted field that is never closed.
                quotes = F.length(corrupt) - F.length(F.replace(corrupt, F.lit(quote), F.lit("")))
                unclosed = quotes % 2 == 1
            else:
                unclosed = F.lit(False)
            structure_msg = (
                F.when(
                    unclosed,
                    F.lit(
                        "malformed CSV record: a quoted field is not closed (check "
                        "ingest.csv.quote, ingest.csv.escape and ingest.csv.multiline)"
                    ),
                )
                .when(
                    found != expected,
                    F.format_string(
                        "expected %d fields, found %d (check ingest.csv.delimiter and the "
                        "file's columns)",
                        expected,
                        found,
                    ),
                )
                .otherwise(
                    F.format_string(
                        "malformed CSV line: not %d fields (check ingest.csv.quote and "
                        "ingest.csv.escape)",
                        expected,
                    )
                )
            )
        else:
            structure_msg = F.lit(
                "malformed JSON record: not a JSON object (the input must hold one JSON "
                "object per line)"
            )
            # A key whose fields the schema reads, holding something else than an object.
            parents = dict.fromkeys(c.input_path[:i] for c in schema.columns
                                    for i in range(1, len(c.input_path)))  # fmt: skip
            for parent in reversed(parents):
                value = F.get_json_object(corrupt, _json_path(parent))
                shown = ".".join(parent)
                structure_msg = F.when(
                    value.isNotNull() & ~value.startswith("{"),
                    F.concat(
                        F.lit(f"malformed JSON record: key {shown} holds '"),
                        value,
                        F.lit("', not the object whose fields the schema reads (input_name)"),
                    ),
                ).otherwise(structure_msg)
        corrupt_msg = F.concat_ws(
            "; ",
            structure_msg,
            F.when(
                F.instr(corrupt, REPLACEMENT_CHAR) > 0,
                F.lit(
                    f"line holds bytes that are not valid {options.encoding} "
                    f"(decoded as U+FFFD); {encoding_hint}"
                ),
            ),
        )
        reason = F.when(corrupt.isNotNull(), corrupt_msg).otherwise(column_reason)
    else:
        corrupt = None
        reason = column_reason
    reason = F.when(reason != "", reason)

    raw_columns = [F.col(c.name) for c in schema.columns]
    if fmt == "csv" and options.multiline:
        lines, blank_lines, is_blank = _csv_record_lines(raw_columns, corrupt, options.delimiter)
        raw = raw.where(~is_blank)
    else:
        # A line reader's record is one line; JSON lines and Parquet rows count as one.
        lines, blank_lines = F.lit(1), F.lit(0)

    raw_fields = F.struct(
        *[r.alias(c.read_as) for r, c in zip(raw_columns, schema.columns, strict=True)]
    )
    if fmt == "csv":
        text = F.to_csv(
            raw_fields,
            {
                "sep": options.delimiter,
                "quote": options.quote,
                "escape": options.escape,
                "ignoreLeadingWhiteSpace": "false",
                "ignoreTrailingWhiteSpace": "false",
            },
        )
    else:
        text = F.to_json(raw_fields)
    raw_record = F.when(reason.isNotNull(), text if corrupt is None else F.coalesce(corrupt, text))

    # The schema's record id, else its key: never one column for some rows and the other for
    # the rest (a row whose id is null has a null record_key, its reason says why).
    key_name = schema.record_id or schema.key
    key = F.col(key_name).cast("string") if key_name is not None else None
    if key is None:
        record_key = F.lit(None).cast("string")
    elif corrupt is None:
        record_key = key
    elif fmt == "json":  # a JSON object whose other keys do not load still has its id
        path = _json_path(schema.column(key_name).input_path)
        record_key = F.when(corrupt.isNull(), key).otherwise(F.get_json_object(corrupt, path))
    else:
        record_key = F.when(corrupt.isNull(), key)

    stamp = ingested_at if isinstance(ingested_at, Column) else F.lit(ingested_at)
    return raw.select(
        *typed_cols,
        F.lit(batch_id).alias(BATCH_COLUMN),
        F.col(SOURCE_FILE_COLUMN),
        stamp.cast("timestamp").alias(INGESTED_AT_COLUMN),
        reason.alias(_REASON),
        raw_record.alias(_RAW_RECORD),
        record_key.alias(_RECORD_KEY),
        lines.alias(_LINES),
        blank_lines.alias(_BLANK_LINES),
    )


def split_parsed(parsed: DataFrame, schema: TableSchema) -> tuple[DataFrame, DataFrame]:
    """Splits the output of :func:`with_parsed_columns` into (bronze, quarantine).

    Returns:
        bronze: the schema columns, ``batch_id``, ``source_file``, ``ingested_at`` of rows
        without a reason; quarantine: ``QUARANTINE_COLUMNS`` (stage ``ingest``) of the others.
    """
    bronze = parsed.filter(F.col(_REASON).isNull()).select(*schema.names, *META_COLUMNS)
    rejected = parsed.filter(F.col(_REASON).isNotNull())
    quarantine = quarantine_rows(
        rejected,
        reason=F.col(_REASON),
        stage=INGEST_STAGE,
        record_key=F.col(_RECORD_KEY),
        raw_record=F.col(_RAW_RECORD),
    )
    return bronze, quarantine


def split_valid(
    raw: DataFrame,
    schema: TableSchema,
    batch_id: str,
    ingested_at: datetime | Column,
    timestamp_format: str = "yyyy-MM-dd HH:mm:ss",
    date_format: str = "yyyy-MM-dd",
    fmt: str = "csv",
    options: CsvOptions | None = None,
) -> tuple[DataFrame, DataFrame]:
    """Types raw rows; returns (bronze, quarantine). Pure: no I/O, no Spark job.

    Both outputs derive from one parsed frame (:func:`with_parsed_columns`); a caller that
    materialises both should persist that frame and use :func:`split_parsed` instead, as
    :func:`run_ingest` does, so the input is parsed once.

    Args: as :func:`with_parsed_columns`.

    Returns:
        (bronze, quarantine): see :func:`split_parsed`.

    Example::

        raw = read_raw(spark, "raw/reference", "csv", schema)
        bronze, quarantine = split_valid(raw, schema, "reference", datetime.now(timezone.utc))
    """
    parsed = with_parsed_columns(
        raw, schema, batch_id, ingested_at, timestamp_format, date_format, fmt, options
    )
    return split_parsed(parsed, schema)


def top_reasons(parsed: DataFrame, limit: int = 3) -> list[tuple[str, int, str | None]]:
    """The most frequent problems of rejected rows, values left out, with their row counts
    and one example value each (the smallest non-empty one, cut at 40 characters; None for a
    problem that names no value).

    ``column amount: 'abc' is not a double`` and ``... '12.3.4' ...`` count as one problem,
    ``column amount: '…' is not a double``, example ``12.3.4``. One small aggregation.
    """
    problems = parsed.where(F.col(_REASON).isNotNull()).select(
        F.explode(F.split(F.col(_REASON), "; ")).alias("problem")
    )
    # The value between "column c: '" and "' is not" / "' does not match" / "' (type) ..." (a
    # format such as yyyy-MM-dd'T'HH:mm:ss after it keeps its quotes).
    value = r"^(column .+?: ')(.*?)(' (?:is not|does not match|\([a-z0-9(),<>: ]+\) ))"
    named = F.col("problem").rlike(value)
    kinds = problems.select(
        F.regexp_replace("problem", value, "$1…$3").alias("kind"),
        F.when(named, F.regexp_extract("problem", value, 2)).alias("value"),
    )
    shown = F.when(F.length("value") > 40, F.concat(F.substring("value", 1, 39), F.lit("…")))
    example = F.coalesce(F.min(F.nullif("value", F.lit(""))), F.min("value"))
    top = (
        kinds.groupBy("kind")
        .agg(F.count(F.lit(1)).alias("count"), example.alias("value"))
        .select("kind", "count", shown.otherwise(F.col("value")).alias("example"))
        .orderBy(F.desc("count"), F.asc("kind"))
        .limit(limit)
    )
    return [(r["kind"], int(r["count"]), r["example"]) for r in top.collect()]


def _too_many_rejected(parsed: DataFrame, counts, ing, quarantine_path: str, batch: str) -> str:
    rejected, rows = int(counts["quarantined_rows"]), int(counts["rows_in"])
    top = top_reasons(parsed)
    reasons = "; ".join(
        f"{kind} ({n} rows" + (f", e.g. '{example}')" if example is not None else ")")
        for kind, n, example in top
    )
    return (
        f"ingest: {rejected} of {rows} rows of batch '{batch}' were rejected "
        f"({rejected / rows:.1%}), more than ingest.max_rejected_fraction "
        f"{ing.max_rejected_fraction:g}; bronze was not written. Top reasons: {reasons}. "
        f"The rejected rows are in {quarantine_path}; check the schema, ingest.csv and "
        f"ingest.timestamp_format (or raise ingest.max_rejected_fraction)"
        + _number_hint(ing.csv, [example for kind, _, example in top if " is not a" in kind])
    )


def _number_hint(csv: CsvOptions, examples: list[str | None]) -> str:
    """Hints when rejected numbers are written in ways ``csv`` does not read: with a decimal
    comma (``3,5``), thousands grouped by commas (``1,234.5``, ``1,234,567``), or a currency
    or percent sign (``$5``, ``12%``)."""
    shown = [e.strip() for e in examples if e]
    hints = []
    if csv.decimal == "." and not csv.thousands:
        written = [e for e in shown if "," in e]
        grouped = NumberText(".", ",", signs=True)
        if any(grouped.plain(e) is not None and grouped_by_commas(e) for e in written):
            hints.append("the numbers group thousands by commas: set ingest.csv.thousands: ','")
        elif any(NumberText(",", signs=True).plain(e) is not None for e in written):
            hints.append(
                "the numbers are written with a decimal comma: set ingest.csv.decimal: ','"
            )
    signed, unsigned = (NumberText(csv.decimal, csv.thousands, signs) for signs in (True, False))
    if not csv.strip_signs and any(
        signed.plain(e) is not None and unsigned.plain(e) is None for e in shown
    ):
        hints.append(
            "the numbers carry currency or percent signs: set ingest.csv.strip_signs: true"
        )
    return "".join(f"; {h}" for h in hints)


def _line_metrics(spark: SparkSession, path: str, options: CsvOptions, counts) -> dict[str, int]:
    """The line metrics of CSV input from a text read and the parsed records' counts."""
    try:
        lines = read_line_counts(spark, path, options).first()
    except PySparkException as exc:
        if exc.getCondition() != "MALFORMED_CHARACTER_CODING":
            raise
        raise JobError(
            f"ingest input {path} holds bytes that are not valid {options.encoding}; check "
            "ingest.csv.encoding"
        ) from None
    return {
        "raw_lines": int(lines["physical_lines"]) - int(lines["header_lines"]),
        "bronze_lines": int(counts["bronze_lines"]),
        "quarantined_lines": int(counts["quarantined_lines"]),
        "blank_lines": int(lines["whitespace_lines"]) - int(counts["blank_lines_in_records"]),
    }


@dataclasses.dataclass(frozen=True)
class HeldBatch:
    """What bronze already holds of a batch: the files its rows came from, and the
    ``ingested_at`` of its first load (microseconds; None when it holds no row)."""

    files: frozenset[str]
    first_load: int | None


def _held_batch(
    spark: SparkSession, tables: DeltaTables, bronze_path: str, batch: str
) -> HeldBatch | None:
    """The batch as bronze holds it, or None for a new batch: one small Spark job, only when
    the batch exists."""
    if not tables.exists(bronze_path) or batch not in tables.batches(bronze_path):
        return None
    describe(spark, f"ingest: files and first load time of batch {batch} in bronze")
    row = (
        tables.batch_rows(bronze_path, batch)
        .agg(
            F.collect_set(SOURCE_FILE_COLUMN).alias("files"),
            F.unix_micros(F.min(INGESTED_AT_COLUMN)).alias("first"),
        )
        .first()
    )
    return HeldBatch(frozenset(_file_name(f) for f in row["files"]), row["first"])


def _check_same_files(held: HeldBatch | None, batch: str, raw: DataFrame, path: str) -> None:
    """Stops an ingest whose batch id, taken from the name of ``path``, is a batch of bronze
    whose rows came from none of the files this run reads: files of another day named like
    the first (``drop/2026-12-01/visits.csv``, then ``drop/2026-12-02/visits.csv``) would
    otherwise replace it. A rerun reads the same files; a batch id set explicitly is taken
    as meant."""
    if held is None or not held.files:
        return
    reading = {_file_name(f) for f in raw.inputFiles()}
    if held.files & reading:
        return
    raise JobError(
        f"ingest: batch '{batch}' (the name of ingest.path {path}) already holds the rows of "
        f"other files ({_shown(set(held.files))}) than this run reads ({_shown(reading)}), and "
        f"ingesting would replace them. Give this batch its own id with --set batch_id=NAME, "
        f"or, to replace batch '{batch}' with these files, set it explicitly: --set "
        f"batch_id={batch}"
    )


def _load_time(held: HeldBatch | None) -> datetime | Column:
    """The batch's ``ingested_at``: now for a new batch; for a batch bronze holds, the time
    of its first load, so a rerun (a retry, a backfill) keeps the batch's place in the order
    of arrival (with ``clean.dedup: latest_by_key`` and no event time, a later load would make
    its records win over those of batches loaded after it)."""
    if held is None or held.first_load is None:
        return datetime.now(timezone.utc)
    return F.timestamp_micros(F.lit(held.first_load))


def _file_name(uri: str) -> str:
    """A file's location as Spark gives it (``file:/a%20b.csv``, ``file:///a%20b.csv``), in one
    readable form (``/a b.csv``; other schemes keep theirs)."""
    parts = urllib.parse.urlsplit(uri)
    path = urllib.parse.unquote(parts.path)
    return path if parts.scheme in ("", "file") else f"{parts.scheme}://{parts.netloc}{path}"


def _shown(files: set[str], most: int = 3) -> str:
    names = sorted(files)
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def run_ingest(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """The ingest job: ``ingest.path`` -> ``bronze`` + ``quarantine`` for one batch.

    The batch is ``cfg.effective_batch_id()``. Bronze (partitioned by ``batch_id``) and the
    ingest rows of the quarantine replace that batch's earlier rows, so re-running a batch
    never duplicates. The input is parsed once (the parsed frame is persisted for the count
    and the two writes). CSV input is also read once as plain text to count its physical
    and blank lines (:func:`read_line_counts`); on 1M lines (80 MB, 2 cores) that read
    takes about 0.4 s, a few percent of the parse.

    Returns:
        ``JobResult("ingest", outputs={"bronze", "quarantine"}, metrics=...)`` with
        ``batch_id``, ``rows_in`` (records), ``bronze_rows``, ``quarantined_rows`` (counts
        from one aggregation) and, for CSV, ``raw_lines``, ``bronze_lines``,
        ``quarantined_lines`` and ``blank_lines`` (see the module's docstring), where
        ``raw_lines = bronze_lines + quarantined_lines + blank_lines``; should the two reads
        disagree, a note says by how much.

    Raises:
        JobError: ``ingest.path`` is not set or does not exist, a Parquet input lacks a
            declared column, a UTF-16/UTF-32 file holds bytes invalid in that encoding, or
            more than ``ingest.max_rejected_fraction`` of the rows are rejected (the
            quarantine rows are then written, bronze is not; the message names the most
            frequent reasons with their counts), the schema file gives an existing column
            another type than bronze's, or the batch id (from ``ingest.path``'s name, not
            set) is a batch of other files (nothing is written then).
    """
    ing, batch, schema = cfg.ingest, cfg.effective_batch_id(), cfg.table_schema
    raw, read_notes = _read_raw(spark, cfg)
    bronze_path = cfg.storage.table_path("bronze")
    quarantine_path = cfg.storage.table_path("quarantine")
    held = _held_batch(spark, tables, bronze_path, batch)
    parsed = with_parsed_columns(
        raw,
        schema,
        batch,
        _load_time(held),
        ing.timestamp_format,
        ing.date_format,
        ing.format,
        ing.csv,
    )
    bronze, quarantine = split_parsed(parsed, schema)
    added = columns_to_add(
        tables, bronze_path, bronze, "ingest", f"the schema file {cfg.schema_path}"
    )
    if not cfg.batch_id:
        _check_same_files(held, batch, raw, ing.path)
    parsed = parsed.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        describe(spark, f"ingest: parse and count batch {batch}")
        counts = _record_counts(parsed)
        line_metrics: dict[str, int] = {}
        if ing.format == "csv":
            describe(spark, f"ingest: count lines of {ing.path}")
            line_metrics = _line_metrics(spark, ing.path, ing.csv, counts)
        rejected = int(counts["quarantined_rows"])
        too_many = rejected > ing.max_rejected_fraction * int(counts["rows_in"])
        describe(spark, f"ingest: write quarantine batch {batch}")
        # Partitioned like the clean job's quarantine writes, whichever creates the table.
        # Written first: when too much is rejected the user can look at it, bronze stays as is.
        tables.replace_batch(quarantine, quarantine_path, batch, within={"stage": INGEST_STAGE})
        if too_many:
            message = _too_many_rejected(parsed, counts, ing, quarantine_path, batch)
            hints = [n.removeprefix("ingest: ") for n in read_notes]
            raise JobError(". ".join([message, *hints]))
        describe(spark, f"ingest: write bronze batch {batch}")
        tables.replace_batch(bronze, bronze_path, batch, add_columns=True)
    finally:
        parsed.unpersist()
    notes = [*read_notes, *added_note("bronze", added)]
    notes += _count_notes(ing, batch, int(counts["rows_in"]), line_metrics)
    return JobResult(
        job="ingest",
        outputs={"bronze": bronze_path, "quarantine": quarantine_path},
        metrics={
            "batch_id": batch,
            "rows_in": int(counts["rows_in"]),
            "bronze_rows": int(counts["bronze_rows"]),
            "quarantined_rows": int(counts["quarantined_rows"]),
            **line_metrics,
        },
        notes=notes,
    )


def _read_raw(spark: SparkSession, cfg: Config) -> tuple[DataFrame, list[str]]:
    """:func:`read_input` of ``ingest.path`` with the config's errors as job errors."""
    ing = cfg.ingest
    if not ing.path:
        raise JobError("ingest.path is not set: set it to the raw file, directory or glob to load")
    describe(spark, f"ingest: read {ing.format} {ing.path}")
    try:
        return read_input(spark, ing.path, ing.format, cfg.table_schema, ing.csv)
    except FileNotFoundError:
        raise JobError(
            f"ingest input {ing.path} does not exist; check ingest.path (the raw file, "
            "directory or glob to load)"
        ) from None
    except ValueError as exc:
        raise JobError(f"{exc} (ingest.path / schema)") from None


def _record_counts(parsed: DataFrame) -> Row:
    """One aggregation over the parsed records: ``rows_in``, ``bronze_rows``,
    ``quarantined_rows``, ``bronze_lines``, ``quarantined_lines``, ``blank_lines_in_records``."""
    good, bad = F.col(_REASON).isNull(), F.col(_REASON).isNotNull()
    return parsed.agg(
        F.count(F.lit(1)).alias("rows_in"),
        F.count_if(good).alias("bronze_rows"),
        F.count_if(bad).alias("quarantined_rows"),
        F.coalesce(F.sum(F.when(good, F.col(_LINES))), F.lit(0)).alias("bronze_lines"),
        F.coalesce(F.sum(F.when(bad, F.col(_LINES))), F.lit(0)).alias("quarantined_lines"),
        F.coalesce(F.sum(_BLANK_LINES), F.lit(0)).alias("blank_lines_in_records"),
    ).first()


def _count_notes(
    ing: IngestConfig, batch: str, rows_in: int, line_metrics: dict[str, int]
) -> list[str]:
    """Notes on an empty batch and on line counts that the parsed records do not explain."""
    notes = []
    if rows_in == 0:
        what = " (headers and blank lines only)" if ing.format == "csv" else ""
        notes.append(
            f"ingest: {ing.path} holds no records{what}: batch {batch} is empty, and the later "
            "jobs will not find it in bronze; check the export"
        )
    if line_metrics:
        accounted = sum(line_metrics[k] for k in ("bronze_lines", "quarantined_lines"))
        accounted += line_metrics["blank_lines"]
        if accounted != line_metrics["raw_lines"]:
            notes.append(
                f"ingest: the text read of {ing.path} counts {line_metrics['raw_lines']} raw "
                f"lines, the parsed records and blank lines {accounted}: check the files' "
                "quoting and line endings against ingest.csv (quote, escape, multiline)"
            )
    return notes
