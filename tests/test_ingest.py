"""Ingest: typing and rejecting rows (pure), reading files on disk, and the job.

Expected rows are written by hand (reasons as a user reads them) or derived from the input
lines with plain Python; the generator's MANIFEST gives the expected count per dirt kind. Odd
CSV files are read independently by Python's ``csv`` module (RFC 4180) and their physical lines
counted with ``bytes.splitlines``.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import json
import re
import urllib.parse
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import CsvOptions
from ml_engine.quality.ingest import raw_struct, read_line_counts, read_raw, split_valid
from ml_engine.quality.quarantine import QUARANTINE_SCHEMA
from ml_engine.sample_data import generate_sample_data
from ml_engine.schemas import load_schema, schema_from_dict

UTC = timezone.utc
AT = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
SRC = "file:/in/part-0.csv"

MINI = schema_from_dict(
    {
        "name": "mini",
        "columns": [
            {"name": "id", "type": "string", "nullable": False, "role": "record_id"},
            {"name": "cust", "type": "string", "nullable": False, "role": "key"},
            {"name": "ts", "type": "timestamp", "nullable": False, "role": "event_time"},
            {"name": "day", "type": "date", "format": "dd/MM/yyyy"},
            {"name": "amount", "type": "double"},
            {"name": "n", "type": "int"},
            {"name": "flag", "type": "boolean"},
            {"name": "price", "type": "decimal(6,2)"},
            {"name": "note", "type": "string"},
        ],
    }
)
GOOD = {
    "id": "r1",
    "cust": "c1",
    "ts": "2026-01-02 03:04:05",
    "day": "02/01/2026",
    "amount": "12.5",
    "n": "3",
    "flag": "true",
    "price": "9.99",
    "note": "hello",
}
RAW_SCHEMA = T.StructType(
    raw_struct(MINI, "csv").fields + [T.StructField("source_file", T.StringType(), True)]
)
BRONZE_SCHEMA = T.StructType(
    [
        T.StructField("id", T.StringType()),
        T.StructField("cust", T.StringType()),
        T.StructField("ts", T.TimestampType()),
        T.StructField("day", T.DateType()),
        T.StructField("amount", T.DoubleType()),
        T.StructField("n", T.IntegerType()),
        T.StructField("flag", T.BooleanType()),
        T.StructField("price", T.DecimalType(6, 2)),
        T.StructField("note", T.StringType()),
        T.StructField("batch_id", T.StringType()),
        T.StructField("source_file", T.StringType()),
        T.StructField("ingested_at", T.TimestampType()),
    ]
)
GOOD_TYPED = (
    "r1",
    "c1",
    datetime(2026, 1, 2, 3, 4, 5),
    date(2026, 1, 2),
    12.5,
    3,
    True,
    Decimal("9.99"),
    "hello",
)


def raw_row(corrupt: str | None = None, **changes) -> tuple:
    values = {**GOOD, **changes}
    return (*[values[c] for c in MINI.names], corrupt, SRC)


def as_line(**changes) -> str:
    """The CSV line of GOOD with ``changes`` (null -> empty field)."""
    values = {**GOOD, **changes}
    return ",".join("" if values[c] is None else values[c] for c in MINI.names)


def split(spark, rows, **kwargs):
    raw = spark.createDataFrame(rows, RAW_SCHEMA)
    return split_valid(raw, MINI, "b1", AT, **kwargs)


def expected_quarantine(spark, rows):
    return spark.createDataFrame(
        [(raw, reason, "ingest", key, SRC, "b1", AT) for raw, reason, key in rows],
        QUARANTINE_SCHEMA,
    )


# --------------------------------------------------------------------------- split_valid


def test_good_row_is_typed_into_bronze(spark):
    bronze, quarantine = split(spark, [raw_row()])
    expected = spark.createDataFrame([(*GOOD_TYPED, "b1", SRC, AT)], BRONZE_SCHEMA)
    assert_df_equality(bronze, expected, ignore_nullable=True)
    assert quarantine.collect() == []


def test_null_in_nullable_columns_is_kept(spark):
    bronze, quarantine = split(spark, [raw_row(day=None, amount=None, note=None, flag=None)])
    typed = list(GOOD_TYPED)
    typed[3] = typed[4] = typed[6] = typed[8] = None
    expected = spark.createDataFrame([(*typed, "b1", SRC, AT)], BRONZE_SCHEMA)
    assert_df_equality(bronze, expected, ignore_nullable=True)
    assert quarantine.collect() == []


FAILURES = {
    "double": ({"amount": "abc"}, "column amount: 'abc' is not a double"),
    "int": ({"n": "3.5"}, "column n: '3.5' is not an int"),
    "boolean": ({"flag": "maybe"}, "column flag: 'maybe' is not a boolean"),
    "decimal": ({"price": "12.3.4"}, "column price: '12.3.4' is not a decimal(6,2)"),
    "decimal_overflow": ({"price": "123456.78"}, "column price: '123456.78' is not a decimal(6,2)"),
    "timestamp": (
        {"ts": "2026-13-45 10:00:00"},
        "column ts: '2026-13-45 10:00:00' does not match timestamp format yyyy-MM-dd HH:mm:ss",
    ),
    "date_with_column_format": (
        {"day": "2026-01-02"},
        "column day: '2026-01-02' does not match date format dd/MM/yyyy",
    ),
    "non_nullable": ({"cust": None}, "column cust: null but declared non-nullable"),
    "invalid_utf8": (
        {"note": "caf\ufffd"},
        "column note: holds bytes that are not valid utf-8 (decoded as U+FFFD); "
        "check ingest.csv.encoding (utf-8)",
    ),
    "several_in_schema_order": (
        {"n": "x", "amount": "1,5", "ts": "yesterday"},
        "column ts: 'yesterday' does not match timestamp format yyyy-MM-dd HH:mm:ss; "
        "column amount: '1,5' is not a double; column n: 'x' is not an int",
    ),
}


def test_each_untypable_row_goes_to_quarantine_with_its_reason(spark):
    """One input row per failure kind (its id names the kind); none reaches bronze."""
    rows, expected = [], []
    for kind, (changes, reason) in FAILURES.items():
        changes = {**changes, "id": kind}
        rows.append(raw_row(**changes))
        if kind == "several_in_schema_order":
            changes["amount"] = '"1,5"'  # to_csv quotes a field holding the delimiter
        expected.append((as_line(**changes), reason, kind))
    bronze, quarantine = split(spark, rows)
    assert_df_equality(
        quarantine,
        expected_quarantine(spark, expected),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    assert bronze.collect() == []


def test_record_key_is_the_record_id_even_when_it_is_null(spark):
    # Not the entity key for these rows only: one column's values in record_key, always.
    _, quarantine = split(spark, [raw_row(id=None)])
    expected = expected_quarantine(
        spark, [(as_line(id=None), "column id: null but declared non-nullable", None)]
    )
    assert_df_equality(quarantine, expected, ignore_nullable=True)


def test_a_record_of_empty_fields_is_quarantined_as_empty(spark):
    # a spreadsheet's blank row ",,,,,,,," (a schema of nullable columns only would load it)
    empty = {c: None for c in MINI.names}
    _, quarantine = split(spark, [raw_row(**empty)])
    expected = expected_quarantine(
        spark,
        [(as_line(**empty), "empty record: none of the schema's 9 columns has a value", None)],
    )
    assert_df_equality(quarantine, expected, ignore_nullable=True)


@pytest.mark.parametrize(
    ("text", "fmt", "hour"),
    [
        ("02.01.2026 03:04", "dd.MM.yyyy HH:mm", 3),  # as init drafts them
        ("01/02/2026 03:04 PM", "MM/dd/yyyy hh:mm a", 15),
        ("1/2/2026 3:04am", "M/d/yyyy h:mma", 3),
        ("1767323040", "epoch_seconds", 3),  # 2026-01-02 03:04:00 UTC
        (" 1767323040000 ", "epoch_millis", 3),
    ],
)
def test_timestamp_format_applies_to_columns_without_their_own(spark, text, fmt, hour):
    bronze, quarantine = split(spark, [raw_row(ts=text)], timestamp_format=fmt)
    typed = list(GOOD_TYPED)
    typed[2] = datetime(2026, 1, 2, hour, 4, 0)
    expected = spark.createDataFrame([(*typed, "b1", SRC, AT)], BRONZE_SCHEMA)
    assert_df_equality(bronze, expected, ignore_nullable=True)
    assert quarantine.collect() == []


CORRUPT = {
    "too_few_fields": (
        "r9,c9,2026-01-02 03:04:05,02/01/2026,12.5,3,true,9.99",
        "expected 9 fields, found 8 (check ingest.csv.delimiter and the file's columns)",
    ),
    "too_many_fields_quoted_delimiter": (
        'r9,"c,9",2026-01-02 03:04:05,02/01/2026,12.5,3,true,9.99,hello,extra',
        "expected 9 fields, found 10 (check ingest.csv.delimiter and the file's columns)",
    ),
    "invalid_utf8": (
        "r9;c\ufffd;2026-01-02",
        "expected 9 fields, found 1 (check ingest.csv.delimiter and the file's columns); "
        "line holds bytes that are not valid utf-8 (decoded as U+FFFD); "
        "check ingest.csv.encoding (utf-8)",
    ),
}


def test_corrupt_lines_go_to_quarantine_as_written(spark):
    # As Spark's PERMISSIVE parser leaves them: partial fields plus the whole line.
    rows = [raw_row(corrupt=line, note=None, cust=None) for line, _ in CORRUPT.values()]
    bronze, quarantine = split(spark, rows)
    expected = expected_quarantine(
        spark, [(line, reason, None) for line, reason in CORRUPT.values()]
    )
    assert_df_equality(quarantine, expected, ignore_nullable=True, ignore_row_order=True)
    assert bronze.collect() == []


def test_malformed_json_record_reason(spark):
    raw = spark.createDataFrame(
        [(*[None] * len(MINI.names), '{"id": "r1", "cust":', SRC)],
        T.StructType(
            raw_struct(MINI, "json").fields + [T.StructField("source_file", T.StringType())]
        ),
    )
    bronze, quarantine = split_valid(raw, MINI, "b1", AT, fmt="json")
    expected = expected_quarantine(
        spark,
        [
            (
                '{"id": "r1", "cust":',
                "malformed JSON record: not a JSON object (the input must hold one JSON "
                "object per line)",
                None,
            )
        ],
    )
    assert_df_equality(quarantine, expected, ignore_nullable=True)
    assert bronze.collect() == []


def test_rows_split_between_bronze_and_quarantine(spark):
    rows = [
        raw_row(),
        raw_row(id="r2", cust="c2", n="two"),
        raw_row(id="r3", cust="c3", amount="-4"),
        raw_row(corrupt="r4,c4", cust=None, note=None),
    ]
    bronze, quarantine = split(spark, rows)
    r3 = list(GOOD_TYPED)
    r3[0], r3[1], r3[4] = "r3", "c3", -4.0  # out of range is the clean job's business
    expected_bronze = spark.createDataFrame(
        [(*GOOD_TYPED, "b1", SRC, AT), (*r3, "b1", SRC, AT)], BRONZE_SCHEMA
    )
    assert_df_equality(bronze, expected_bronze, ignore_nullable=True, ignore_row_order=True)
    expected_q = expected_quarantine(
        spark,
        [
            (as_line(id="r2", cust="c2", n="two"), "column n: 'two' is not an int", "r2"),
            (
                "r4,c4",
                "expected 9 fields, found 2 (check ingest.csv.delimiter and the file's columns)",
                None,
            ),
        ],
    )
    assert_df_equality(quarantine, expected_q, ignore_nullable=True, ignore_row_order=True)


# --------------------------------------------------------------------------- files on disk

TX_HEADER = (
    "transaction_id,customer_id,event_time,amount,account_age_days,num_items,distance_km,"
    "credit_score,channel,merchant_category,country,is_fraud"
)
TX_LINE_1 = "T000000001,C000001,2026-01-02 10:00:00,12.50,100,2,3.5,700,web,grocery,US,0"
TX_LINE_2 = "T000000002,C000002,2026-01-03 11:30:00,99.99,5,1,12.0,640,app,travel,GB,1"
TX_TYPED_1 = (
    "T000000001",
    "C000001",
    datetime(2026, 1, 2, 10, 0, 0),
    12.5,
    100,
    2,
    3.5,
    700,
    "web",
    "grocery",
    "US",
    0,
)


@pytest.fixture(scope="module")
def tx_schema(sample_schema_path):
    return load_schema(sample_schema_path)


def tx_bronze_schema(tx_schema) -> T.StructType:
    return T.StructType(
        [T.StructField(c.name, c.spark_type) for c in tx_schema.columns]
        + [
            T.StructField("batch_id", T.StringType()),
            T.StructField("source_file", T.StringType()),
            T.StructField("ingested_at", T.TimestampType()),
        ]
    )


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def ingest_file(spark, path: Path, schema):
    raw = read_raw(spark, str(path), "csv", schema)
    return split_valid(raw, schema, "b1", AT)


def src(path: Path) -> str:
    """Spark's ``_metadata.file_path`` of a local file."""
    return f"file:{urllib.parse.quote(str(path))}"


def assert_same_rows(actual, expected) -> None:
    """``actual``'s rows in ``expected``'s columns equal ``expected``'s, in any order."""
    assert_df_equality(
        actual.select(*expected.columns), expected, ignore_nullable=True, ignore_row_order=True
    )


def test_wrong_delimiter_quarantines_every_line(spark, tmp_path, tx_schema):
    text = "\n".join(x.replace(",", ";") for x in (TX_HEADER, TX_LINE_1, TX_LINE_2)) + "\n"
    f = write(tmp_path / "semi.csv", text.encode())
    bronze, quarantine = ingest_file(spark, f, tx_schema)
    reason = "expected 12 fields, found 1 (check ingest.csv.delimiter and the file's columns)"
    expected = spark.createDataFrame(
        [
            (TX_LINE_1.replace(",", ";"), reason, "ingest", None, src(f), "b1", AT),
            (TX_LINE_2.replace(",", ";"), reason, "ingest", None, src(f), "b1", AT),
        ],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantine, expected, ignore_nullable=True, ignore_row_order=True)
    assert bronze.collect() == []


def test_missing_column_quarantines_every_line(spark, tmp_path, tx_schema):
    def drop_country(line: str) -> str:
        fields = line.split(",")
        return ",".join(fields[:10] + fields[11:])

    lines = [drop_country(x) for x in (TX_HEADER, TX_LINE_1)]
    f = write(tmp_path / "missing.csv", ("\n".join(lines) + "\n").encode())
    bronze, quarantine = ingest_file(spark, f, tx_schema)
    expected = spark.createDataFrame(
        [
            (
                lines[1],
                "expected 12 fields, found 11 (check ingest.csv.delimiter and the file's columns)",
                "ingest",
                None,
                src(f),
                "b1",
                AT,
            )
        ],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantine, expected, ignore_nullable=True)
    assert bronze.collect() == []


def test_extra_field_quarantines_the_line(spark, tmp_path, tx_schema):
    # a header with an undeclared column is read by it: the extra field is not in the header
    lines = [TX_HEADER, TX_LINE_1 + ",hello", TX_LINE_2]
    f = write(tmp_path / "extra.csv", ("\n".join(lines) + "\n").encode())
    bronze, quarantine = ingest_file(spark, f, tx_schema)
    expected_q = spark.createDataFrame(
        [
            (
                lines[1],
                "expected 12 fields, found 13 (check ingest.csv.delimiter and the file's columns)",
                "ingest",
                None,
                src(f),
                "b1",
                AT,
            )
        ],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantine, expected_q, ignore_nullable=True)
    typed_2 = (
        "T000000002",
        "C000002",
        datetime(2026, 1, 3, 11, 30, 0),
        99.99,
        5,
        1,
        12.0,
        640,
        "app",
        "travel",
        "GB",
        1,
    )
    expected_b = spark.createDataFrame([(*typed_2, "b1", src(f), AT)], tx_bronze_schema(tx_schema))
    assert_df_equality(bronze, expected_b, ignore_nullable=True)


@pytest.mark.parametrize("content", [b"", (TX_HEADER + "\n").encode()], ids=["empty", "header"])
def test_empty_and_header_only_files_give_no_rows(spark, tmp_path, tx_schema, content):
    f = write(tmp_path / "in.csv", content)
    bronze, quarantine = ingest_file(spark, f, tx_schema)
    assert_df_equality(
        bronze, spark.createDataFrame([], tx_bronze_schema(tx_schema)), ignore_nullable=True
    )
    assert_df_equality(
        quarantine, spark.createDataFrame([], QUARANTINE_SCHEMA), ignore_nullable=True
    )


def test_latin1_bytes_are_quarantined_as_invalid_utf8(spark, tmp_path, tx_schema):
    bad = TX_LINE_2.replace("travel", "caf\u00e9").encode("latin-1")
    f = write(
        tmp_path / "latin1.csv", b"\n".join([TX_HEADER.encode(), TX_LINE_1.encode(), bad]) + b"\n"
    )
    bronze, quarantine = ingest_file(spark, f, tx_schema)
    expected_q = spark.createDataFrame(
        [
            (
                TX_LINE_2.replace("travel", "caf\ufffd"),
                "column merchant_category: holds bytes that are not valid utf-8 (decoded as "
                "U+FFFD); check ingest.csv.encoding (utf-8)",
                "ingest",
                "T000000002",
                src(f),
                "b1",
                AT,
            )
        ],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantine, expected_q, ignore_nullable=True)
    expected_b = spark.createDataFrame(
        [(*TX_TYPED_1, "b1", src(f), AT)], tx_bronze_schema(tx_schema)
    )
    assert_df_equality(bronze, expected_b, ignore_nullable=True)


def test_latin1_file_reads_clean_with_its_encoding(spark, tmp_path, tx_schema):
    from ml_engine.config import CsvOptions

    bad = TX_LINE_1.replace("grocery", "caf\u00e9").encode("latin-1")
    f = write(tmp_path / "latin1.csv", TX_HEADER.encode() + b"\n" + bad + b"\n")
    raw = read_raw(spark, str(f), "csv", tx_schema, CsvOptions(encoding="iso-8859-1"))
    bronze, quarantine = split_valid(raw, tx_schema, "b1", AT)
    typed = list(TX_TYPED_1)
    typed[9] = "caf\u00e9"
    expected_b = spark.createDataFrame([(*typed, "b1", src(f), AT)], tx_bronze_schema(tx_schema))
    assert_df_equality(bronze, expected_b, ignore_nullable=True)
    assert quarantine.collect() == []


def test_an_encoding_spark_cannot_read_is_a_config_error():
    from ml_engine.config import ConfigError, build_config

    with pytest.raises(ConfigError, match=r"ingest\.csv: encoding 'latin1' is not"):
        build_config(
            {
                "schema": "x.yaml",
                "storage": {"root": "/tmp/x"},
                "ingest": {"csv": {"encoding": "latin1"}},
            },
            check_schema=False,
        )


def test_json_lines_are_typed_and_malformed_records_quarantined(spark, tmp_path, tx_schema):
    good = json.dumps(dict(zip(tx_schema.names, TX_LINE_1.split(","), strict=True)))
    bad_type = json.dumps({**json.loads(good), "transaction_id": "T000000003", "num_items": "two"})
    f = write(tmp_path / "in.json", "\n".join([good, bad_type, '{"transaction_id": ']).encode())
    raw = read_raw(spark, str(f), "json", tx_schema)
    bronze, quarantine = split_valid(raw, tx_schema, "b1", AT, fmt="json")
    expected_b = spark.createDataFrame(
        [(*TX_TYPED_1, "b1", src(f), AT)], tx_bronze_schema(tx_schema)
    )
    assert_df_equality(bronze, expected_b, ignore_nullable=True)
    expected_q = spark.createDataFrame(
        [
            (
                bad_type.replace(", ", ",").replace(": ", ":"),
                "column num_items: 'two' is not an int",
                "ingest",
                "T000000003",
                src(f),
                "b1",
                AT,
            ),
            (
                '{"transaction_id": ',
                "malformed JSON record: not a JSON object (the input must hold one JSON "
                "object per line)",
                "ingest",
                None,
                src(f),
                "b1",
                AT,
            ),
        ],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantine, expected_q, ignore_nullable=True, ignore_row_order=True)


def test_epoch_times_load_from_numbers_and_text_and_others_are_quarantined(spark, tmp_path):
    schema = schema_from_dict(
        {
            "name": "e",
            "columns": [
                {"name": "id", "type": "string"},
                {"name": "ms", "type": "timestamp", "format": "epoch_millis"},
                {"name": "s", "type": "timestamp", "format": "epoch_seconds"},
            ],
        }
    )
    path = str(tmp_path / "pq")
    rows = [("a", 1767323040123, 1767323040.5), ("b", 1767323040123, 1767323040123.0)]
    spark.createDataFrame(rows, "id string, ms long, s double").write.parquet(path)
    bronze, quarantine = split_valid(read_raw(spark, path, "parquet", schema), schema, "b1", AT,
                                     fmt="parquet")  # fmt: skip
    at = datetime(2026, 1, 2, 3, 4, 0)  # the session zone is UTC
    assert [(r.id, r.ms, r.s) for r in bronze.collect()] == [
        ("a", at + timedelta(milliseconds=123), at + timedelta(milliseconds=500))
    ]
    # seconds given in milliseconds: beyond the year 9999, no time
    assert [(r.record_key, r.reason) for r in quarantine.collect()] == [
        (None, "column s: '1.767323040123E12' is not a number of seconds since 1970-01-01 UTC "
               "(format epoch_seconds)")
    ]  # fmt: skip


def test_whole_number_dates_of_parquet_files_load_by_their_format(spark, tmp_path):
    schema = schema_from_dict(
        {
            "name": "d",
            "columns": [
                {"name": "id", "type": "string", "role": "record_id"},
                {"name": "posted", "type": "date", "format": "yyyyMMdd"},
            ],
        }
    )
    path = str(tmp_path / "pq")
    spark.createDataFrame(
        [("a", 20261005), ("b", 20260230)], "id string, posted int"
    ).write.parquet(path)
    bronze, quarantine = split_valid(read_raw(spark, path, "parquet", schema), schema, "b1", AT,
                                     fmt="parquet")  # fmt: skip
    assert [(r.id, r.posted) for r in bronze.collect()] == [("a", date(2026, 10, 5))]
    assert [(r.record_key, r.reason) for r in quarantine.collect()] == [
        ("b", "column posted: '20260230' does not match date format yyyyMMdd")
    ]


def test_parquet_without_a_declared_column_is_refused(spark, tmp_path, tx_schema):
    path = tmp_path / "pq"
    spark.createDataFrame(
        [("T000000001", "C000001")], "transaction_id string, customer_id string"
    ).write.parquet(str(path))
    with pytest.raises(ValueError) as err:
        read_raw(spark, str(path), "parquet", tx_schema)
    msg = str(err.value)
    assert f"parquet input {path}: column(s) ['event_time', 'amount'," in msg
    assert "['transaction_id', 'customer_id']" in msg


def test_parquet_files_storing_a_column_in_different_widths_are_one_batch(spark, tmp_path):
    import pandas as pd

    schema = schema_from_dict(
        {
            "name": "widths",
            "columns": [
                {"name": "n", "type": "int", "nullable": False},
                {"name": "x", "type": "double"},
            ],
        }
    )
    path = tmp_path / "pq"
    path.mkdir()
    # pandas writes int32/float32 for one file, its int64/float64 defaults for the other
    pd.DataFrame(
        {"n": pd.Series([1, 2], dtype="int32"), "x": pd.Series([0.5, 1.5], dtype="float32")}
    ).to_parquet(path / "part-0.parquet")
    pd.DataFrame({"n": [3, 2**40], "x": [2.25, 3.75]}).to_parquet(path / "part-1.parquet")

    raw = read_raw(spark, str(path), "parquet", schema)
    bronze, quarantine = split_valid(raw, schema, "b1", AT, fmt="parquet")

    expected = spark.createDataFrame(
        [(1, 0.5, "b1"), (2, 1.5, "b1"), (3, 2.25, "b1")], "n int, x double, batch_id string"
    )
    assert_df_equality(
        bronze.select("n", "x", "batch_id"), expected, ignore_nullable=True, ignore_row_order=True
    )
    assert [(r.reason, r.source_file) for r in quarantine.collect()] == [
        (
            "column n: '1099511627776' (bigint) cannot be converted to int",
            src(path / "part-1.parquet"),
        )
    ]


def test_parquet_nanosecond_timestamps_load_truncated_to_microseconds(spark, tmp_path):
    """pandas writes TIMESTAMP(NANOS) by default; naive and zone-aware columns both load,
    the nanoseconds cut down to Spark's microseconds (also before 1970)."""
    import pandas as pd

    schema = schema_from_dict(
        {
            "name": "nanos",
            "columns": [
                {"name": "id", "type": "string", "nullable": False},
                {"name": "local_at", "type": "timestamp"},
                {"name": "utc_at", "type": "timestamp"},
                {"name": "day", "type": "date"},
            ],
        }
    )
    local = pd.to_datetime(
        ["2026-11-28 10:00:00.123456789", "1969-12-31 23:59:59.999999999", None],
        format="ISO8601",
    )
    aware = pd.to_datetime(
        ["2026-11-28 10:00:00.000000500+01:00", "2026-03-29 01:30:00+00:00", None],
        format="ISO8601",
        utc=True,
    )
    frame = pd.DataFrame({"id": ["a", "b", "c"], "local_at": local, "utc_at": aware})
    frame["day"] = local  # a nanosecond timestamp declared a date
    path = tmp_path / "pq"
    path.mkdir()
    frame.to_parquet(path / "part-0.parquet")  # pandas' default: nanoseconds
    import pyarrow.parquet as pq

    stored = pq.read_schema(path / "part-0.parquet")
    assert [stored.field(c).type.unit for c in ("local_at", "utc_at", "day")] == ["ns"] * 3

    raw = read_raw(spark, str(path), "parquet", schema)
    bronze, quarantine = split_valid(raw, schema, "b1", AT, fmt="parquet")

    def micros(stamp):  # pandas' own nanosecond count, floored to microseconds
        return None if pd.isna(stamp) else stamp.value // 1000

    expected = spark.createDataFrame(
        [
            (
                i,
                micros(local[n]),
                micros(aware[n]),
                None if pd.isna(local[n]) else str(local[n].date()),
            )
            for n, i in enumerate(["a", "b", "c"])
        ],
        "id string, local_at long, utc_at long, day string",
    )
    got = bronze.select(
        "id",
        F.unix_micros("local_at").alias("local_at"),
        F.unix_micros("utc_at").alias("utc_at"),
        F.col("day").cast("string").alias("day"),
    )
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)
    assert expected.where("id = 'b'").first().local_at == -1  # floored, not rounded to 0
    assert quarantine.count() == 0


def test_parquet_fractions_declared_whole_numbers_are_quarantined_not_truncated(spark, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = schema_from_dict(
        {
            "name": "whole",
            "columns": [{"name": "id", "type": "string"}, {"name": "minutes", "type": "int"}],
        }
    )
    path = tmp_path / "pq"
    path.mkdir()
    values = [15.0, 15.57, -3.0, float("nan"), 1e12, None, -0.5]
    # pyarrow keeps NaN a value (pandas would write it as null)
    pq.write_table(pa.table({"id": list("abcdefg"), "minutes": values}), path / "p.parquet")

    raw = read_raw(spark, str(path), "parquet", schema)
    bronze, quarantine = split_valid(raw, schema, "b1", AT, fmt="parquet")

    expected = spark.createDataFrame([("a", 15), ("c", -3), ("f", None)], "id string, minutes int")
    assert_df_equality(
        bronze.select("id", "minutes"), expected, ignore_nullable=True, ignore_row_order=True
    )
    why = "' (double) is not a whole number in the range of int; declare the column double to "
    assert sorted(r.reason for r in quarantine.collect()) == [
        f"column minutes: '-0.5{why}load such values",
        f"column minutes: '1.0E12{why}load such values",
        f"column minutes: '15.57{why}load such values",
        f"column minutes: 'NaN{why}load such values",
    ]


def test_csv_files_listing_the_columns_in_another_order_are_read_by_their_header(spark, tmp_path):
    import gzip

    schema = schema_from_dict(
        {
            "name": "order",
            "columns": [
                {"name": "id", "type": "string"},
                {"name": "Rooms_Count", "type": "int"},  # as init names the header below
                {"name": "area", "type": "int"},
            ],
        }
    )
    path = tmp_path / "in dir"
    write(path / "a.csv", b"id,Rooms Count,area\nA,2,70\n")
    # two ints swapped: read by position they would load as each other
    write(path / "b c.csv", b"ID,area,Rooms-Count\nB,55,1\n")
    with gzip.open(path / "d.csv.gz", "wb") as out:
        out.write(b"area,rooms_count,id\n90,3,D\n")
    # other names (a schema renamed by hand): still by position, as before
    write(path / "e.csv", b"code,n,size\nE,4,120\n")

    raw = read_raw(spark, str(path), "csv", schema)
    bronze, quarantine = split_valid(raw, schema, "b1", AT)

    expected = spark.createDataFrame(
        [("A", 2, 70, src(path / "a.csv")), ("B", 1, 55, src(path / "b c.csv")),
         ("D", 3, 90, src(path / "d.csv.gz")), ("E", 4, 120, src(path / "e.csv"))],
        "id string, Rooms_Count int, area int, source_file string",
    )  # fmt: skip
    assert_same_rows(bronze, expected)
    assert quarantine.count() == 0


def test_csv_headers_with_undeclared_columns_load_the_declared_ones_and_say_so(spark, tmp_path):
    from ml_engine.quality.ingest import read_input

    schema = schema_from_dict(
        {
            "name": "flats",
            "columns": [
                {"name": "id", "type": "string"},
                {"name": "n", "type": "int"},
                {"name": "area", "type": "int"},
            ],
        }
    )
    path = tmp_path / "in"
    # one column more than the schema: read by position, every line would be quarantined
    write(path / "a.csv", b"id,n,area,floor\nA,2,70,3\nB,x,55,1\nC,1,2,3,4\n")
    write(path / "b.csv", b"Floor,AREA,id,n\n4,80,F,5\n")  # reordered, with one more
    write(path / "c.csv", b"id,area\nE,90\n")  # lacks a column: by position, quarantined
    write(path / "d.csv", b"id,n,area\nD,3,90\n")

    raw, notes = read_input(spark, str(path), "csv", schema)
    bronze, quarantine = split_valid(raw, schema, "b1", AT)

    expected = spark.createDataFrame(
        [("A", 2, 70, src(path / "a.csv")), ("F", 5, 80, src(path / "b.csv")),
         ("D", 3, 90, src(path / "d.csv"))],
        "id string, n int, area int, source_file string",
    )  # fmt: skip
    assert_same_rows(bronze, expected)
    fields = "expected {} fields, found {} (check ingest.csv.delimiter and the file's columns)"
    expected_q = spark.createDataFrame(
        [("column n: 'x' is not an int", "B,x,55", src(path / "a.csv")),
         (fields.format(4, 5), "C,1,2,3,4", src(path / "a.csv")),
         (fields.format(3, 2), "E,90", src(path / "c.csv"))],
        "reason string, raw_record string, source_file string",
    )  # fmt: skip
    assert_same_rows(quarantine, expected_q)
    assert notes == [
        f"ingest: {path / 'a.csv'}: column(s) ['floor'] of the header are not in schema "
        "'flats' (<inline>) and were not loaded; declare them in the schema file to load them",
        f"ingest: {path / 'b.csv'}: column(s) ['Floor'] of the header are not in schema "
        "'flats' (<inline>) and were not loaded; declare them in the schema file to load them",
        f"ingest: {path / 'c.csv'}: the header names 2 columns where schema 'flats' (<inline>) "
        "declares 3: it lacks ['n']; its lines were read by position. Make the files and the "
        "schema file agree",
    ]


def test_a_csv_header_with_a_column_dropped_and_another_added_is_refused(spark, tmp_path):
    from ml_engine.quality.ingest import read_input

    schema = schema_from_dict(
        {
            "name": "loans",
            "columns": [
                {"name": "id", "type": "string"},
                {"name": "debt", "type": "double"},
                {"name": "balance", "type": "double"},
            ],
        }
    )
    path = tmp_path / "in"
    write(path / "a.csv", b"id,debt,balance\nA,0.5,-2.0\n")
    # renamed by hand: every shared column in its place, read by position
    write(path / "b.csv", b"id,owed,balance\nB,0.7,-1.0\n")
    raw, _ = read_input(spark, str(path), "csv", schema)
    bronze, _ = split_valid(raw, schema, "b1", AT)
    expected = spark.createDataFrame(
        [("A", 0.5, -2.0, src(path / "a.csv")), ("B", 0.7, -1.0, src(path / "b.csv"))],
        "id string, debt double, balance double, source_file string",
    )
    assert_same_rows(bronze, expected)
    # debt dropped, rate added after balance: balance's values would load as debt's
    write(path / "c.csv", b"id,balance,rate\nC,-4.9,120.0\n")
    with pytest.raises(ValueError) as err:
        read_input(spark, str(path), "csv", schema)
    assert str(err.value) == (
        f"{path / 'c.csv'}: the header lacks ['debt'] and names ['balance'] at other fields "
        "than schema 'loans' (<inline>) declares them (balance: field 2 in the file, 3 in the "
        "schema); read by position, its values would load under other columns' names. Make "
        "the files and the schema file agree (a column added or dropped: add or remove it in "
        "the schema file)"
    )


def test_parquet_and_json_columns_the_schema_does_not_declare_are_named_in_a_note(spark, tmp_path):
    from ml_engine.quality.ingest import read_input

    schema = schema_from_dict({"name": "p", "columns": [{"name": "id", "type": "string"}]})
    path = str(tmp_path / "p")
    spark.createDataFrame([("A", 1.5, "x")], "id string, score double, tag string").write.parquet(
        path
    )
    raw, notes = read_input(spark, path, "parquet", schema)
    assert raw.columns == ["id", "source_file"]
    assert notes == [
        f"ingest: column(s) ['score', 'tag'] of parquet input {path} are not in schema 'p' "
        "(<inline>) and were not loaded; declare them in the schema file to load them"
    ]
    lines = b'{"id": "A", "Score": 1.5}\n{"id": "B", "tag": "x"}\n'
    write(tmp_path / "j" / "a.json", lines)
    write(tmp_path / "j" / "b.json", b'{"ID": "C"}\n')
    raw, notes = read_input(spark, str(tmp_path / "j"), "json", schema)
    assert sorted(r.id or "-" for r in raw.collect()) == ["-", "A", "B"]  # keys match by case
    assert notes == [
        f"ingest: {tmp_path / 'j' / name}: key(s) [{key!r}] of the first record are not in "
        "schema 'p' (<inline>) and were not loaded; declare them in the schema file to load them"
        for name, key in (("a.json", "Score"), ("b.json", "ID"))
    ]


def json_batch(spark, tmp_path, lines, schema, undeclared, options=None):
    """(the file, bronze rows, quarantine rows) of JSON ``lines``, whose read notes the
    ``undeclared`` keys of the first line; ``options``: ``ingest.csv``."""
    from ml_engine.quality.ingest import read_input

    f = write(tmp_path / "j" / "a.json", ("\n".join(lines) + "\n").encode())
    raw, notes = read_input(spark, str(f), "json", schema)
    assert notes == [
        f"ingest: {f}: key(s) {undeclared} of the first record are not in schema "
        f"'{schema.name}' (<inline>) and were not loaded; declare them in the schema file to "
        "load them"
    ]
    return f, *split_valid(raw, schema, "b1", AT, fmt="json", options=options)


def test_json_keys_and_parquet_columns_load_from_their_input_name(spark, tmp_path):
    """A key or column named with a dot (which Spark reads as a nested field) or blanks loads
    under the schema's name; a quarantined JSON record keeps the input's keys."""
    from ml_engine.quality.ingest import read_input

    schema = schema_from_dict(
        {
            "name": "r",
            "columns": [
                {"name": "Reading_ID", "input_name": "Reading ID", "type": "string",
                 "nullable": False, "role": "record_id"},
                {"name": "reading_temp", "input_name": "reading.temp", "type": "double"},
                {"name": "zone", "type": "string"},
            ],
        }
    )  # fmt: skip
    lines = [
        '{"Reading ID": "r1", "reading.temp": 21.5, "zone": "N", "reading": {"temp": 9}}',
        '{"Reading ID": "r2", "reading.temp": "warm", "zone": "S"}',
    ]
    f, bronze, quarantine = json_batch(spark, tmp_path, lines, schema, ["reading"])
    expected = spark.createDataFrame(
        [("r1", 21.5, "N", "b1", src(f), AT)],
        "Reading_ID string, reading_temp double, zone string, batch_id string, "
        "source_file string, ingested_at timestamp",
    )
    assert_df_equality(bronze, expected, ignore_nullable=True)
    assert [(r.raw_record, r.reason, r.record_key) for r in quarantine.collect()] == [
        (
            '{"Reading ID":"r2","reading.temp":"warm","zone":"S"}',
            "column reading_temp: 'warm' is not a double",
            "r2",
        )
    ]

    path = str(tmp_path / "p")
    spark.createDataFrame(
        [("r3", 19.0, "W", 1)], "`Reading ID` string, `reading.temp` double, zone string, n int"
    ).write.parquet(path)
    raw, notes = read_input(spark, path, "parquet", schema)
    assert notes == [
        f"ingest: column(s) ['n'] of parquet input {path} are not in schema 'r' (<inline>) and "
        "were not loaded; declare them in the schema file to load them"
    ]
    assert [tuple(r) for r in raw.drop("source_file").collect()] == [("r3", 19.0, "W")]
    assert raw.columns == ["Reading_ID", "reading_temp", "zone", "source_file"]


NESTED = schema_from_dict(
    {
        "name": "events",
        "columns": [
            {"name": "id", "type": "string", "nullable": False, "role": "record_id"},
            {"name": "user_age", "input_name": ["user", "age"], "type": "int"},
            {"name": "country", "input_name": ["user", "address", "country"], "type": "string"},
            {"name": "total", "input_name": ["cart", "total"], "type": "double"},
        ],
    }
)


def test_fields_of_nested_json_objects_load_from_their_input_path(spark, tmp_path):
    """A list input_name reads a field of nested objects; a missing or null object leaves its
    fields null; a key the schema reads fields of that holds something else quarantines the
    record with its id and the key named; an undeclared nested key is noted."""

    lines = [
        '{"id": "e1", "user": {"age": 31, "address": {"country": "DE"}, "email": "x"}, '
        '"cart": {"total": "$5.50"}}',  # text with a sign: read with strip_signs
        '{"id": "e2", "user": {"age": 40}, "cart": null}',
        '{"id": "e3", "user": "anon", "cart": {"total": 2}}',
        '{"id": "e4", "user": {"age": "old", "address": {"country": "FR"}}, "cart": {"total": 1}}',
        '{"id": "e5", "user": {"address": "Main St"}}',
    ]
    from ml_engine.config import CsvOptions

    signs = CsvOptions(strip_signs=True)
    f, bronze, quarantine = json_batch(spark, tmp_path, lines, NESTED, ["user.email"], signs)
    expected = spark.createDataFrame(
        [("e1", 31, "DE", 5.5, "b1", src(f), AT), ("e2", 40, None, None, "b1", src(f), AT)],
        "id string, user_age int, country string, total double, batch_id string, "
        "source_file string, ingested_at timestamp",
    )
    assert_df_equality(bronze, expected, ignore_nullable=True)
    not_object = "', not the object whose fields the schema reads (input_name)"
    assert sorted((r.record_key, r.reason, r.raw_record) for r in quarantine.collect()) == [
        ("e3", f"malformed JSON record: key user holds 'anon{not_object}", lines[2]),
        (
            "e4",
            "column user_age: 'old' is not an int",
            '{"id":"e4","user.age":"old","user.address.country":"FR","cart.total":"1"}',
        ),
        ("e5", f"malformed JSON record: key user.address holds 'Main St{not_object}", lines[4]),
    ]


def test_fields_of_parquet_structs_load_from_their_input_path(spark, tmp_path):
    from ml_engine.quality.ingest import read_input

    path = str(tmp_path / "p")
    spark.createDataFrame(
        [("e1", (31, ("DE",)), (5.5,)), ("e2", None, (1.0,))],
        "id string, user struct<age: int, address: struct<country: string>>, "
        "cart struct<total: double>",
    ).write.parquet(path)
    raw, notes = read_input(spark, path, "parquet", NESTED)
    assert notes == []
    assert sorted(tuple(r) for r in raw.drop("source_file").collect()) == [
        ("e1", 31, "DE", 5.5),
        ("e2", None, None, 1.0),
    ]
    lacking = schema_from_dict(
        {"name": "l", "columns": [{"name": "tax", "input_name": ["cart", "tax"], "type": "double"}]}
    )
    with pytest.raises(ValueError, match=r"column\(s\) \['cart.tax'\] declared in schema 'l'"):
        read_input(spark, path, "parquet", lacking)


def test_first_lines_read_in_python_and_through_hadoop_agree(spark, tmp_path):
    import zlib

    from ml_engine.quality.ingest import _first_line

    header = "id,Rooms Count,área"
    body = f"{header}\r\nA,2,70\n".encode()
    write(tmp_path / "p lain.csv", body)
    with gzip.open(tmp_path / "g.csv.gz", "wb") as out:
        out.write(body)
    write(tmp_path / "z.csv.deflate", zlib.compress(body))  # Hadoop's DefaultCodec: zlib
    write(tmp_path / "empty.csv", b"")

    def uri(name: str) -> str:
        return (tmp_path / name).as_uri()

    assert [_first_line(spark, uri(n), "UTF-8") for n in ("p lain.csv", "g.csv.gz")] == [
        header,
        header,
    ]
    assert _first_line(spark, uri("z.csv.deflate"), "UTF-8") == header  # through the JVM
    assert _first_line(spark, uri("empty.csv"), "UTF-8") is None


def test_missing_input_path_is_file_not_found(spark, tmp_path, tx_schema):
    with pytest.raises(FileNotFoundError, match=f"input path {tmp_path / 'nope'} does not exist"):
        read_raw(spark, str(tmp_path / "nope"), "csv", tx_schema)


# --------------------------------------------------------------------------- odd but legal CSV

TX_QUOTED_LINE_BREAK = (
    'T000000003,C000003,2026-01-04 09:00:00,5.00,1,1,1.0,700,web,"gro\ncery",US,0'
)
TX_BAD_AMOUNT_MULTI_LINE = (
    'T000000004,C000004,2026-01-04 09:00:00,abc,1,1,1.0,700,web,"a\n  \nb",US,0'
)
TX_THIRTEEN_FIELDS_MULTI_LINE = (
    'T000000005,C000005,2026-01-04 09:00:00,5.00,1,1,1.0,700,web,"x\ny",US,0,extra'
)
# Blank and whitespace-only lines between records, RFC 4180 doubled quotes, quoted line
# breaks (one of them around a whitespace-only line, which is part of the field).
ODD_CSV = (
    "\n".join(
        [
            TX_HEADER,
            TX_LINE_1,
            "",
            "   ",
            TX_LINE_2.replace("travel", '"tra""vel"'),
            "\t",
            TX_QUOTED_LINE_BREAK,
            TX_BAD_AMOUNT_MULTI_LINE,
            "",
            TX_THIRTEEN_FIELDS_MULTI_LINE,
        ]
    )
    + "\n"
).encode()


def csv_records(data: bytes) -> list[tuple[list[str], int, str]]:
    """(fields, physical lines, original text) of each record of a UTF-8 CSV file, as
    Python's csv module reads it (RFC 4180: doubled quotes, line breaks inside quotes)."""
    lines = [x.decode() for x in data.splitlines(keepends=True)]
    reader = csv.reader(iter(lines), doublequote=True, strict=True)
    records, before = [], 0
    for fields in reader:
        text = "".join(lines[before : reader.line_num]).rstrip("\r\n")
        records.append((fields, reader.line_num - before, text))
        before = reader.line_num
    return records


def is_blank(text: str) -> bool:
    return all(ch <= " " for ch in text)


def tx_typed(fields: list[str]) -> tuple | None:
    """The bronze values of a transactions record, or None when ingest must reject it."""
    if len(fields) != 12:
        return None
    try:
        event_time = datetime.strptime(fields[2], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None
    numbers = []
    for text, kind in zip(fields[3:8], (float, int, int, float, int), strict=True):
        if text and not (NUMBER_RE if kind is float else INT_RE).match(text):
            return None
        numbers.append(kind(text) if text else None)
    strings = [f or None for f in fields[8:11]]
    return (fields[0], fields[1], event_time, *numbers, *strings, int(fields[11]))


def expected_split(data: bytes) -> tuple[list[tuple], list[tuple[str, str | None]]]:
    """(bronze values, quarantined (original text, record id)) of a CSV file with a header."""
    bronze, quarantined = [], []
    for fields, lines, text in csv_records(data)[1:]:
        if lines == 1 and is_blank(text):
            continue
        typed = tx_typed(fields)
        if typed is None:
            quarantined.append((text, fields[0] if len(fields) == 12 else None))
        else:
            bronze.append(typed)
    return bronze, quarantined


def expected_metrics(files: list[bytes]) -> dict[str, int]:
    """Ingest's counts of CSV files with one header line each, from their bytes."""
    m = dict.fromkeys(("rows_in", "bronze_rows", "quarantined_rows", "raw_lines"), 0)
    m.update(dict.fromkeys(("bronze_lines", "quarantined_lines", "blank_lines"), 0))
    for data in files:
        header, *records = csv_records(data)
        m["raw_lines"] += len(data.splitlines()) - header[1]
        for fields, lines, text in records:
            if lines == 1 and is_blank(text):
                m["blank_lines"] += 1
                continue
            out = "bronze" if tx_typed(fields) is not None else "quarantined"
            m["rows_in"] += 1
            m[f"{out}_rows"] += 1
            m[f"{out}_lines"] += lines
    return m


ODD_REASONS = {
    "T000000004": "column amount: 'abc' is not a double",
    None: "expected 12 fields, found 13 (check ingest.csv.delimiter and the file's columns)",
}


def test_rfc4180_records_load_whole_and_blank_lines_are_not_rows(spark, tmp_path, tx_schema):
    f = write(tmp_path / "odd.csv", ODD_CSV)
    bronze, _ = ingest_file(spark, f, tx_schema)
    rows, _ = expected_split(ODD_CSV)
    assert [r[9] for r in rows] == ["grocery", 'tra"vel', "gro\ncery"]
    expected = spark.createDataFrame(
        [(*r, "b1", src(f), AT) for r in rows], tx_bronze_schema(tx_schema)
    )
    assert_df_equality(bronze, expected, ignore_nullable=True, ignore_row_order=True)


def test_quarantined_multi_line_record_keeps_the_whole_record(spark, tmp_path, tx_schema):
    f = write(tmp_path / "odd.csv", ODD_CSV)
    _, quarantine = ingest_file(spark, f, tx_schema)
    _, rejected = expected_split(ODD_CSV)
    assert [text.count("\n") for text, _ in rejected] == [2, 1]
    expected = spark.createDataFrame(
        [(text, ODD_REASONS[key], "ingest", key, src(f), "b1", AT) for text, key in rejected],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantine, expected, ignore_nullable=True, ignore_row_order=True)


@pytest.mark.parametrize("suffix", [".gz", ".bz2"])
def test_compressed_files_are_read_by_their_extension(spark, tmp_path, tx_schema, suffix):
    compress = gzip.compress if suffix == ".gz" else bz2.compress
    f = write(tmp_path / f"odd.csv{suffix}", compress(ODD_CSV))
    bronze, quarantine = ingest_file(spark, f, tx_schema)
    rows, rejected = expected_split(ODD_CSV)
    expected = spark.createDataFrame(
        [(*r, "b1", src(f), AT) for r in rows], tx_bronze_schema(tx_schema)
    )
    assert_df_equality(bronze, expected, ignore_nullable=True, ignore_row_order=True)
    expected_q = spark.createDataFrame(
        [(text, ODD_REASONS[key], "ingest", key, src(f), "b1", AT) for text, key in rejected],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantine, expected_q, ignore_nullable=True, ignore_row_order=True)


def test_multiline_off_reads_every_physical_line_as_a_record(spark, tmp_path, tx_schema):
    f = write(tmp_path / "in.csv", f"{TX_HEADER}\n{TX_QUOTED_LINE_BREAK}\n".encode())
    raw = read_raw(spark, str(f), "csv", tx_schema, CsvOptions(multiline=False))
    bronze, quarantine = split_valid(raw, tx_schema, "b1", AT)
    reason = (
        "malformed CSV record: a quoted field is not closed (check ingest.csv.quote, "
        "ingest.csv.escape and ingest.csv.multiline)"
    )
    expected = spark.createDataFrame(
        [
            (fragment, reason, "ingest", None, src(f), "b1", AT)
            for fragment in TX_QUOTED_LINE_BREAK.split("\n")
        ],
        QUARANTINE_SCHEMA,
    )
    assert_df_equality(quarantine, expected, ignore_nullable=True, ignore_row_order=True)
    assert bronze.collect() == []


def test_backslash_escape_reads_backslash_escaped_quotes(spark, tmp_path, tx_schema):
    line = TX_LINE_1.replace("grocery", '"gro\\"cery"')
    f = write(tmp_path / "in.csv", f"{TX_HEADER}\n{line}\n".encode())
    raw = read_raw(spark, str(f), "csv", tx_schema, CsvOptions(escape="\\"))
    bronze, quarantine = split_valid(raw, tx_schema, "b1", AT)
    typed = list(TX_TYPED_1)
    typed[9] = 'gro"cery'
    expected = spark.createDataFrame([(*typed, "b1", src(f), AT)], tx_bronze_schema(tx_schema))
    assert_df_equality(bronze, expected, ignore_nullable=True)
    assert quarantine.collect() == []


# (file bytes, multiline, header) -> (physical lines, header lines, whitespace-only lines)
HEADER_CASES = {
    "quoted_line_break_in_header": (b'id,"amount\n(USD)"\n1,2\n', True, True, (3, 2, 0)),
    "empty_line_before_header": (b"\nid,amount\n1,2\n", True, True, (3, 1, 1)),
    # The multi-line reader takes a whitespace-only first line as the header; the line
    # reader skips it as blank.
    "spaces_before_header_multiline": (b"  \nid,amount\n1,2\n", True, True, (3, 1, 0)),
    "spaces_before_header_line_reader": (b"  \nid,amount\n1,2\n", False, True, (3, 1, 1)),
    "no_header": (b"1,2\n\t\n3,4", True, False, (3, 0, 1)),
}


@pytest.mark.parametrize("case", list(HEADER_CASES))
def test_line_counts_take_header_lines_as_spark_does(spark, tmp_path, case):
    data, multiline, header, expected = HEADER_CASES[case]
    f = write(tmp_path / "in.csv", data)
    counts = read_line_counts(spark, str(f), CsvOptions(multiline=multiline, header=header))
    assert tuple(counts.first()) == expected


def test_utf16_lines_are_counted_on_the_decoded_text(spark, tmp_path):
    f = write(tmp_path / "in.csv", ODD_CSV.decode().encode("utf-16"))
    counts = read_line_counts(spark, str(f), CsvOptions(encoding="utf-16")).first()
    lines = ODD_CSV.decode().splitlines()
    assert tuple(counts) == (len(lines), 1, sum(is_blank(x) for x in lines[1:]))


def test_utf16_without_multiline_is_a_config_error():
    from ml_engine.config import ConfigError, build_config

    with pytest.raises(ConfigError, match=r"ingest\.csv: .*encoding 'utf-16' needs multiline"):
        build_config(
            {
                "schema": "x.yaml",
                "storage": {"root": "/tmp/x"},
                "ingest": {"csv": {"encoding": "utf-16", "multiline": False}},
            },
            check_schema=False,
        )


# --------------------------------------------------------------------------- dirty sample data

NUMBER_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
INT_RE = re.compile(r"^-?[0-9]+$")


def untypable(line: str) -> bool:
    """Whether a transactions line cannot be typed, decided from the text alone."""
    f = line.split(",")
    if len(f) != 12:
        return True
    try:
        datetime.strptime(f[2], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return True
    checks = [(f[3], NUMBER_RE), (f[4], INT_RE), (f[5], INT_RE), (f[6], NUMBER_RE), (f[7], INT_RE)]
    return any(v != "" and not rx.match(v) for v, rx in checks)


@pytest.fixture(scope="module")
def dirty(spark, tmp_path_factory, tx_schema):
    out = tmp_path_factory.mktemp("dirty")
    generate_sample_data(spark, str(out), rows=1_500, current_rows=30, seed=3, files=2)
    manifest = json.loads((out / "MANIFEST.json").read_text())
    lines = []
    for f in sorted((out / "reference").glob("part-*")):
        lines += f.read_text(encoding="utf-8").splitlines()[1:]
    raw = read_raw(spark, str(out / "reference"), "csv", tx_schema)
    bronze, quarantine = split_valid(raw, tx_schema, "reference", AT)
    return manifest["batches"]["reference"], lines, bronze.collect(), quarantine.collect()


def test_sample_data_lines_are_bronze_plus_quarantine_exactly(dirty):
    _, lines, bronze, quarantine = dirty
    bad = [x for x in lines if untypable(x)]
    good_ids = [x.split(",")[0] for x in lines if not untypable(x)]
    assert Counter(r["raw_record"] for r in quarantine) == Counter(bad)
    assert Counter(r["transaction_id"] for r in bronze) == Counter(good_ids)
    assert len(bronze) + len(quarantine) == len(lines)


def test_sample_data_quarantine_reasons_match_manifest_counts(dirty):
    doc, _, _, quarantine = dirty
    reasons = [r["reason"] for r in quarantine]
    field_count = [r for r in reasons if r.startswith("expected 12 fields, found ")]
    assert len(field_count) == doc["dirt"]["wrong_field_count"]
    assert Counter(r.split(",")[1].strip().split(" ")[1] for r in field_count) == Counter(
        {k.split(" ")[0]: v for k, v in doc["dirt_detail"].get("wrong_field_count", {}).items()}
    )
    ts = [r for r in reasons if r.startswith("column event_time: ") and "does not match" in r]
    assert len(ts) == doc["dirt"]["unparsable_timestamp"]
    number = Counter(
        re.match(r"column (\w+): '.*' is not an? (double|int)$", r).group(1)
        for r in reasons
        if " is not a" in r
    )
    assert number == Counter(doc["dirt_detail"].get("unparsable_number", {}))
    assert len(reasons) == doc["malformed_lines"]


def test_sample_data_dirt_that_types_stays_in_bronze(dirty):
    doc, lines, bronze, _ = dirty
    dirt = doc["dirt"]
    assert sum(r["credit_score"] is None for r in bronze) == dirt["null_credit_score"]
    assert sum(r["distance_km"] is None for r in bronze) == dirt["null_distance_km"]
    assert sum(r["channel"] is None for r in bronze) == dirt["null_channel"]
    assert sum(r["amount"] < 0 for r in bronze) == dirt["negative_amount"]
    assert sum(r["credit_score"] == 999 for r in bronze) == dirt["credit_score_out_of_range"]
    canonical = {"web", "app", "store", "phone", None}
    assert sum(r["channel"] not in canonical for r in bronze) == dirt["channel_spelling"]
    ids = Counter(r["transaction_id"] for r in bronze)
    assert sum(n - 1 for n in ids.values()) == dirt["duplicate"]


# --------------------------------------------------------------------------- the job


def job_config(tmp_path: Path, schema_path: Path, input_path: Path | None, **extra):
    from ml_engine.config import build_config

    data = {"schema": str(schema_path), "storage": {"root": str(tmp_path / "store")}}
    # These batches are a few rows with one bad row each: allow any rejected share.
    data["ingest"] = {"max_rejected_fraction": 1.0}
    if input_path is not None:
        data["ingest"]["path"] = str(input_path)
    data.update(extra)
    return build_config(data)


@pytest.fixture()
def tables(spark):
    from ml_engine.tables import open_tables

    return open_tables(spark, "rs")


BAD_LINE = "T000000003,C000003,2026-01-04 09:00:00,abc,1,1,1.0,700,web,grocery,US,0"
TX_TYPED_2 = (
    "T000000002",
    "C000002",
    datetime(2026, 1, 3, 11, 30, 0),
    99.99,
    5,
    1,
    12.0,
    640,
    "app",
    "travel",
    "GB",
    1,
)


def test_rerunning_a_batch_replaces_its_rows(
    spark, tmp_path, sample_schema_path, tx_schema, tables
):
    from ml_engine.quality.ingest import run_ingest

    batch_dir = tmp_path / "raw" / "day1"
    f = write(
        batch_dir / "part-0.csv", "\n".join([TX_HEADER, TX_LINE_1, TX_LINE_2, BAD_LINE]).encode()
    )
    cfg = job_config(tmp_path, sample_schema_path, batch_dir)
    first = run_ingest(spark, cfg, tables)
    second = run_ingest(spark, cfg, tables)

    expected_metrics = {
        "batch_id": "day1",
        "rows_in": 3,
        "bronze_rows": 2,
        "quarantined_rows": 1,
        "raw_lines": 3,
        "bronze_lines": 2,
        "quarantined_lines": 1,
        "blank_lines": 0,
    }
    assert first.metrics == expected_metrics
    assert second.metrics == expected_metrics
    assert second.job == "ingest"
    assert second.outputs == {
        "bronze": str(tmp_path / "store" / "tables" / "bronze"),
        "quarantine": str(tmp_path / "store" / "tables" / "quarantine"),
    }
    bronze = tables.read(second.outputs["bronze"]).drop("ingested_at")
    expected_b = spark.createDataFrame(
        [(*TX_TYPED_1, "day1", src(f), AT), (*TX_TYPED_2, "day1", src(f), AT)],
        tx_bronze_schema(tx_schema),
    ).drop("ingested_at")
    assert_df_equality(
        bronze, expected_b, ignore_nullable=True, ignore_row_order=True, ignore_column_order=True
    )
    quarantine = tables.read(second.outputs["quarantine"]).drop("ingested_at")
    expected_q = spark.createDataFrame(
        [
            (
                BAD_LINE,
                "column amount: 'abc' is not a double",
                "ingest",
                "T000000003",
                src(f),
                "day1",
                AT,
            )
        ],
        QUARANTINE_SCHEMA,
    ).drop("ingested_at")
    assert_df_equality(
        quarantine,
        expected_q,
        ignore_nullable=True,
        ignore_row_order=True,
        ignore_column_order=True,
    )


def test_another_batch_is_added_beside_the_first(spark, tmp_path, sample_schema_path, tables):
    from ml_engine.quality.ingest import run_ingest

    day1 = tmp_path / "raw" / "day1"
    day2 = tmp_path / "raw" / "day2"
    write(day1 / "a.csv", "\n".join([TX_HEADER, TX_LINE_1]).encode())
    write(day2 / "a.csv", "\n".join([TX_HEADER, TX_LINE_2, BAD_LINE]).encode())
    run_ingest(spark, job_config(tmp_path, sample_schema_path, day1), tables)
    result = run_ingest(spark, job_config(tmp_path, sample_schema_path, day2), tables)
    bronze = tables.read(result.outputs["bronze"]).select("batch_id", "transaction_id")
    expected = spark.createDataFrame(
        [("day1", "T000000001"), ("day2", "T000000002")], "batch_id string, transaction_id string"
    )
    assert_df_equality(bronze, expected, ignore_nullable=True, ignore_row_order=True)
    quarantine = tables.read(result.outputs["quarantine"]).select("batch_id", "record_key")
    expected_q = spark.createDataFrame(
        [("day2", "T000000003")], "batch_id string, record_key string"
    )
    assert_df_equality(quarantine, expected_q, ignore_nullable=True)


def test_files_of_another_day_named_like_a_batch_do_not_replace_it(
    spark, tmp_path, sample_schema_path, tables
):
    from ml_engine.quality.ingest import run_ingest
    from ml_engine.results import JobError

    day1 = write(tmp_path / "drop" / "day 1" / "tx.csv", "\n".join([TX_HEADER, TX_LINE_1]).encode())
    day2 = write(tmp_path / "drop" / "day2" / "tx.csv", "\n".join([TX_HEADER, TX_LINE_2]).encode())
    first = run_ingest(spark, job_config(tmp_path, sample_schema_path, day1), tables)
    bronze = first.outputs["bronze"]
    version = tables.version(bronze)

    with pytest.raises(JobError) as err:
        run_ingest(spark, job_config(tmp_path, sample_schema_path, day2), tables)

    assert str(err.value) == (
        f"ingest: batch 'tx' (the name of ingest.path {day2}) already holds the rows of other "
        f"files ({day1}) than this run reads ({day2}), and ingesting would replace them. Give "
        "this batch its own id with --set batch_id=NAME, or, to replace batch 'tx' with these "
        "files, set it explicitly: --set batch_id=tx"
    )
    assert tables.version(bronze) == version
    # the same files again (a rerun) and an explicit batch id both replace the batch
    run_ingest(spark, job_config(tmp_path, sample_schema_path, day1), tables)
    run_ingest(spark, job_config(tmp_path, sample_schema_path, day2, batch_id="tx"), tables)
    rows = tables.read(bronze).select("batch_id", "transaction_id", "source_file")
    expected = spark.createDataFrame(
        [("tx", "T000000002", src(day2))],
        "batch_id string, transaction_id string, source_file string",
    )
    assert_df_equality(rows, expected, ignore_nullable=True)


def test_header_only_input_writes_empty_batch(spark, tmp_path, sample_schema_path, tables):
    from ml_engine.jobs import run_job
    from ml_engine.preflight import preflight

    batch_dir = tmp_path / "raw" / "empty"
    write(batch_dir / "a.csv", (TX_HEADER + "\n").encode())
    write(batch_dir / "b.csv", b"")
    cfg = job_config(tmp_path, sample_schema_path, batch_dir)
    result = run_job("ingest", spark, cfg, tables)
    assert result.metrics == {
        "batch_id": "empty",
        "rows_in": 0,
        "bronze_rows": 0,
        "quarantined_rows": 0,
        "raw_lines": 0,
        "bronze_lines": 0,
        "quarantined_lines": 0,
        "blank_lines": 0,
    }
    assert result.notes == [
        f"ingest: {batch_dir} holds no records (headers and blank lines only): batch empty is "
        "empty, and the later jobs will not find it in bronze; check the export"
    ]
    assert tables.read(result.outputs["bronze"]).collect() == []
    # clean's check before Spark starts names the run that wrote the batch without rows
    runs = tables.read(cfg.storage.table_path("job_runs")).orderBy("table_path").collect()
    assert [(r.job, r.batch_id, r.table_path) for r in runs] == [
        ("ingest", "empty", "bronze"),
        ("ingest", "empty", "quarantine"),
    ]
    bronze = cfg.storage.table_path("bronze")
    assert preflight(cfg, ["clean"]) == [
        f"clean: batch 'empty' has no rows in its input table bronze ({bronze}): ingest last ran "
        f"for it (completed {runs[0].completed_at:%Y-%m-%d %H:%M:%S} UTC) and left it without "
        "rows. Check the batch's input (and the quarantine, for rows ingest rejected), then rerun "
        "ingest; or set batch_id to another batch: none"
    ]


def test_missing_input_path_is_a_job_error(spark, tmp_path, sample_schema_path, tables):
    from ml_engine.quality.ingest import run_ingest
    from ml_engine.results import JobError

    missing = tmp_path / "raw" / "nope"
    cfg = job_config(tmp_path, sample_schema_path, missing)
    with pytest.raises(JobError) as err:
        run_ingest(spark, cfg, tables)
    assert str(err.value) == (
        f"ingest input {missing} does not exist; check ingest.path (the raw file, directory "
        "or glob to load)"
    )
    assert not (tmp_path / "store" / "tables" / "bronze").exists()


def test_unset_input_path_is_a_job_error(spark, tmp_path, sample_schema_path, tables):
    from ml_engine.quality.ingest import run_ingest
    from ml_engine.results import JobError

    cfg = job_config(tmp_path, sample_schema_path, None, batch_id="b1")
    with pytest.raises(JobError, match=r"^ingest\.path is not set"):
        run_ingest(spark, cfg, tables)


def too_many_rejected(spark, cfg, tables, fraction: float) -> tuple[str, str]:
    """The JobError message of an ingest run with ``max_rejected_fraction`` ``fraction``, and
    the quarantine's path."""
    from ml_engine.quality.ingest import run_ingest
    from ml_engine.results import JobError

    cfg.ingest.max_rejected_fraction = fraction
    with pytest.raises(JobError) as err:
        run_ingest(spark, cfg, tables)
    return str(err.value), cfg.storage.table_path("quarantine")


def numbers_batch(tmp_path, sample_schema_path, batch, delimiter, values):
    """The config of a batch of four sample-schema rows whose ``amount``, ``num_items`` and
    ``distance_km`` are ``values`` (quoted text, the delimiter being ``delimiter``)."""
    batch_dir = tmp_path / "raw" / batch
    batch_dir.mkdir(parents=True)
    header = ["transaction_id", "customer_id", "event_time", "amount", "account_age_days",
              "num_items", "distance_km", "credit_score", "channel", "merchant_category",
              "country", "is_fraud"]  # fmt: skip
    rows = [
        [f"T00000000{i}", "C000001", "2026-01-01 10:00:00", f'"{a}"', "30", f'"{n}"', f'"{km}"',
         "700", "web", "grocery", "US", "0"]
        for i, (a, n, km) in enumerate(values, 1)
    ]  # fmt: skip
    lines = [delimiter.join(fields) for fields in [header, *rows]]
    (batch_dir / "part.csv").write_text("\n".join(lines) + "\n")
    cfg = job_config(tmp_path, sample_schema_path, batch_dir)
    cfg.ingest.csv.delimiter = delimiter
    return cfg


def loaded_numbers(spark, cfg, tables):
    """(bronze's id, amount, num_items, distance_km sorted; quarantine's record keys and
    reasons) after an ingest of ``cfg``'s batch that rejects any share of it."""
    from ml_engine.quality.ingest import run_ingest

    cfg.ingest.max_rejected_fraction = 1.0
    run_ingest(spark, cfg, tables)
    bronze = tables.read(cfg.storage.table_path("bronze"))
    columns = ("transaction_id", "amount", "num_items", "distance_km")
    quarantined = tables.read(cfg.storage.table_path("quarantine")).collect()
    return (
        sorted(tuple(r) for r in bronze.select(*columns).collect()),
        [(r.record_key, r.reason) for r in quarantined],
    )


# A European export: ';' between fields, decimal commas, points grouping thousands; a number
# written with a point does not load. A US export: dollar and percent signs, commas grouping
# thousands (quoted, the delimiter being a comma too); a number grouped otherwise does not
# load. (delimiter, values, the settings that read them, what the defaults reject, the hint,
# the third row's amount and the fourth row's reason once read)
LOCALE_EXPORTS = {
    "decimal_comma": (
        ";",
        [("12,5", "1", "2,25"), ("1.234,50", "1.000", "-0,5"), ("7", "2", "3"), ("1.5", "1", "0")],
        {"decimal": ","},
        "2 of 4 rows",
        "the numbers are written with a decimal comma: set ingest.csv.decimal: ','",
        (7.0, "column amount: '1.5' is not a double written with a decimal comma"),
    ),
    "grouped_thousands": (
        ",",
        [("$12.50", "1", "2.25"), ("$1,234.50", "1,000", "-0.5"), ("-$7", "2", "3%"),
         ("1,23.5", "1", "0")],
        {"thousands": ",", "strip_signs": True},
        "4 of 4 rows",
        "the numbers group thousands by commas: set ingest.csv.thousands: ','; the numbers carry "
        "currency or percent signs: set ingest.csv.strip_signs: true",
        (-7.0, "column amount: '1,23.5' is not a double (thousands grouped by ',')"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("export", LOCALE_EXPORTS)
def test_numbers_written_for_a_locale_load_with_their_ingest_csv_setting(
    spark, tmp_path, sample_schema_path, tables, export
):
    """With the defaults rows are rejected and the error names the settings that read them;
    with them they load, and the fourth row's amount is quarantined."""
    delimiter, values, settings, rejected, hint, (third_amount, reason) = LOCALE_EXPORTS[export]
    cfg = numbers_batch(tmp_path, sample_schema_path, "b", delimiter, values)
    message, _ = too_many_rejected(spark, cfg, tables, 0.25)
    assert message.startswith(f"ingest: {rejected} of batch 'b' were rejected")
    assert message.endswith(f"(or raise ingest.max_rejected_fraction); {hint}")

    for key, value in settings.items():
        setattr(cfg.ingest.csv, key, value)
    assert loaded_numbers(spark, cfg, tables) == (
        [("T000000001", 12.5, 1, 2.25), ("T000000002", 1234.5, 1000, -0.5),
         ("T000000003", third_amount, 2, 3.0)],
        [("T000000004", reason)],
    )  # fmt: skip


def test_thousands_separator_equal_to_the_decimal_one_is_refused():
    from pydantic import ValidationError

    from ml_engine.config import CsvOptions

    with pytest.raises(ValidationError, match="thousands ',' is also the decimal separator"):
        CsvOptions(decimal=",", thousands=",")


def test_top_reasons_leave_out_values_and_keep_quoted_formats(spark):
    from ml_engine.quality.ingest import top_reasons

    iso = "does not match timestamp format yyyy-MM-dd'T'HH:mm:ss"
    reasons = [
        f"column opened_at: '2026/11/01 10:00' {iso}",
        f"column opened_at: '01.11.2026' {iso}; column n: 'it's' is not an int",
        "column n: 'x' is not an int",
        f"column opened_at: '' {iso}",
        "column m: '1.5' (double) is not a whole number in the range of int",
        "column m: '2.5' (double) is not a whole number in the range of int",
        None,
        "malformed CSV line: not 4 fields (check ingest.csv.quote and ingest.csv.escape)",
        f"column note: '{'y' * 41}' is not a date",
    ]
    parsed = spark.createDataFrame([(r,) for r in reasons], "_reason string")
    # each example: the smallest non-empty value of its problem, in code point order
    assert top_reasons(parsed, limit=5) == [
        (f"column opened_at: '…' {iso}", 3, "01.11.2026"),
        ("column m: '…' (double) is not a whole number in the range of int", 2, "1.5"),
        ("column n: '…' is not an int", 2, "it's"),
        ("column note: '…' is not a date", 1, "y" * 39 + "…"),
        ("malformed CSV line: not 4 fields (check ingest.csv.quote and ingest.csv.escape)", 1,
         None),
    ]  # fmt: skip


def test_too_many_rejected_rows_commit_quarantine_not_bronze_and_name_top_reasons(
    spark, tmp_path, sample_schema_path, tables
):

    batch_dir = tmp_path / "raw" / "day9"
    batch_dir.mkdir(parents=True)
    header = "transaction_id,customer_id,event_time,amount,account_age_days,num_items,"
    header += "distance_km,credit_score,channel,merchant_category,country,is_fraud"
    good = "T000000001,C000001,2026-01-01 10:00:00,12.5,30,1,2.0,700,web,grocery,US,0"
    bad_amount = "T00000000{i},C000001,2026-01-01 10:00:00,{v},30,1,2.0,700,web,grocery,US,0"
    bad_time = "T000000009,C000001,01/01/2026,3.0,30,1,2.0,700,web,grocery,US,0"
    lines = [header, good]
    lines += [bad_amount.format(i=i, v=v) for i, v in ((2, "abc"), (3, "1.2.3"), (4, "x"))]
    lines += [bad_time]
    (batch_dir / "part.csv").write_text("\n".join(lines) + "\n")
    cfg = job_config(tmp_path, sample_schema_path, batch_dir)
    message, quarantine_path = too_many_rejected(spark, cfg, tables, 0.5)
    assert message == (
        "ingest: 4 of 5 rows of batch 'day9' were rejected (80.0%), more than "
        "ingest.max_rejected_fraction 0.5; bronze was not written. Top reasons: column amount: "
        "'…' is not a double (3 rows, e.g. '1.2.3'); column event_time: '…' does not match "
        "timestamp format yyyy-MM-dd HH:mm:ss (1 rows, e.g. '01/01/2026'). The rejected rows "
        f"are in {quarantine_path}; check the "
        "schema, ingest.csv and ingest.timestamp_format (or raise ingest.max_rejected_fraction)"
    )
    quarantined = tables.read(quarantine_path).select("record_key").collect()
    assert sorted(r.record_key for r in quarantined) == [
        "T000000002",
        "T000000003",
        "T000000004",
        "T000000009",
    ]
    assert not tables.exists(cfg.storage.table_path("bronze"))


def test_a_batch_whose_header_lacks_a_column_is_refused_with_the_header_named(
    spark, tmp_path, sample_schema_path, tables
):
    from ml_engine.quality.ingest import run_ingest

    header = TX_HEADER.replace(",channel", "")
    line = TX_LINE_1.replace(",web", "")
    part = write(tmp_path / "raw" / "day8" / "part.csv", f"{header}\n{line}\n".encode())
    extra = write(
        tmp_path / "raw" / "day8" / "more.csv", f"{TX_HEADER},floor\n{TX_LINE_2},3\n".encode()
    )
    cfg = job_config(tmp_path, sample_schema_path, part.parent)
    message, quarantine_path = too_many_rejected(spark, cfg, tables, 0.1)
    assert message == (
        "ingest: 1 of 2 rows of batch 'day8' were rejected (50.0%), more than "
        "ingest.max_rejected_fraction 0.1; bronze was not written. Top reasons: expected 12 "
        "fields, found 11 (check ingest.csv.delimiter and the file's columns) (1 rows). The "
        f"rejected rows are in {quarantine_path}; check the schema, ingest.csv and "
        "ingest.timestamp_format (or raise ingest.max_rejected_fraction). "
        f"{extra}: column(s) ['floor'] of the header are not in schema 'transactions' "
        f"({sample_schema_path}) and were not loaded; declare them in the schema file to load "
        f"them. {part}: the header names 11 columns where schema 'transactions' "
        f"({sample_schema_path}) declares 12: it lacks ['channel']; its lines were read by "
        "position. Make the files and the schema file agree"
    )
    # with the column back in the file, the batch loads, and the note stays
    write(part, f"{TX_HEADER}\n{TX_LINE_1}\n".encode())
    result = run_ingest(spark, cfg, tables)
    assert result.notes == [
        f"ingest: {extra}: column(s) ['floor'] of the header are not in schema 'transactions' "
        f"({sample_schema_path}) and were not loaded; declare them in the schema file to load "
        "them"
    ]
    bronze = tables.read(result.outputs["bronze"]).select("transaction_id", "channel")
    expected = spark.createDataFrame(
        [("T000000001", "web"), ("T000000002", "app")], "transaction_id string, channel string"
    )
    assert_df_equality(bronze, expected, ignore_nullable=True, ignore_row_order=True)


def test_a_refused_rerun_leaves_jobs_reading_the_accepted_run_of_the_batch(
    spark, tmp_path, sample_schema_path, tables
):
    from ml_engine.catalog import BatchCatalog
    from ml_engine.jobs import run_job
    from ml_engine.results import JobError

    bad = TX_LINE_2.replace("99.99", "abc")
    part = write(tmp_path / "raw" / "d1" / "part.csv", f"{TX_HEADER}\n{TX_LINE_1}\n".encode())
    cfg = job_config(tmp_path, sample_schema_path, part.parent)
    run_job("ingest", spark, cfg, tables)
    bronze, quarantine = (cfg.storage.table_path(n) for n in ("bronze", "quarantine"))
    bronze_version = tables.version(bronze)
    # the batch again, its second line now bad: 1 of 2 rejected is over 0.1
    write(part, f"{TX_HEADER}\n{TX_LINE_1}\n{bad}\n".encode())
    cfg.ingest.max_rejected_fraction = 0.1
    with pytest.raises(JobError):
        run_job("ingest", spark, cfg, tables)

    catalog = BatchCatalog(tables, cfg.storage.table_path("job_runs"))
    assert tables.version(bronze) == bronze_version
    assert catalog.batch_rows(quarantine, "d1").collect() == []  # the accepted run had none
    rejected = tables.read(quarantine).select("batch_id", "record_key", "raw_record")
    expected = spark.createDataFrame(
        [("d1", "T000000002", bad)], "batch_id string, record_key string, raw_record string"
    )
    assert_df_equality(rejected, expected, ignore_nullable=True)  # a direct read shows them
    expected_bronze = spark.createDataFrame([("T000000001",)], "transaction_id string")
    assert_same_rows(catalog.read_batch(bronze, "d1"), expected_bronze)
    # an accepted run replaces both
    cfg.ingest.max_rejected_fraction = 1.0
    run_job("ingest", spark, cfg, tables)
    assert_df_equality(
        catalog.batch_rows(quarantine, "d1").select("batch_id", "record_key", "raw_record"),
        expected,
        ignore_nullable=True,
    )
    assert_same_rows(catalog.read_batch(bronze, "d1"), expected_bronze)


@pytest.mark.parametrize(
    ("encoding", "suffixes"),
    [("utf-8", [".csv", ".csv.gz", ".csv.bz2"]), ("utf-16", [".csv", ".csv.gz"])],
)
def test_raw_lines_are_bronze_plus_quarantined_plus_blank_lines(
    spark, tmp_path, sample_schema_path, tables, encoding, suffixes
):
    from ml_engine.quality.ingest import run_ingest

    batch_dir = tmp_path / "raw" / "odd"
    compress = {".csv": bytes, ".csv.gz": gzip.compress, ".csv.bz2": bz2.compress}
    for i, suffix in enumerate(suffixes):
        write(batch_dir / f"part-{i}{suffix}", compress[suffix](ODD_CSV.decode().encode(encoding)))
    cfg = job_config(tmp_path, sample_schema_path, batch_dir)
    cfg.ingest.csv.encoding = encoding
    result = run_ingest(spark, cfg, tables)

    expected = {"batch_id": "odd", **expected_metrics([ODD_CSV] * len(suffixes))}
    assert result.metrics == expected
    m = result.metrics
    assert m["raw_lines"] == m["bronze_lines"] + m["quarantined_lines"] + m["blank_lines"]
    assert result.notes == []
