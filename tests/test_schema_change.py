"""A schema file that gains a column between batches: ingest and clean add it to bronze and
silver (earlier batches read null in it), jobs reading a batch recorded before it see the
table's new columns, and a column whose type changed is refused before anything is written.

The jobs run through ``run_job`` (the run log and its recorded versions) on the rs backend.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality
from deltalake import DeltaTable

from ml_engine.config import build_config
from ml_engine.jobs import run_job
from ml_engine.results import JobError
from ml_engine.tables import open_tables

COLUMNS = [
    {"name": "ref", "type": "string", "nullable": False, "role": "record_id"},
    {"name": "seen_at", "type": "timestamp", "nullable": False, "role": "event_time",
     "format": "yyyy-MM-dd HH:mm:ss"},
    {"name": "age", "type": "int", "role": "numeric_feature"},
    {"name": "ward", "type": "string", "role": "categorical_feature"},
]  # fmt: skip
WAIT = {"name": "wait_min", "type": "int", "role": "numeric_feature"}
UTC = timezone.utc
HEADER_1 = "ref,seen_at,age,ward"
HEADER_2 = "ref,seen_at,age,ward,wait_min"


def project(
    tmp_path: Path,
    columns: list[dict],
    batch: str,
    lines: list[str],
    header: str,
    clean: dict | None = None,
):
    """The config of one batch: the schema file written with ``columns``, the batch's CSV."""
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump({"name": "visits", "columns": columns}), encoding="utf-8")
    raw = tmp_path / "raw" / batch / "visits.csv"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return build_config(
        {
            "schema": str(schema),
            "storage": {"root": str(tmp_path / "store")},
            "batch_id": batch,
            "ingest": {"path": str(raw), "max_rejected_fraction": 1.0},
            "clean": {"dedup": "latest_by_key", **(clean or {})},
        },
        check_schema=True,
    )


def rows(path: Path, columns: list[str]) -> list[tuple]:
    table = DeltaTable(str(path)).to_pyarrow_table().to_pylist()
    return sorted(tuple(r[c] for c in columns) for r in table)


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory):
    """b1 ingested and cleaned with the first schema; then ``wait_min`` is added to the schema
    file and b2 (one line with a wait that is not a number) and b3 (V1 re-sent, with a
    wait) go through both jobs; then b1 is cleaned again."""
    tmp_path = tmp_path_factory.mktemp("schema_change")
    tables = open_tables(spark, "rs")
    runs = {}
    b1 = project(tmp_path, COLUMNS, "b1", ["V1,2026-04-01 09:00:00,40,a",
                                           "V2,2026-04-01 10:00:00,50,b"], HEADER_1)  # fmt: skip
    for job in ("ingest", "clean"):
        runs[("b1", job)] = run_job(job, spark, b1, tables)
    bronze = Path(b1.storage.table_path("bronze"))
    runs["bronze_version_b1"] = DeltaTable(str(bronze)).version()
    new = [*COLUMNS, WAIT]
    b2 = project(tmp_path, new, "b2", ["V3,2026-04-02 09:00:00,60,a,15",
                                       "V4,2026-04-02 10:00:00,70,c,soon"], HEADER_2)  # fmt: skip
    b3 = project(tmp_path, new, "b3", ["V1,2026-04-03 09:00:00,41,a,30"], HEADER_2)
    for cfg in (b2, b3):
        for job in ("ingest", "clean"):
            runs[(cfg.batch_id, job)] = run_job(job, spark, cfg, tables)
    again = project(tmp_path, new, "b1", [], HEADER_2)
    runs[("b1", "clean again")] = run_job("clean", spark, again, tables)
    return tmp_path, tables, runs, again


def test_ingest_adds_the_new_column_to_bronze_and_says_so(chain):
    tmp_path, _, runs, _ = chain
    bronze = tmp_path / "store" / "tables" / "bronze"

    assert rows(bronze, ["batch_id", "ref", "age", "wait_min"]) == [
        ("b1", "V1", 40, None),
        ("b1", "V2", 50, None),
        ("b2", "V3", 60, 15),
        ("b3", "V1", 41, 30),
    ]
    assert runs[("b2", "ingest")].notes == [
        "bronze: column(s) ['wait_min'] of the schema file added to the table; its earlier "
        "batches read null in them"
    ]
    assert runs[("b3", "ingest")].notes == []
    assert rows(tmp_path / "store" / "tables" / "quarantine", ["batch_id", "reason"]) == [
        ("b2", "column wait_min: 'soon' is not an int")
    ]
    # the version b1's ingest committed still reads without the column
    first = DeltaTable(str(bronze), version=runs["bronze_version_b1"])
    assert [f.name for f in first.schema().fields] == [
        "ref", "seen_at", "age", "ward", "batch_id", "source_file", "ingested_at",
    ]  # fmt: skip


def test_clean_adds_it_to_silver_and_reads_batches_recorded_before_it(spark, chain):
    tmp_path, tables, runs, _ = chain
    silver = tmp_path / "store" / "tables" / "silver"

    # b3's clean read silver's b1 (recorded without wait_min) beside b2: V1 moved to b3;
    # b1 cleaned again read bronze's b1 at its recorded version, in the new columns
    assert rows(silver, ["batch_id", "ref", "seen_at", "age", "ward", "wait_min"]) == [
        ("b1", "V2", datetime(2026, 4, 1, 10, tzinfo=UTC), 50, "b", None),
        ("b2", "V3", datetime(2026, 4, 2, 9, tzinfo=UTC), 60, "a", 15),
        ("b3", "V1", datetime(2026, 4, 3, 9, tzinfo=UTC), 41, "a", 30),
    ]
    assert runs[("b2", "clean")].notes == [
        "silver: column(s) ['wait_min'] of the schema file added to the table; its earlier "
        "batches read null in them"
    ]
    assert runs[("b3", "clean")].metrics["replaced_in_other_batches"] == 1
    assert runs[("b1", "clean again")].metrics["duplicates_in_other_batches"] == 1
    assert runs[("b1", "clean again")].notes == []


def refusal(spark, tables, cfg, job: str, written: tuple[str, ...]) -> str:
    """The JobError message of ``job``, after checking that none of the ``written`` tables
    got a commit."""
    versions = {t: DeltaTable(cfg.storage.table_path(t)).version() for t in written}
    with pytest.raises(JobError) as err:
        run_job(job, spark, cfg, tables)
    assert {t: DeltaTable(cfg.storage.table_path(t)).version() for t in written} == versions
    return str(err.value)


def test_a_column_whose_type_changed_is_refused_before_anything_is_written(spark, chain):
    tmp_path, tables, _, _ = chain
    retyped = [{**c, "type": "long"} if c["name"] == "age" else c for c in [*COLUMNS, WAIT]]
    cfg = project(tmp_path, retyped, "b4", ["V5,2026-04-04 09:00:00,80,a,5"], HEADER_2)

    message = refusal(spark, tables, cfg, "ingest", ("bronze", "quarantine"))

    assert message == (
        f"ingest: column types of the schema file {tmp_path / 'schema.yaml'} differ from those "
        f"of the table {tmp_path / 'store' / 'tables' / 'bronze'} (age (table: int, now: "
        "bigint)). A column keeps its type in a table, because its earlier batches hold the old "
        "one: give it the table's type again, or write every batch with the new types to new "
        "tables (--set storage.root=PATH). Nothing was written"
    )


def test_clean_refuses_a_type_clean_coerce_changed_before_writing(spark, chain):
    tmp_path, tables, _, _ = chain
    coerced = {"coerce": {"age": "double"}}
    cfg = project(tmp_path, [*COLUMNS, WAIT], "b3", [], HEADER_2, clean=coerced)

    message = refusal(spark, tables, cfg, "clean", ("silver", "quarantine"))

    assert message == (
        f"clean: column types of the schema file {tmp_path / 'schema.yaml'} and clean.coerce "
        f"differ from those of the table {tmp_path / 'store' / 'tables' / 'silver'} (age "
        "(table: int, now: double)). A column keeps its type in a table, because its earlier "
        "batches hold the old one: give it the table's type again, or write every batch with "
        "the new types to new tables (--set storage.root=PATH). Nothing was written"
    )


def test_a_batch_read_through_the_run_log_has_the_tables_latest_columns(spark, chain):
    tmp_path, tables, _, cfg = chain
    from ml_engine.catalog import BatchCatalog

    catalog = BatchCatalog(tables, cfg.storage.table_path("job_runs"))
    bronze = cfg.storage.table_path("bronze")

    b1 = catalog.read_batch(bronze, "b1").select("ref", "age", "wait_min", "batch_id")
    every, _ = catalog.read_complete(bronze)

    expected = spark.createDataFrame(
        [("V1", 40, None, "b1"), ("V2", 50, None, "b1")],
        "ref string, age int, wait_min int, batch_id string",
    )
    assert_df_equality(b1, expected, ignore_nullable=True, ignore_row_order=True)
    assert every.columns == [f.name for f in DeltaTable(bronze).schema().fields]
    assert_df_equality(
        every.select("ref", "wait_min"),
        spark.createDataFrame([("V1", None), ("V1", 30), ("V2", None), ("V3", 15)],
                              "ref string, wait_min int"),
        ignore_nullable=True,
        ignore_row_order=True,
    )  # fmt: skip
