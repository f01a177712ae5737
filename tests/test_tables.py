"""Contract tests of the Delta tables interface, run against the backend named by
``--delta-backend`` (default ``rs``; ``spark`` is skipped where delta-spark's classes do not load).

Every operation is checked twice: through the backend's own ``read`` (chispa, against rows
written by hand) and by reading the table independently with delta-rs
(``deltalake.DeltaTable(path).to_pyarrow_table()``), so the tables are standard Delta.
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from chispa import assert_df_equality
from deltalake import DeltaTable, write_deltalake
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.session import JobCounter
from ml_engine.tables import (
    DELTA_SPARK_PACKAGE,
    BatchNotFoundError,
    RsDeltaTables,
    TableError,
    TableNotFoundError,
    batch_predicate,
    delta_spark_available,
    delta_spark_conf,
    open_tables,
)
from ml_engine.tables.base import (
    batch_not_found,
    nullable_schema,
    table_location,
    with_columns_of,
)

UTC = timezone.utc

SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType(), True),
        T.StructField("batch", T.StringType(), True),
        T.StructField("amount", T.DoubleType(), True),
    ]
)


@pytest.fixture(scope="module")
def tables(spark, request):
    """The backend under test (``--delta-backend``)."""
    backend = request.config.getoption("--delta-backend")
    if backend == "spark" and not delta_spark_available(spark):
        pytest.skip(
            "delta-spark's classes (io.delta.sql.DeltaSparkSessionExtension) do not load in "
            f"this JVM; start Spark with --packages {DELTA_SPARK_PACKAGE} to run these tests "
            "against the spark backend"
        )
    return open_tables(spark, backend)


def frame(spark, rows, schema=SCHEMA):
    return spark.createDataFrame(rows, schema)


def delta_rows(path, columns=None):
    """The table's rows as read by delta-rs itself, as sorted tuples (None sorts first)."""
    table = DeltaTable(str(path)).to_pyarrow_table()
    columns = columns or table.column_names
    rows = [tuple(r[c] for c in columns) for r in table.to_pylist()]
    return sorted(rows, key=lambda r: tuple((v is not None, v) for v in r))


def data_files(path):
    """Parquet files under the table directory (relative paths), committed or not."""
    found = set()
    for root, _dirs, files in os.walk(path):
        for name in files:
            if name.endswith(".parquet"):
                found.add(os.path.relpath(os.path.join(root, name), path))
    return found


def referenced_files(path):
    """Files the latest version references, per delta-rs (decoded relative paths)."""
    return {os.path.relpath(uri, str(path)) for uri in DeltaTable(str(path)).file_uris()}


def add_actions(path, version):
    """The add actions of one commit file, read from the log directly."""
    log = os.path.join(str(path), "_delta_log", f"{version:020d}.json")
    with open(log) as handle:
        actions = [json.loads(line) for line in handle if line.strip()]
    return [a["add"] for a in actions if "add" in a]


# --------------------------------------------------------------------------- create / read


def test_create_makes_an_empty_table_with_the_schema(spark, tables, tmp_path):
    path = str(tmp_path / "t")

    assert tables.create(path, SCHEMA) == 0

    assert tables.exists(path)
    assert_df_equality(tables.read(path), frame(spark, []))
    independent = DeltaTable(path)
    assert independent.to_pyarrow_table().num_rows == 0
    # Delta stores schemas in Spark's JSON form
    assert json.loads(independent.schema().to_json()) == json.loads(SCHEMA.json())


def test_create_refuses_an_existing_table(tables, tmp_path):
    path = str(tmp_path / "t")
    tables.create(path, SCHEMA)

    with pytest.raises(TableError, match="already exists"):
        tables.create(path, SCHEMA)


def test_read_of_a_missing_table_raises_table_not_found(tables, tmp_path):
    path = str(tmp_path / "nothing")

    with pytest.raises(TableNotFoundError, match="nothing"):
        tables.read(path)
    assert not tables.exists(path)


# ---------------------------------------------------------------------------------- append


def test_append_creates_the_table_then_adds_rows(spark, tables, tmp_path):
    path = str(tmp_path / "t")

    first = tables.append(frame(spark, [(1, "b1", 1.5), (2, "b1", None)]), path)
    second = tables.append(frame(spark, [(3, "b2", -2.0)]), path)

    assert (first, second) == (0, 1)
    expected = [(1, "b1", 1.5), (2, "b1", None), (3, "b2", -2.0)]
    assert_df_equality(tables.read(path), frame(spark, expected), ignore_row_order=True)
    assert delta_rows(path) == [(1, "b1", 1.5), (2, "b1", None), (3, "b2", -2.0)]


LOG_SCHEMA = T.StructType(
    [
        T.StructField("run", T.StringType(), False),
        T.StructField("version", T.LongType(), False),
        T.StructField("at", T.TimestampType(), False),
    ]
)


@pytest.mark.parametrize("reader", ["own", "inherited"])
def test_append_rows_appends_once_per_app_version_and_refuses_nulls(
    spark, tables, tmp_path, reader
):
    path = str(tmp_path / "log")
    at = datetime(2026, 3, 29, 1, 30, 0, 250000, tzinfo=UTC)  # inside a DST change somewhere
    rows = [("r1", 3, at), ("r1", 4, at)]
    append_rows = tables.append_rows if reader == "own" else super(type(tables), tables).append_rows

    first = append_rows(rows, LOG_SCHEMA, path, "run-r1", 1)
    again = append_rows(rows, LOG_SCHEMA, path, "run-r1", 1)  # a retry of the same run
    second = append_rows([("r2", 5, at)], LOG_SCHEMA, path, "run-r2", 1)

    assert (first, again, second) == (0, None, 1)
    expected = spark.createDataFrame(
        [("r1", 3, at), ("r1", 4, at), ("r2", 5, at)], nullable_schema(LOG_SCHEMA)
    )
    assert_df_equality(tables.read(path), expected, ignore_row_order=True)
    independent = DeltaTable(path).to_pyarrow_table().sort_by("version").to_pylist()
    assert [(r["run"], r["version"], r["at"]) for r in independent] == [
        ("r1", 3, at),
        ("r1", 4, at),
        ("r2", 5, at),
    ]
    with pytest.raises(Exception, match="(?i)not null"):  # "NOT NULL", "not nullable"
        append_rows([("r3", None, at)], LOG_SCHEMA, path, "run-r3", 1)
    other = T.StructType([*LOG_SCHEMA.fields[:2], T.StructField("at", T.StringType())])
    with pytest.raises(TableError, match=r"differs from the table's \(different types: at"):
        append_rows([("r4", 6, "later")], other, path, "run-r4", 1)
    assert tables.version(path) == 1


def test_log_rows_are_the_rows_matching_every_condition_as_python_values(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.5), (2, "b1", None), (3, "b2", -2.0)]), path)
    tables.append(frame(spark, [(4, "b3", 0.5), (5, "b2", 7.0)]), path)
    where = {"batch": ["b2", "b3"], "id": [3, 4, 5, 6]}
    expected = [{"id": 3, "amount": -2.0}, {"id": 4, "amount": 0.5}, {"id": 5, "amount": 7.0}]

    def by_id(rows):
        return sorted(rows, key=lambda r: r["id"])

    assert by_id(tables.log_rows(path, ["id", "amount"], where)) == expected
    # the backends' own reader and the Spark reader every backend inherits agree
    inherited = super(type(tables), tables).log_rows(path, ["id", "amount"], where)
    assert by_id(inherited) == expected
    assert tables.log_rows(str(tmp_path / "nothing"), ["id"], {"id": [1]}) == []


def test_idempotent_append_skips_a_retry_and_appends_a_higher_version(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    batch1 = frame(spark, [(1, "b1", 1.0)])
    batch2 = frame(spark, [(2, "b2", 2.0)])

    assert tables.append(batch1, path, app_id="ingest", app_version=1) == 0
    assert tables.append(batch1, path, app_id="ingest", app_version=1) is None
    assert tables.append(batch1, path, app_id="ingest", app_version=0) is None
    assert tables.append(batch2, path, app_id="ingest", app_version=2) == 1

    assert_df_equality(
        tables.read(path), frame(spark, [(1, "b1", 1.0), (2, "b2", 2.0)]), ignore_row_order=True
    )
    assert delta_rows(path) == [(1, "b1", 1.0), (2, "b2", 2.0)]
    assert tables.transaction_version(path, "ingest") == 2
    assert tables.transaction_version(path, "other") is None
    assert DeltaTable(path).transaction_version("ingest") == 2


# ------------------------------------------------------------------------------- overwrite


def test_overwrite_replaces_all_rows(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0), (2, "b2", 2.0)]), path)

    version = tables.overwrite(frame(spark, [(9, "b9", 9.0)]), path)

    assert version == 1
    assert_df_equality(tables.read(path), frame(spark, [(9, "b9", 9.0)]))
    assert delta_rows(path) == [(9, "b9", 9.0)]


def test_overwrite_with_replace_schema_gives_the_table_the_new_columns(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0), (2, "b2", 2.0)]), path, partition_by=["batch"])
    rebuilt = frame(spark, [(3, "b1", "x"), (4, "b3", None)], "id long, batch string, kind string")

    with pytest.raises(TableError, match=r"missing columns \['amount'\]"):
        tables.overwrite(rebuilt, path, partition_by=["batch"])
    with pytest.raises(TableError, match="replace_schema replaces the whole table"):
        tables.overwrite(rebuilt, path, replace_where="batch = 'b1'", replace_schema=True)
    version = tables.overwrite(rebuilt, path, partition_by=["batch"], replace_schema=True)

    assert version == 1
    assert_df_equality(tables.read(path), rebuilt, ignore_row_order=True, ignore_nullable=True)
    assert delta_rows(path, ["id", "batch", "kind"]) == [(3, "b1", "x"), (4, "b3", None)]
    log = DeltaTable(path)
    assert [f.name for f in log.schema().fields] == ["id", "batch", "kind"]
    assert log.metadata().partition_columns == ["batch"]
    # the earlier version keeps its own columns and rows
    assert_df_equality(
        tables.read(path, version=0),
        frame(spark, [(1, "b1", 1.0), (2, "b2", 2.0)]).select("id", "amount", "batch"),
        ignore_row_order=True,
        ignore_column_order=True,
    )
    # later writes are checked against the new schema
    assert (
        tables.append(frame(spark, [(5, "b4", "y")], "id long, batch string, kind string"), path)
        == 2
    )


def test_replace_batch_with_add_columns_adds_the_batchs_new_columns(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    old = "id long, amount double, batch_id string"
    tables.replace_batch(frame(spark, [(1, 1.0, "b1"), (2, 2.0, "b1")], old), path, "b1")
    before = tables.version(path)
    # b2 brings a new column; record 2 is re-sent in it (unique_by moves it there)
    b2 = frame(spark, [(2, 20.0, "x", "b2"), (3, None, None, "b2")],
               "id long, amount double, kind string, batch_id string")  # fmt: skip

    with pytest.raises(TableError, match=r"columns not in the table \['kind'\]"):
        tables.replace_batch(b2, path, "b2")
    assert tables.version(path) == before
    tables.replace_batch(b2, path, "b2", unique_by=["id"], add_columns=True)

    new = "id long, amount double, batch_id string, kind string"
    expected = [(1, 1.0, "b1", None), (2, 20.0, "b2", "x"), (3, None, "b2", None)]
    assert_df_equality(
        tables.read(path), frame(spark, expected, new), ignore_row_order=True, ignore_nullable=True
    )
    assert delta_rows(path, ["id", "amount", "batch_id", "kind"]) == expected
    assert [f.name for f in DeltaTable(path).schema().fields] == new_names(new)
    assert DeltaTable(path).metadata().partition_columns == ["batch_id"]
    # the version before keeps its columns and rows
    assert_df_equality(
        tables.read(path, version=before),
        frame(spark, [(1, 1.0, "b1"), (2, 2.0, "b1")], old),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    # a batch without the new column is written null in it, with or without the column
    tables.replace_batch(frame(spark, [(4, 4.0, "b3")], old), path, "b3", add_columns=True)
    assert delta_rows(path, ["id", "kind"]) == [(1, None), (2, "x"), (3, None), (4, None)]


def test_add_columns_refuses_a_column_of_another_type(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.replace_batch(frame(spark, [(1, 1.0, "b1")], "id long, amount double, batch_id string"),
                         path, "b1")  # fmt: skip
    before = tables.version(path)
    retyped = frame(spark, [(2, "2.0", 7, "b2")], "id long, amount string, n int, batch_id string")

    with pytest.raises(TableError) as err:
        tables.replace_batch(retyped, path, "b2", add_columns=True)

    assert str(err.value) == (
        f"cannot write to Delta table {path}: column types differ from the table's (amount "
        "(table: double, data: string)); new columns can be added, but a column keeps its type. "
        "Write the column with the table's type, or write to a new table."
    )
    assert tables.version(path) == before
    assert [f.name for f in DeltaTable(path).schema().fields] == ["id", "amount", "batch_id"]


def test_with_columns_of_gives_rows_the_tables_columns_in_its_order(spark):
    rows = frame(spark, [(1, "b1", "extra")], "id long, batch_id string, note string")
    table = T.StructType([T.StructField("id", T.LongType()), T.StructField("kind", T.StringType()),
                          T.StructField("batch_id", T.StringType())])  # fmt: skip

    actual = with_columns_of(rows, table)

    expected = frame(spark, [(1, None, "b1", "extra")],
                     "id long, kind string, batch_id string, note string")  # fmt: skip
    assert_df_equality(actual, expected, ignore_nullable=True)
    assert with_columns_of(expected, table) is expected


def test_table_location_spells_one_table_one_way(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    table = f"{tmp_path}/store/my silver"
    spellings = [
        table,
        "store/my silver",
        "store/./x/../my silver/",
        f"file://{tmp_path}/store/my%20silver",
        f"file:{tmp_path}/store/my%20silver",
    ]
    assert [table_location(s) for s in spellings] == [table] * len(spellings)
    assert table_location("s3a://bucket/tables/silver/") == "s3a://bucket/tables/silver"


def new_names(ddl: str) -> list[str]:
    return [part.split()[0] for part in ddl.split(",")]


def test_replace_where_on_a_partition_column_replaces_only_that_partition(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(
        frame(spark, [(1, "b1", 1.0), (2, "b1", 2.0), (3, "b2", 3.0), (4, "b3", 4.0)]),
        path,
        partition_by=["batch"],
    )
    untouched_before = {
        a["path"] for a in add_actions(path, 0) if a["partitionValues"]["batch"] != "b2"
    }

    version = tables.overwrite(
        frame(spark, [(5, "b2", 50.0), (6, "b2", 60.0)]), path, replace_where="batch = 'b2'"
    )

    assert version == 1
    expected = [(1, "b1", 1.0), (2, "b1", 2.0), (4, "b3", 4.0), (5, "b2", 50.0), (6, "b2", 60.0)]
    assert_df_equality(tables.read(path), frame(spark, expected), ignore_row_order=True)
    assert delta_rows(path) == expected
    # the other partitions' files are kept as they were; only b2's were replaced
    current = pa.table(DeltaTable(path).get_add_actions(flatten=True)).to_pylist()
    assert {a["path"] for a in current if a["partition.batch"] != "b2"} == untouched_before


def test_replace_batch_within_replaces_only_the_batchs_rows_with_those_values(
    spark, tables, tmp_path
):
    schema = T.StructType(
        [
            T.StructField("id", T.LongType(), True),
            T.StructField("batch_id", T.StringType(), True),
            T.StructField("stage", T.StringType(), True),
            T.StructField("model_version", T.IntegerType(), True),
        ]
    )
    path = str(tmp_path / "t")
    batch = "it's/b1"  # a quote and a slash: the predicate must quote the value
    rows = [(1, batch, "ingest", 1), (2, batch, "clean", 1), (3, batch, "clean", 2)]
    rows += [(4, "b2", "clean", 1)]
    tables.append(frame(spark, rows, schema), path, partition_by=["batch_id"])

    tables.replace_batch(
        frame(spark, [(5, batch, "clean", 1)], schema),
        path,
        batch,
        within={"stage": "clean", "model_version": 1},
    )
    tables.replace_batch(frame(spark, [(6, "b2", "x", 9)], schema), path, "b2")

    expected = [(1, batch, "ingest", 1), (3, batch, "clean", 2), (5, batch, "clean", 1)]
    expected += [(6, "b2", "x", 9)]
    assert_df_equality(tables.read(path), frame(spark, expected, schema), ignore_row_order=True)
    with pytest.raises(TableError):
        tables.replace_batch(
            frame(spark, [(7, batch, "ingest", 1)], schema), path, batch, within={"stage": "clean"}
        )


def test_replace_batch_unique_by_moves_records_written_again_out_of_other_batches(
    spark, tables, tmp_path
):
    schema = T.StructType(
        [
            T.StructField("id", T.LongType(), True),
            T.StructField("batch_id", T.StringType(), True),
            T.StructField("amount", T.DoubleType(), True),
        ]
    )
    path = str(tmp_path / "t")
    first = [(1, "b1", 1.0), (2, "b1", 2.0), (3, "b1", 3.0), (None, "b1", 9.0)]
    tables.append(frame(spark, first, schema), path, partition_by=["batch_id"])
    tables.replace_batch(frame(spark, [(4, "b2", 4.0)], schema), path, "b2")
    b1_files = {a["path"] for a in add_actions(path, 0)}
    ours = [(2, "b3", 20.0), (4, "b3", 40.0), (5, "b3", 50.0), (None, "b3", 0.0)]

    tables.replace_batch(frame(spark, ours, schema), path, "b3", unique_by=["id"])
    # a rerun changes nothing: the b3 rows are replaced, nothing else holds their ids
    version = tables.replace_batch(frame(spark, ours, schema), path, "b3", unique_by=["id"])

    # ids 2 and 4 left b1 and b2; a null id matches nothing, so b1's null row stays
    expected = [(1, "b1", 1.0), (3, "b1", 3.0), (None, "b1", 9.0), *ours]
    assert_df_equality(tables.read(path), frame(spark, expected, schema), ignore_row_order=True)
    assert delta_rows(path) == sorted(expected, key=lambda r: (r[0] is not None, r[0] or 0, r[1]))
    assert version == 3
    # only b1's file holding id 2 was rewritten (without it), in the same commit as b3's rows
    assert len(b1_files & referenced_files(path)) == len(b1_files) - 1
    with pytest.raises(TableError, match="unique_by \\['id'\\] needs replace_where"):
        tables.overwrite(frame(spark, ours, schema), path, unique_by=["id"])


# Batch ids whose predicates hold a quote, a backslash and the text of another term.
ODD_BATCHES = ("b1' AND batch_id = 'b2", "c\\d", "b2")
PARTS_SCHEMA = T.StructType(
    [
        T.StructField("id", T.LongType(), True),
        T.StructField("batch_id", T.StringType(), True),
        T.StructField("part", T.IntegerType(), True),
    ]
)


def odd_batches_table(spark, tables, path):
    """Batches ODD_BATCHES, each with rows in parts 1 and 2 (ids 10*i + part)."""
    rows = [(10 * i + p, b, p) for i, b in enumerate(ODD_BATCHES, 1) for p in (1, 2)]
    tables.append(frame(spark, rows, PARTS_SCHEMA), path, partition_by=["batch_id", "part"])
    return rows


def test_equality_predicates_on_partitions_replace_exactly_the_partitions_they_name(
    spark, tables, tmp_path
):
    path = str(tmp_path / "t")
    odd, backslash, plain = ODD_BATCHES
    odd_batches_table(spark, tables, path)

    # the literal holds " AND batch_id = 'b2'": b2 is not replaced
    replacements = [
        ([(100, odd, 1)], batch_predicate(odd)),
        ([(200, backslash, 2)], batch_predicate(backslash)),
        ([(300, plain, 2)], batch_predicate(plain, {"part": 2})),  # an integer partition
        ([(400, "new", 1)], "part = 1"),  # one partition column alone: part 1 of every batch
    ]
    for new_rows, predicate in replacements:
        tables.overwrite(frame(spark, new_rows, PARTS_SCHEMA), path, replace_where=predicate)

    # b1...'s and c\d's rows replaced, b2's part 2, then every part 1 row
    expected = [(200, backslash, 2), (300, plain, 2), (400, "new", 1)]
    assert_df_equality(
        tables.read(path), frame(spark, expected, PARTS_SCHEMA), ignore_row_order=True
    )
    assert delta_rows(path) == sorted(expected)


def test_batch_reads_return_exactly_the_batches_rows(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    odd, backslash, plain = ODD_BATCHES
    odd_batches_table(spark, tables, path)

    def ids(df):
        return sorted(r.id for r in df.collect())

    assert ids(tables.read_batch(path, odd)) == [11, 12]
    assert ids(tables.read_batch(path, backslash)) == [21, 22]
    assert ids(tables.batch_rows(path, plain)) == [31, 32]
    assert ids(tables.batch_rows(path, "b9")) == []
    assert ids(tables.read_batches(path, [odd, plain, "b9"])) == [11, 12, 31, 32]
    with pytest.raises(BatchNotFoundError) as err:
        tables.read_batch(path, "b1")
    assert str(err.value) == batch_not_found(path, "b1", sorted(ODD_BATCHES))


def test_rs_plans_a_batch_read_over_the_batchs_files_only(spark, tmp_path, capsys):
    """A read of some batches scans their files alone, however many batches the table has."""
    tables = open_tables(spark, "rs")
    path = str(tmp_path / "t")
    odd, backslash, plain = ODD_BATCHES
    odd_batches_table(spark, tables, path)  # 6 files: 3 batches x 2 parts

    def scans(df):
        df.explain(extended=True)
        analysed = capsys.readouterr().out.split("== Analyzed Logical Plan ==")[1]
        return analysed.split("== Optimized Logical Plan ==")[0].count("Relation [")

    # b2's two partitions are plain directories, one scan; the others' names are escaped on
    # disk, so each of their partitions is a scan with its values from the log
    assert scans(tables.read(path)) == 5
    assert scans(tables.read_batch(path, odd)) == 2
    assert scans(tables.batch_rows(path, backslash)) == 2
    assert scans(tables.read_batches(path, [odd, plain])) == 3
    # the files a batch replace removes come from the log: its one Spark job is the write
    for predicate in (batch_predicate(odd), "batch_id = 'b2' OR part = 7"):
        with JobCounter(spark) as jobs:
            tables.overwrite(frame(spark, [], PARTS_SCHEMA), path, replace_where=predicate)
        assert jobs.count == (1 if predicate.startswith("batch_id = 'b1") else 2)


def test_rs_reads_plain_partition_directories_as_one_scan_that_a_filter_prunes(
    spark, tmp_path, capsys
):
    """Batches written one by one (each in its write's directory) and by delta-rs (in the
    table's own ``batch_id=`` directories) are one Parquet scan; a filter on a partition
    column then reads only the files of the partitions it keeps."""
    tables = open_tables(spark, "rs")
    path = str(tmp_path / "t")
    written = []
    for i in range(1, 5):  # one write per batch, a negative integer partition among them
        rows = [(10 * i + p, f"2026-01-0{i}", p - 2 * (i == 4)) for p in (1, 2)]
        tables.append(frame(spark, rows, PARTS_SCHEMA), path, partition_by=["batch_id", "part"])
        written += rows
    by_delta_rs = [(51, "2026-01-05", 1)]
    arrow = pa.table({"id": [51], "batch_id": ["2026-01-05"], "part": pa.array([1], pa.int32())})
    write_deltalake(path, arrow, mode="append")
    written += by_delta_rs
    assert sum(1 for f in data_files(path) if os.path.dirname(f).startswith("batch_id=")) == 1

    table = tables.read(path)
    table.explain(extended=True)
    analysed = capsys.readouterr().out.split("== Analyzed Logical Plan ==")[1]
    assert analysed.split("== Optimized Logical Plan ==")[0].count("Relation [") == 1
    assert_df_equality(
        table, frame(spark, written, nullable_schema(PARTS_SCHEMA)), ignore_row_order=True
    )

    # a file of batch 2026-01-01 no longer reads as Parquet: only a read of it fails
    first = next(f for f in data_files(path) if "batch_id=2026-01-01/part=1" in f)
    with open(os.path.join(path, first), "wb") as out:
        out.write(b"not a parquet file")
    kept = [r for r in written if r[1] in ("2026-01-02", "2026-01-04") and r[2] != 2]
    pruned = tables.read(path).where(
        F.col("batch_id").isin("2026-01-02", "2026-01-04") & (F.col("part") != 2)
    )
    assert_df_equality(
        pruned, frame(spark, kept, nullable_schema(PARTS_SCHEMA)), ignore_row_order=True
    )
    with pytest.raises(Exception, match="(?i)parquet"):
        tables.read(path).where(F.col("part") == 1).collect()


def test_batch_predicate_quotes_strings_and_refuses_other_values():
    assert batch_predicate("a'b") == "batch_id = 'a\\'b'"
    assert batch_predicate("b", {"stage": "clean", "v": 3}) == (
        "batch_id = 'b' AND stage = 'clean' AND v = 3"
    )
    with pytest.raises(TypeError, match="v must be a str or int"):
        batch_predicate("b", {"v": 1.5})


def test_replace_where_on_a_data_column_replaces_only_matching_rows(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(
        frame(spark, [(1, "b1", 5.0), (2, "b1", 15.0), (3, "b2", 20.0), (4, "b2", None)]), path
    )

    version = tables.overwrite(
        frame(spark, [(7, "b7", 10.0), (8, "b8", 99.0)]), path, replace_where="amount >= 10"
    )

    assert version == 1
    # rows 2 and 3 matched and are gone; row 4 (amount NULL) does not match and stays
    expected = [(1, "b1", 5.0), (4, "b2", None), (7, "b7", 10.0), (8, "b8", 99.0)]
    assert_df_equality(tables.read(path), frame(spark, expected), ignore_row_order=True)
    assert delta_rows(path) == [(1, "b1", 5.0), (4, "b2", None), (7, "b7", 10.0), (8, "b8", 99.0)]


def test_replace_where_refuses_rows_that_do_not_match_the_predicate(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0)]), path, partition_by=["batch"])

    with pytest.raises(TableError, match="replace_where"):
        tables.overwrite(
            frame(spark, [(2, "b2", 2.0), (3, "b3", 3.0)]), path, replace_where="batch = 'b2'"
        )

    assert tables.version(path) == 0
    assert delta_rows(path) == [(1, "b1", 1.0)]


@pytest.mark.skipif("config.getoption('--delta-backend') != 'rs'")
def test_rs_replace_where_names_a_predicate_over_unknown_columns(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0)]), path, partition_by=["batch"])

    with pytest.raises(TableError) as refused:
        tables.overwrite(frame(spark, [(2, "b1", 2.0)]), path, replace_where="shop = 'b1'")

    assert str(refused.value).startswith(
        "replace_where predicate \"shop = 'b1'\" is not a valid SQL predicate over the columns "
        f"of Delta table {path} (['id', 'batch', 'amount']): "
    )
    assert "shop" in str(refused.value).split("]): ", 1)[1]
    assert tables.version(path) == 0


# ---------------------------------------------------------------------------------- upsert


def test_upsert_replaces_matched_keys_and_inserts_new_ones(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0), (2, "b1", 2.0), (3, "b1", 3.0)]), path)

    version = tables.upsert(frame(spark, [(2, "b2", 20.0), (4, "b2", 40.0)]), path, keys=["id"])

    assert version == 1
    expected = [(1, "b1", 1.0), (2, "b2", 20.0), (3, "b1", 3.0), (4, "b2", 40.0)]
    assert_df_equality(tables.read(path), frame(spark, expected), ignore_row_order=True)
    assert delta_rows(path) == expected


def test_upsert_creates_a_missing_table(spark, tables, tmp_path):
    path = str(tmp_path / "t")

    assert tables.upsert(frame(spark, [(1, "b1", 1.0)]), path, keys=["id"]) == 0

    assert delta_rows(path) == [(1, "b1", 1.0)]


def test_upsert_refuses_rows_not_unique_on_the_keys(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0)]), path)

    with pytest.raises(TableError, match=r"not unique on keys \['id'\].*'id': 2.*2 times"):
        tables.upsert(frame(spark, [(2, "b2", 2.0), (2, "b3", 3.0)]), path, keys=["id"])

    assert tables.version(path) == 0
    assert delta_rows(path) == [(1, "b1", 1.0)]


# ------------------------------------------------------------------- time travel, history


def test_read_by_version_returns_that_versions_rows(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0)]), path)
    tables.append(frame(spark, [(2, "b2", 2.0)]), path)
    tables.overwrite(frame(spark, [(3, "b3", 3.0)]), path)

    assert_df_equality(tables.read(path, version=0), frame(spark, [(1, "b1", 1.0)]))
    assert_df_equality(
        tables.read(path, version=1),
        frame(spark, [(1, "b1", 1.0), (2, "b2", 2.0)]),
        ignore_row_order=True,
    )
    assert_df_equality(tables.read(path, version=2), frame(spark, [(3, "b3", 3.0)]))
    assert delta_rows(path) == [(3, "b3", 3.0)]
    with pytest.raises(TableError, match="version 7"):
        tables.read(path, version=7)


def test_read_by_timestamp_returns_the_version_current_then(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0)]), path)
    time.sleep(0.3)
    between = datetime.now(UTC)
    time.sleep(0.3)
    tables.append(frame(spark, [(2, "b2", 2.0)]), path)
    after = datetime.now(UTC)

    assert_df_equality(tables.read(path, timestamp=between), frame(spark, [(1, "b1", 1.0)]))
    assert_df_equality(
        tables.read(path, timestamp=between.isoformat()), frame(spark, [(1, "b1", 1.0)])
    )
    assert_df_equality(
        tables.read(path, timestamp=after),
        frame(spark, [(1, "b1", 1.0), (2, "b2", 2.0)]),
        ignore_row_order=True,
    )
    with pytest.raises(TableError):
        tables.read(path, timestamp=datetime(2000, 1, 1, tzinfo=UTC))


def test_history_lists_commits_newest_first(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.create(path, SCHEMA)
    tables.append(frame(spark, [(1, "b1", 1.0)]), path)
    tables.overwrite(frame(spark, [(2, "b2", 2.0)]), path, replace_where="batch = 'b2'")
    tables.upsert(frame(spark, [(2, "b2", 3.0)]), path, keys=["id"])

    history = tables.history(path)

    assert [(c.version, c.operation) for c in history] == [
        (3, "MERGE"),
        (2, "WRITE"),
        (1, "WRITE"),
        (0, "CREATE TABLE"),
    ]
    assert history[1].parameters["mode"] == "Overwrite"
    assert history[1].parameters["predicate"] in ("batch = 'b2'", "[\"(batch = 'b2')\"]")
    assert history[2].parameters["mode"] == "Append"
    assert tables.version(path) == 3
    independent = DeltaTable(path).history()
    assert [c["version"] for c in independent] == [3, 2, 1, 0]
    # commit times agree with the log's (delta-spark may take them from the log files' mtime)
    for ours, theirs in zip(history, independent, strict=True):
        assert abs(ours.timestamp.timestamp() * 1000 - theirs["timestamp"]) <= 1000
    assert delta_rows(path) == [(1, "b1", 1.0), (2, "b2", 3.0)]


# -------------------------------------------------------------------- stats, types, layout


def test_each_file_has_its_statistics_in_the_log(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    schema = T.StructType(
        [
            T.StructField("id", T.LongType()),
            T.StructField("name", T.StringType()),
            T.StructField("at", T.TimestampType()),
            T.StructField("day", T.DateType()),
            T.StructField("price", T.DecimalType(10, 2)),
        ]
    )
    rows = [
        (3, "kiwi", datetime(2026, 1, 5, 10, 0, 0, 250000, tzinfo=UTC), date(2026, 1, 5), None),
        (1, "apple", datetime(2026, 1, 1, 8, 30, 0, tzinfo=UTC), None, Decimal("2.50")),
        (7, None, datetime(2026, 1, 3, 0, 0, 0, tzinfo=UTC), date(2026, 1, 2), Decimal("-1.25")),
        (5, "pear", None, date(2026, 1, 9), Decimal("10.00")),
    ]
    # one file, so its statistics are those of all four rows
    tables.append(spark.createDataFrame(rows, schema).coalesce(1), path)

    (add,) = add_actions(path, 0)
    stats = json.loads(add["stats"], parse_float=Decimal)
    assert stats["numRecords"] == 4
    assert stats["minValues"] == {
        "id": 1,
        "name": "apple",
        "at": "2026-01-01T08:30:00.000Z",
        "day": "2026-01-02",
        "price": Decimal("-1.25"),
    }
    assert stats["maxValues"] == {
        "id": 7,
        "name": "pear",
        "at": "2026-01-05T10:00:00.250Z",
        "day": "2026-01-09",
        "price": Decimal("10.00"),
    }
    assert stats["nullCount"] == {"id": 0, "name": 1, "at": 1, "day": 1, "price": 1}
    assert add["size"] == os.path.getsize(os.path.join(path, DeltaTable(path).file_uris()[0]))


def test_timestamps_dates_decimals_and_arrays_round_trip_exactly(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    schema = T.StructType(
        [
            T.StructField("id", T.IntegerType()),
            T.StructField("at", T.TimestampType()),
            T.StructField("day", T.DateType()),
            T.StructField("price", T.DecimalType(18, 6)),
            T.StructField("vector", T.ArrayType(T.DoubleType())),
        ]
    )
    rows = [
        (
            1,
            datetime(2026, 3, 29, 1, 59, 59, 999999, tzinfo=UTC),
            date(1999, 12, 31),
            Decimal("123456789012.123456"),
            [0.1, -2.5, 1e300],
        ),
        (
            2,
            datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            date(2026, 2, 28),
            Decimal("-0.000001"),
            [],
        ),
        (3, None, None, None, None),
        (4, datetime(2026, 1, 1, tzinfo=UTC), date(2026, 1, 1), Decimal("0"), [None, 4.0]),
    ]

    tables.append(spark.createDataFrame(rows, schema), path)

    assert_df_equality(
        tables.read(path), spark.createDataFrame(rows, schema), ignore_row_order=True
    )
    assert delta_rows(path, ["id", "at", "day", "price", "vector"]) == [
        (1, rows[0][1], rows[0][2], rows[0][3], rows[0][4]),
        (2, rows[1][1], rows[1][2], rows[1][3], rows[1][4]),
        (3, None, None, None, None),
        (4, rows[3][1], rows[3][2], Decimal("0.000000"), rows[3][4]),
    ]


def test_partitioned_table_keeps_partition_values_and_types(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    schema = T.StructType(
        [
            T.StructField("id", T.LongType()),
            T.StructField("batch", T.StringType()),
            T.StructField("day", T.DateType()),
        ]
    )
    rows = [
        (1, "b 1:x", date(2026, 1, 1)),
        (2, "b 1:x", date(2026, 1, 2)),
        (3, "b2", date(2026, 1, 2)),
        (4, None, date(2026, 1, 2)),
    ]

    tables.append(spark.createDataFrame(rows, schema), path, partition_by=["batch", "day"])
    tables.append(spark.createDataFrame([(5, "b2", None)], schema), path)

    expected = rows + [(5, "b2", None)]
    assert_df_equality(
        tables.read(path), spark.createDataFrame(expected, schema), ignore_row_order=True
    )
    assert delta_rows(path, ["id", "batch", "day"]) == expected
    assert DeltaTable(path).metadata().partition_columns == ["batch", "day"]
    partition_values = sorted(
        {
            (a["partitionValues"]["batch"] or "", a["partitionValues"]["day"] or "")
            for v in (0, 1)
            for a in add_actions(path, v)
        }
    )
    assert partition_values == [
        ("", "2026-01-02"),
        ("b 1:x", "2026-01-01"),
        ("b 1:x", "2026-01-02"),
        ("b2", ""),
        ("b2", "2026-01-02"),
    ]
    with pytest.raises(TableError, match=r"partitioned by \['batch', 'day'\]"):
        tables.append(spark.createDataFrame([(6, "b", None)], schema), path, partition_by=["day"])


def test_timestamp_partitions_are_exact_whatever_the_session_time_zone(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    schema = T.StructType(
        [T.StructField("id", T.LongType()), T.StructField("at", T.TimestampType())]
    )
    rows = [
        (1, datetime(2026, 3, 8, 7, 30, 0, 5, tzinfo=UTC)),  # 02:30 New York does not exist
        (2, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        (3, None),
    ]
    zone = spark.conf.get("spark.sql.session.timeZone")
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    try:
        tables.append(spark.createDataFrame(rows, schema), path, partition_by=["at"])
        assert_df_equality(
            tables.read(path), spark.createDataFrame(rows, schema), ignore_row_order=True
        )
    finally:
        spark.conf.set("spark.sql.session.timeZone", zone)

    assert delta_rows(path, ["id", "at"]) == rows


# ------------------------------------------------------------------------- refused writes


def test_a_schema_that_differs_from_the_tables_is_refused(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0)]), path)
    wrong_type = T.StructType(
        [
            T.StructField("id", T.StringType()),
            T.StructField("batch", T.StringType()),
            T.StructField("amount", T.DoubleType()),
        ]
    )

    with pytest.raises(TableError, match=r"missing columns \['amount'\]"):
        tables.append(frame(spark, [(2, "b2")], "id long, batch string"), path)
    with pytest.raises(TableError, match=r"columns not in the table \['extra'\]"):
        tables.append(
            frame(spark, [(2, "b2", 2.0, 1)], "id long, batch string, amount double, extra int"),
            path,
        )
    with pytest.raises(TableError, match=r"id \(table: bigint, data: string\)"):
        tables.append(frame(spark, [("2", "b2", 2.0)], wrong_type), path)

    assert tables.version(path) == 0
    assert delta_rows(path) == [(1, "b1", 1.0)]


def test_nullability_and_column_order_differences_are_accepted(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0)]), path)
    reordered = spark.range(2, 3).select(
        F.lit(2.0).alias("amount"), F.lit("b2").alias("batch"), F.col("id")
    )  # id and the literals are NOT NULL here

    assert tables.append(reordered, path) == 1

    assert delta_rows(path) == [(1, "b1", 1.0), (2, "b2", 2.0)]


def test_a_not_null_column_refuses_nulls(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    strict = T.StructType(
        [
            T.StructField("id", T.LongType(), False),
            T.StructField("batch", T.StringType(), True),
            T.StructField("amount", T.DoubleType(), True),
        ]
    )
    tables.create(path, strict)
    tables.append(frame(spark, [(1, "b1", 1.0)]), path)

    with pytest.raises(TableError, match="NOT NULL"):
        tables.append(frame(spark, [(None, "b2", 2.0)]), path)

    assert tables.version(path) == 1
    assert delta_rows(path) == [(1, "b1", 1.0)]


def _fail_in_second_partition(batches):
    """mapInArrow function: passes the first partition's rows, fails in the second one after a
    pause, so that the first partition's task has surely written its file (with F.raise_error
    both tasks race and the test would not know whether leftovers exist)."""
    import time as _time

    import pyarrow.compute as pc

    for batch in batches:
        if batch.num_rows and pc.max(batch.column("id")).as_py() >= 10:
            _time.sleep(2.0)
            raise ValueError("task failed on purpose")
        yield batch


def test_a_failed_write_commits_nothing_and_vacuum_removes_its_files(spark, tables, tmp_path):
    path = str(tmp_path / "t")
    tables.append(frame(spark, [(1, "b1", 1.0)]), path)
    failing = (
        spark.range(0, 20, numPartitions=2)
        .select(F.col("id"), F.lit("x").alias("batch"), F.col("id").cast("double").alias("amount"))
        .mapInArrow(_fail_in_second_partition, SCHEMA)
    )

    with pytest.raises(TableError, match="nothing was committed"):
        tables.append(failing, path)

    assert tables.version(path) == 0
    assert_df_equality(tables.read(path), frame(spark, [(1, "b1", 1.0)]))
    assert delta_rows(path) == [(1, "b1", 1.0)]
    leftovers = data_files(path) - referenced_files(path)
    assert leftovers  # the first partition's file was written but never committed

    removed = tables.vacuum(path)

    assert leftovers <= set(removed)
    assert data_files(path) == referenced_files(path)
    assert delta_rows(path) == [(1, "b1", 1.0)]
    assert_df_equality(tables.read(path), frame(spark, [(1, "b1", 1.0)]))


# ------------------------------------------------------------------------ backend specific


def test_rs_refuses_tables_with_column_mapping(spark, tables, tmp_path):
    if not isinstance(tables, RsDeltaTables):
        pytest.skip("only the rs backend reads Parquet files directly")
    path = str(tmp_path / "mapped")
    DeltaTable.create(
        path,
        pa.schema([("id", pa.int64())]),
        configuration={"delta.columnMapping.mode": "name"},
    )

    with pytest.raises(TableError, match=r"mapped uses column mapping \(delta.columnMapping"):
        tables.read(path)


def test_open_tables_picks_rs_when_delta_spark_does_not_load(spark):
    if delta_spark_available(spark):
        pytest.skip("delta-spark's classes load in this JVM")

    assert open_tables(spark).name == "rs"
    assert open_tables(spark, "rs").name == "rs"
    with pytest.raises(TableError, match="--packages io.delta:delta-spark_4.2_2.13:4.4.1"):
        open_tables(spark, "spark")
    with pytest.raises(TableError, match="unknown Delta backend 'delta'"):
        open_tables(spark, "delta")


def test_delta_spark_conf_names_the_extension_and_catalog():
    assert delta_spark_conf() == {
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    }
    assert delta_spark_conf(with_package=True)["spark.jars.packages"] == (
        "io.delta:delta-spark_4.2_2.13:4.4.1"
    )


def test_rs_writes_floating_point_columns_without_a_dictionary(spark, tmp_path):
    """Doubles are written plain (no wasted dictionary attempt); strings keep the dictionary."""
    tables = RsDeltaTables(spark)
    path = str(tmp_path / "t")
    # Few distinct values: a dictionary would pay off for every column if it were tried.
    tables.overwrite(frame(spark, [(i % 5, "b1", (i % 3) / 7) for i in range(500)]), path)
    encodings = {}
    for f in DeltaTable(path).file_uris():
        meta = pq.ParquetFile(f.removeprefix("file://")).metadata.row_group(0)
        for i in range(meta.num_columns):
            col = meta.column(i)
            encodings[col.path_in_schema] = set(col.encodings)
    assert (
        "PLAIN_DICTIONARY" not in encodings["amount"]
        and "RLE_DICTIONARY" not in encodings["amount"]
    )
    assert encodings["batch"] & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    assert encodings["id"] & {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
