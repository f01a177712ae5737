"""Ingest: raw files -> ``bronze`` (a typed copy of every parseable row) + ``quarantine``.

What ingest enforces, and nothing more (schema constraints such as min/max/allowed/pattern
become rules in the clean job):

* the field count of a CSV line (Spark's PERMISSIVE parser puts lines with too few or too
  many fields in the corrupt-record column), and well-formed JSON records;
* that every typed column parses: numbers, ints, booleans with ``try_cast``, timestamps and
  dates with the column's ``format`` or ``ingest.timestamp_format`` / ``ingest.date_format``;
* that non-nullable columns are present;
* valid UTF-8: a field holding U+FFFD after decoding had bytes that are not valid in the
  file's encoding (``ingest.csv.encoding``).

Every input row ends in exactly one of the two outputs: input rows = bronze rows + quarantine
rows. Each quarantine row says why in ``reason`` (all problems of the row, ``"; "``-separated,
columns in schema order), e.g.::

    column amount: 'abc' is not a double
    expected 12 fields, found 11 (check ingest.csv.delimiter and the file's columns)
    column event_time: '2026-13-45' does not match timestamp format yyyy-MM-dd HH:mm:ss
    column customer_id: null but declared non-nullable

``raw_record`` of a quarantine row is the original line for a CSV line that could not be
split into fields (Spark's corrupt record), else the row's raw text fields joined again with
``to_csv`` (same delimiter, quote and escape: the original line unless the line used optional
quoting). For JSON it is the original text of a malformed record, else ``to_json`` of the raw
fields; for Parquet ``to_json`` of the row. ``record_key`` is the record id (or, without one,
the entity key) of rows whose fields could be split.

Spark notes: empty lines are skipped by Spark's CSV reader (they are not rows); ``try_cast``
accepts what Spark's cast accepts, e.g. surrounding blanks, ``NaN``, ``Infinity`` and a
trailing ``d``/``f`` on doubles (``'1.5d'``), but not ``'3.5'`` for an int.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import Config, CsvOptions
from ml_engine.quality.quarantine import quarantine_rows, replace_predicate
from ml_engine.results import JobError, JobResult
from ml_engine.schemas import ColumnSpec, TableSchema
from ml_engine.session import describe
from ml_engine.tables.base import DeltaTables

CORRUPT_COLUMN = "_corrupt_record"
SOURCE_FILE = "source_file"
BRONZE_META_COLUMNS = ("batch_id", SOURCE_FILE, "ingested_at")
INGEST_STAGE = "ingest"
REPLACEMENT_CHAR = "\ufffd"

# Columns of the intermediate parsed frame (besides the typed schema columns).
_REASON = "_reason"
_RAW_RECORD = "_raw_record"
_RECORD_KEY = "_record_key"


def raw_struct(schema: TableSchema, fmt: str = "csv") -> T.StructType:
    """The all-string read schema of ``schema`` (plus the corrupt-record column for CSV/JSON).

    Args:
        schema: the declared input schema.
        fmt: ``csv``, ``json`` or ``parquet``.
    """
    fields = [T.StructField(c.name, T.StringType(), True) for c in schema.columns]
    if fmt in ("csv", "json"):
        fields.append(T.StructField(CORRUPT_COLUMN, T.StringType(), True))
    return T.StructType(fields)


def read_raw(
    spark: SparkSession,
    path: str,
    fmt: str,
    schema: TableSchema,
    options: CsvOptions | None = None,
) -> DataFrame:
    """Reads raw input without type inference.

    CSV and JSON are read with :func:`raw_struct` (every declared column as a string),
    ``mode=PERMISSIVE`` and ``columnNameOfCorruptRecord``; for CSV, header, delimiter,
    encoding, quote and escape come from ``options`` (``ingest.csv``) and fields are taken by
    position (``enforceSchema``: the header line is skipped, its names are not checked).
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
        record column for CSV/JSON, and ``source_file`` (``_metadata.file_path``).

    Raises:
        FileNotFoundError: nothing exists at ``path``.
        ValueError: ``fmt`` is unknown, or a Parquet input lacks a declared column (the
            message names the path, the column and the columns the files have).
    """
    options = options or CsvOptions()
    reader = spark.read
    try:
        if fmt == "csv":
            df = (
                reader.schema(raw_struct(schema, "csv"))
                .options(
                    header=str(options.header).lower(),
                    sep=options.delimiter,
                    encoding=options.encoding,
                    quote=options.quote,
                    escape=options.escape,
                    mode="PERMISSIVE",
                    columnNameOfCorruptRecord=CORRUPT_COLUMN,
                    enforceSchema="true",
                )
                .csv(path)
            )
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
        elif fmt == "parquet":
            df = reader.parquet(path)
        else:
            raise ValueError(f"unknown input format '{fmt}'; use csv, json or parquet")
    except AnalysisException as exc:
        if exc.getCondition() == "PATH_NOT_FOUND":
            raise FileNotFoundError(f"input path {path} does not exist") from None
        if exc.getCondition() == "UNABLE_TO_INFER_SCHEMA":
            raise ValueError(f"{fmt} input {path} holds no {fmt} files") from None
        raise
    if fmt == "parquet":
        present = {c.lower() for c in df.columns}
        missing = [c.name for c in schema.columns if c.name.lower() not in present]
        if missing:
            raise ValueError(
                f"parquet input {path}: column(s) {missing} declared in schema "
                f"'{schema.name}' ({schema.source}) are missing; the files have columns "
                f"{df.columns}. Fix the files or the schema."
            )
        cols = [F.col(c.name) for c in schema.columns]
    else:
        cols = [F.col(c.name) for c in schema.columns] + [F.col(CORRUPT_COLUMN)]
    return df.select(*cols, F.col("_metadata.file_path").alias(SOURCE_FILE))


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _parse(
    c: ColumnSpec, raw: Column, raw_type: T.DataType, timestamp_format: str, date_format: str
) -> tuple[Column, Column | None]:
    """(typed value, message when the non-null raw value does not parse) of one column."""
    target = c.spark_type
    if raw_type == target:
        return raw, None
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
        problem = f"' is not {_article(name)} {name}"
    if not isinstance(raw_type, T.StringType):
        problem = f"' ({raw_type.simpleString()}) cannot be converted to {target.simpleString()}"
    message = F.concat(F.lit(f"column {c.name}: '"), raw.cast("string"), F.lit(problem))
    return typed, message


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
        internal ``_reason`` (null for a good row), ``_raw_record`` and ``_record_key``.
    """
    options = options or CsvOptions()
    raw_types = {f.name: f.dataType for f in raw.schema.fields}
    has_corrupt = CORRUPT_COLUMN in raw_types
    encoding_hint = (
        f"check ingest.csv.encoding ({options.encoding})"
        if fmt in ("csv", "json")
        else "check the file's encoding"
    )

    typed_cols: list[Column] = []
    messages: list[Column] = []
    for c in schema.columns:
        rc = F.col(c.name)
        rtype = raw_types[c.name]
        typed, parse_msg = _parse(c, rc, rtype, timestamp_format, date_format)
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

    if has_corrupt:
        corrupt = F.col(CORRUPT_COLUMN)
        if fmt == "csv":
            expected = len(schema.columns)
            delim, quote = options.delimiter, options.quote
            # A delimiter outside quotes: followed by an even number of quote characters.
            split_re = (
                f"\\Q{delim}\\E(?=(?:[^\\Q{quote}\\E]*\\Q{quote}\\E[^\\Q{quote}\\E]*"
                f"\\Q{quote}\\E)*[^\\Q{quote}\\E]*$)"
            )
            found = F.size(F.split(corrupt, split_re, -1))
            structure_msg = F.when(
                found != expected,
                F.format_string(
                    f"expected {expected} fields, found %d (check ingest.csv.delimiter "
                    "and the file's columns)",
                    found,
                ),
            ).otherwise(
                F.lit(
                    f"malformed CSV line: not {expected} fields (check ingest.csv.quote "
                    "and ingest.csv.escape)"
                )
            )
        else:
            structure_msg = F.lit(
                "malformed JSON record: not a JSON object (the input must hold one JSON "
                "object per line)"
            )
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

    raw_fields = F.struct(*[F.col(c.name) for c in schema.columns])
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
    raw_record = text if corrupt is None else F.coalesce(corrupt, text)

    key_names = [n for n in (schema.record_id, schema.key) if n is not None]
    key = F.coalesce(*[F.col(n).cast("string") for n in key_names]) if key_names else None
    if key is None:
        record_key = F.lit(None).cast("string")
    elif corrupt is None:
        record_key = key
    else:
        record_key = F.when(corrupt.isNull(), key)

    stamp = ingested_at if isinstance(ingested_at, Column) else F.lit(ingested_at)
    return raw.select(
        *typed_cols,
        F.lit(batch_id).alias("batch_id"),
        F.col(SOURCE_FILE),
        stamp.cast("timestamp").alias("ingested_at"),
        reason.alias(_REASON),
        raw_record.alias(_RAW_RECORD),
        record_key.alias(_RECORD_KEY),
    )


def split_parsed(parsed: DataFrame, schema: TableSchema) -> tuple[DataFrame, DataFrame]:
    """Splits the output of :func:`with_parsed_columns` into (bronze, quarantine).

    Returns:
        bronze: the schema columns, ``batch_id``, ``source_file``, ``ingested_at`` of rows
        without a reason; quarantine: ``QUARANTINE_COLUMNS`` (stage ``ingest``) of the others.
    """
    bronze = parsed.filter(F.col(_REASON).isNull()).select(*schema.names, *BRONZE_META_COLUMNS)
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


def top_reasons(parsed: DataFrame, limit: int = 3) -> list[tuple[str, int]]:
    """The most frequent problems of rejected rows, values left out, with their row counts.

    ``column amount: 'abc' is not a double`` and ``... '12.3.4' ...`` count as one problem,
    ``column amount: '…' is not a double``. One small aggregation.
    """
    problems = parsed.where(F.col(_REASON).isNotNull()).select(
        F.explode(F.split(F.col(_REASON), "; ")).alias("problem")
    )
    kinds = problems.select(F.regexp_replace("problem", r"'[^']*'", "'…'").alias("kind"))
    top = kinds.groupBy("kind").count().orderBy(F.desc("count"), F.asc("kind")).limit(limit)
    return [(r["kind"], int(r["count"])) for r in top.collect()]


def _too_many_rejected(parsed: DataFrame, counts, ing, quarantine_path: str, batch: str) -> str:
    rejected, rows = int(counts["quarantined_rows"]), int(counts["rows_in"])
    reasons = "; ".join(f"{kind} ({n} rows)" for kind, n in top_reasons(parsed))
    return (
        f"ingest: {rejected} of {rows} rows of batch '{batch}' were rejected "
        f"({rejected / rows:.1%}), more than ingest.max_rejected_fraction "
        f"{ing.max_rejected_fraction:g}; bronze was not written. Top reasons: {reasons}. "
        f"The rejected rows are in {quarantine_path}; check the schema, ingest.csv and "
        f"ingest.timestamp_format (or raise ingest.max_rejected_fraction)"
    )


def run_ingest(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """The ingest job: ``ingest.path`` -> ``bronze`` + ``quarantine`` for one batch.

    The batch is ``cfg.effective_batch_id()``. Bronze (partitioned by ``batch_id``) and the
    ingest rows of the quarantine replace that batch's earlier rows, so re-running a batch
    never duplicates. The input is parsed once (the parsed frame is persisted for the count
    and the two writes).

    Returns:
        ``JobResult("ingest", outputs={"bronze", "quarantine"}, metrics={"batch_id",
        "rows_in", "bronze_rows", "quarantined_rows"})``, counts from one aggregation.

    Raises:
        JobError: ``ingest.path`` is not set or does not exist, a Parquet input lacks a
            declared column, or more than ``ingest.max_rejected_fraction`` of the rows are
            rejected (the quarantine rows are then written, bronze is not; the message names
            the most frequent reasons with their counts).
    """
    ing = cfg.ingest
    if not ing.path:
        raise JobError("ingest.path is not set: set it to the raw file, directory or glob to load")
    batch = cfg.effective_batch_id()
    schema = cfg.table_schema
    describe(spark, f"ingest: read {ing.format} {ing.path}")
    try:
        raw = read_raw(spark, ing.path, ing.format, schema, ing.csv)
    except FileNotFoundError:
        raise JobError(
            f"ingest input {ing.path} does not exist; check ingest.path (the raw file, "
            "directory or glob to load)"
        ) from None
    except ValueError as exc:
        raise JobError(f"{exc} (ingest.path / schema)") from None

    parsed = with_parsed_columns(
        raw,
        schema,
        batch,
        datetime.now(timezone.utc),
        ing.timestamp_format,
        ing.date_format,
        ing.format,
        ing.csv,
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        describe(spark, f"ingest: parse and count batch {batch}")
        counts = parsed.agg(
            F.count(F.lit(1)).alias("rows_in"),
            F.count_if(F.col(_REASON).isNull()).alias("bronze_rows"),
            F.count_if(F.col(_REASON).isNotNull()).alias("quarantined_rows"),
        ).first()
        bronze, quarantine = split_parsed(parsed, schema)
        bronze_path = cfg.storage.table_path("bronze")
        quarantine_path = cfg.storage.table_path("quarantine")
        rejected = int(counts["quarantined_rows"])
        too_many = rejected > ing.max_rejected_fraction * int(counts["rows_in"])
        describe(spark, f"ingest: write quarantine batch {batch}")
        # Partitioned like the clean job's quarantine writes, whichever creates the table.
        # Written first: when too much is rejected the user can look at it, bronze stays as is.
        tables.overwrite(
            quarantine,
            quarantine_path,
            partition_by=["batch_id"],
            replace_where=replace_predicate(INGEST_STAGE, batch),
        )
        if too_many:
            raise JobError(_too_many_rejected(parsed, counts, ing, quarantine_path, batch))
        describe(spark, f"ingest: write bronze batch {batch}")
        tables.replace_batch(bronze, bronze_path, batch)
    finally:
        parsed.unpersist()
    return JobResult(
        job="ingest",
        outputs={"bronze": bronze_path, "quarantine": quarantine_path},
        metrics={
            "batch_id": batch,
            "rows_in": int(counts["rows_in"]),
            "bronze_rows": int(counts["bronze_rows"]),
            "quarantined_rows": int(counts["quarantined_rows"]),
        },
    )
