"""Data without a date/time column: the jobs take the time ingest loaded each row
(``ingested_at``) as its event time. Two batches of a CSV with no time column go through
ingest, clean, build_features (a 7-day window per shop) and build_training_set via
``run_job`` on the rs backend; the expected window values and label pairs are computed here
from the input lines and the load times bronze recorded.
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
    "b2": ["R4,S1,20.0,1", "R5,S3,7.5,0"],
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
    tmp_path = tmp_path_factory.mktemp("arrival_time")
    tables = open_tables(spark, "rs")
    for batch in BATCHES:
        cfg = config(tmp_path, batch)
        for job in ("ingest", "clean", "build_features"):
            run_job(job, spark, cfg, tables)
    run_job("build_training_set", spark, cfg, tables)
    return cfg, tables


def test_feature_windows_go_by_the_time_rows_arrived(spark, chain):
    cfg, tables = chain
    bronze = tables.read(cfg.storage.table_path("bronze"))
    loaded = {r.batch_id: r.ingested_at for r in bronze.select("batch_id", "ingested_at").collect()}
    assert loaded["b1"] < loaded["b2"]  # one load time per batch, in the order they ran
    rows = [
        (line.split(",")[0], line.split(",")[1], float(line.split(",")[2]), batch)
        for batch, lines in BATCHES.items()
        for line in lines
    ]
    expected = []
    for ref, shop, _, batch in rows:
        # every row of the shop loaded at or before this row's load, within 7 days (all here)
        window = [b for _, s, b, other in rows if s == shop and loaded[other] <= loaded[batch]]
        expected.append((ref, shop, loaded[batch], len(window), sum(window)))
    features = tables.read(cfg.storage.table_path("features")).select(
        "ref", "shop", "ingested_at", "basket_count_7d", "basket_sum_7d"
    )
    assert_df_equality(
        features,
        spark.createDataFrame(
            expected,
            "ref string, shop string, ingested_at timestamp, basket_count_7d long, "
            "basket_sum_7d double",
        ),
        ignore_nullable=True,
        ignore_row_order=True,
    )


def test_each_label_is_paired_with_its_own_rows_features(spark, chain):
    cfg, tables = chain
    training = tables.read(cfg.storage.table_path("training_set"))
    expected = [
        (ref, int(returned), float(basket))
        for lines in BATCHES.values()
        for ref, _, basket, returned in (line.split(",") for line in lines)
    ]
    assert_df_equality(
        training.select("ref", "returned", "basket"),
        spark.createDataFrame(expected, "ref string, returned int, basket double"),
        ignore_nullable=True,
        ignore_row_order=True,
    )
    assert "ingested_at" not in training.drop("feature_time", "label_time").columns
