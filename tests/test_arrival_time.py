"""Data without a date/time column: the jobs take the time ingest loaded each row
(``ingested_at``) as its event time. Two batches of a CSV with no time column (the second
re-sends a record of the first) go through ingest, clean, build_features (a 7-day window per
shop) and build_training_set via ``run_job`` on the rs backend; the expected window values,
label pairs and score accounting are computed here from the input lines and the load times
bronze recorded. Last, b1 is ingested and cleaned again (a retry after b2).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chispa import assert_df_equality

from ml_engine.config import build_config
from ml_engine.jobs import run_job
from ml_engine.tables import open_tables

COLUMNS = [
    {"name": "ref", "type": "string", "nullable": False, "role": "record_id"},
    {"name": "shop", "type": "string", "nullable": False, "role": "key"},
    {"name": "basket", "type": "double", "role": "numeric_feature"},
    {"name": "returned", "type": "int", "role": "label"},
]
BATCHES = {
    "b1": ["R1,S1,10.0,0", "R2,S1,30.0,1", "R3,S2,5.0,0"],
    "b2": ["R4,S1,20.0,1", "R5,S3,7.5,0", "R2,S1,25.0,0"],  # R2 re-sent: b2 takes it over
}


def config(tmp_path: Path, batch: str):
    schema = tmp_path / "schema.yaml"
    schema.write_text(yaml.safe_dump({"name": "baskets", "columns": COLUMNS}), encoding="utf-8")
    raw = tmp_path / "raw" / f"{batch}.csv"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("\n".join(["ref,shop,basket,returned", *BATCHES[batch]]) + "\n")
    return build_config(
        {
            "schema": str(schema),
            "storage": {"root": str(tmp_path / "store")},
            "batch_id": batch,
            "ingest": {"path": str(raw)},
            "features": {
                "windows": {"columns": ["basket"], "days": [7], "aggs": ["count", "sum"]},
            },
        },
        check_schema=True,
    )


@pytest.fixture(scope="module")
def chain(spark, tmp_path_factory):
    """The tables after b1, b2 and the training set, then b1's ingest and clean rerun; and
    score's accounting of both batches before that rerun (its clean then counts the record b2
    took over as a duplicate in another batch)."""
    from ml_engine.catalog import BatchCatalog
    from ml_engine.scoring import batch_accounting

    tmp_path = tmp_path_factory.mktemp("arrival_time")
    tables = open_tables(spark, "rs")
    for batch in BATCHES:
        cfg = config(tmp_path, batch)
        for job in ("ingest", "clean", "build_features"):
            run_job(job, spark, cfg, tables)
    run_job("build_training_set", spark, cfg, tables)
    catalog = BatchCatalog(tables, cfg.storage.table_path("job_runs"))
    features = cfg.storage.table_path("features")
    # what score writes for a batch: one prediction per feature row
    counts = {
        b: batch_accounting(catalog, cfg, b, catalog.read_batch(features, b)) for b in BATCHES
    }
    for job in ("ingest", "clean"):
        run_job(job, spark, config(tmp_path, "b1"), tables)
    return cfg, tables, counts


def loaded_at(tables, cfg) -> dict:
    bronze = tables.read(cfg.storage.table_path("bronze"))
    return {r.batch_id: r.ingested_at for r in bronze.select("batch_id", "ingested_at").collect()}


def replay() -> tuple[dict, dict]:
    """Silver (ref -> shop, basket, returned, batch) and features (ref -> batch, window rows)
    after each batch in turn: a later batch's copy of a record replaces the earlier one."""
    silver: dict = {}
    features: dict = {}
    for batch, lines in BATCHES.items():
        rows = [line.split(",") for line in lines]
        silver.update({ref: (shop, float(b), int(y), batch) for ref, shop, b, y in rows})
        for ref, shop, _, _ in rows:
            features[ref] = (batch, [(v[1], v[3]) for v in silver.values() if v[0] == shop])
    return silver, features


def test_feature_windows_go_by_the_time_rows_arrived(spark, chain):
    cfg, tables, _ = chain
    loaded = loaded_at(tables, cfg)
    assert loaded["b1"] < loaded["b2"]  # one load time per batch, in the order they ran
    silver, features = replay()
    expected = []
    for ref, (batch, window) in features.items():
        # the shop's rows loaded at or before this row's load, within 7 days (all here)
        seen = [b for b, other in window if loaded[other] <= loaded[batch]]
        expected.append((ref, silver[ref][0], loaded[batch], len(seen), sum(seen)))
    rows = tables.read(cfg.storage.table_path("features")).select(
        "ref", "shop", "ingested_at", "basket_count_7d", "basket_sum_7d"
    )
    assert_df_equality(
        rows,
        spark.createDataFrame(
            expected,
            "ref string, shop string, ingested_at timestamp, basket_count_7d long, "
            "basket_sum_7d double",
        ),
        ignore_nullable=True,
        ignore_row_order=True,
    )


def test_each_label_is_paired_with_its_own_rows_features(spark, chain):
    cfg, tables, _ = chain
    training = tables.read(cfg.storage.table_path("training_set"))
    expected = [(ref, y, basket) for ref, (_, basket, y, _) in replay()[0].items()]
    assert_df_equality(
        training.select("ref", "returned", "basket"),
        spark.createDataFrame(expected, "ref string, returned int, basket double"),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    assert "ingested_at" not in training.drop("feature_time", "label_time").columns


def test_score_accounts_for_records_a_later_batch_took_over(chain):
    counts = chain[2]
    resent = {ref for ref, (_, _, _, b) in replay()[0].items() if b == "b2"} & {
        line.split(",")[0] for line in BATCHES["b1"]
    }
    expected = {
        batch: {
            "rows_of_batch": len(lines),
            "scored": sum(1 for _, (b, _) in replay()[1].items() if b == batch),
            "quarantined_upstream": 0,
            "duplicates_removed": 0,
            "taken_over_by_later_batches": len(resent) if batch == "b1" else 0,
            "unaccounted": 0,
        }
        for batch, lines in BATCHES.items()
    }
    assert counts == expected


def test_a_rerun_of_an_earlier_batch_keeps_its_place_in_the_arrival_order(spark, chain):
    """b1 ingested and cleaned again after b2 (a retry, a backfill): its load time stays its
    first one, so b2's copy of R2 still wins (with a new load time b1's stale R2 took it back)."""
    cfg, tables, _ = chain
    first = loaded_at(tables, cfg)
    assert first["b1"] < first["b2"]
    silver = tables.read(cfg.storage.table_path("silver")).select("ref", "basket", "batch_id")
    expected = [(ref, basket, batch) for ref, (_, basket, _, batch) in replay()[0].items()]
    assert_df_equality(
        silver,
        spark.createDataFrame(expected, "ref string, basket double, batch_id string"),
        ignore_nullable=True,
        ignore_row_order=True,
    )


def test_score_warns_when_rows_of_the_batch_are_unaccounted_for():
    from ml_engine.scoring import accounting_notes

    counts = {"rows_of_batch": 10, "scored": 7, "quarantined_upstream": 1,
              "duplicates_removed": 0, "taken_over_by_later_batches": 1, "unaccounted": 1}  # fmt: skip
    assert accounting_notes("b1", "m v2", "alias champion", counts) == [
        "scored batch 'b1' with m v2 (alias champion): 7 rows scored + 1 quarantined upstream + "
        "0 duplicates removed + 1 taken over by later batches = 9 of 10 rows of the batch",
        "warning: 1 row(s) of batch 'b1' are unaccounted for (negative: scored rows that bronze "
        "does not hold): run clean, detect_outliers and build_features for the batch after its "
        "last ingest, then score it again",
    ]
    balanced = {**counts, "scored": 8, "unaccounted": 0, "taken_over_by_later_batches": 0}
    assert accounting_notes("b1", "m v2", "version 2", balanced) == [
        "scored batch 'b1' with m v2 (version 2): 8 rows scored + 1 quarantined upstream + 0 "
        "duplicates removed = 10 of 10 rows of the batch"
    ]
