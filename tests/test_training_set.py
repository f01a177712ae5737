"""Point-in-time training sets: never a feature from after the label time, exact rows, and the
job that records the Delta versions it read."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import types as T

from ml_engine.config import ConfigError, build_config
from ml_engine.training_set import TrainingSetError, point_in_time_join

D = T.DoubleType()
S = T.StringType()
TS = T.TimestampType()
I = T.IntegerType()  # noqa: E741
L = T.LongType()
UTC = timezone.utc


def struct(*fields: tuple[str, T.DataType]) -> T.StructType:
    return T.StructType([T.StructField(n, t, True) for n, t in fields])


def t(day: int, hour: int = 0) -> datetime:
    """A UTC instant in January 2026."""
    return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day - 1, hours=hour)


FEATURES = struct(("cust", S), ("ts", TS), ("f", D), ("g", D))
LABELS = struct(("lid", S), ("cust", S), ("label_time", TS), ("y", I))
OUT = struct(
    ("lid", S), ("cust", S), ("label_time", TS), ("y", I), ("feature_time", TS), ("f", D), ("g", D)
)


def test_label_takes_latest_feature_row_at_or_before_its_time_never_a_later_one(spark):
    features = spark.createDataFrame(
        [
            ("c1", t(1), 1.0, 10.0),
            ("c1", t(5), 5.0, 50.0),
            ("c1", t(10), 99.0, 990.0),  # after L1's time: must not reach L1
            ("c2", t(3), 3.0, 30.0),
            ("c2", t(8), 88.0, 880.0),  # after L4's time
        ],
        FEATURES,
    )
    labels = spark.createDataFrame(
        [
            ("L1", "c1", t(7), 1),
            ("L2", "c1", t(10), 0),  # a feature row exactly at the label time is known then
            ("L3", "c1", t(0, 23), 0),  # before any feature of c1
            ("L4", "c2", t(7, 23), 1),
            ("L5", "c3", t(5), 0),  # entity without features
        ],
        LABELS,
    )
    got = point_in_time_join(labels, features, "cust", "label_time", "ts", ["f", "g"])
    expected = spark.createDataFrame(
        [
            ("L1", "c1", t(7), 1, t(5), 5.0, 50.0),
            ("L2", "c1", t(10), 0, t(10), 99.0, 990.0),
            ("L3", "c1", t(0, 23), 0, None, None, None),
            ("L4", "c2", t(7, 23), 1, t(3), 3.0, 30.0),
            ("L5", "c3", t(5), 0, None, None, None),
        ],
        OUT,
    )
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_nulls_of_the_latest_feature_row_are_not_filled_from_older_rows(spark):
    features = spark.createDataFrame([("c1", t(1), 1.0, 10.0), ("c1", t(2), None, 20.0)], FEATURES)
    labels = spark.createDataFrame([("L1", "c1", t(3), 1)], LABELS)
    got = point_in_time_join(labels, features, "cust", "label_time", "ts", ["f", "g"])
    expected = spark.createDataFrame([("L1", "c1", t(3), 1, t(2), None, 20.0)], OUT)
    assert_df_equality(got, expected, ignore_nullable=True)


def test_same_instant_feature_rows_are_ordered_by_record_id_whatever_their_order(spark):
    feats = struct(("lid", S), ("cust", S), ("ts", TS), ("f", D))
    rows = [("r0", "c1", t(1), 0.0), ("r3", "c1", t(5), 3.0), ("r1", "c1", t(5), 1.0)]
    labels = spark.createDataFrame(
        [("c1", t(5), 1), ("c1", t(4), 0)],
        struct(("cust", S), ("label_time", TS), ("y", I)),
    )
    expected = spark.createDataFrame(
        [("c1", t(5), 1, t(5), 3.0), ("c1", t(4), 0, t(1), 0.0)],
        struct(("cust", S), ("label_time", TS), ("y", I), ("feature_time", TS), ("f", D)),
    )
    for order in (rows, rows[::-1]):
        features = spark.createDataFrame(order, feats).repartition(2)
        got = point_in_time_join(labels, features, "cust", "label_time", "ts", ["f"], "lid")
        assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)


def test_feature_column_that_is_also_a_label_column_is_refused(spark):
    features = spark.createDataFrame([("c1", t(1), 1.0, 2.0)], FEATURES)
    labels = spark.createDataFrame([("L1", "c1", t(2), 1)], LABELS)
    with pytest.raises(
        TrainingSetError, match=r"feature column\(s\) \['lid'\] also exist in the labels"
    ):
        point_in_time_join(
            labels, features.withColumn("lid", features.f), "cust", "label_time", "ts", ["f", "lid"]
        )


def test_missing_label_column_is_named(spark):
    features = spark.createDataFrame([("c1", t(1), 1.0, 2.0)], FEATURES)
    labels = spark.createDataFrame([("L1", "c1", t(2), 1)], LABELS)
    with pytest.raises(TrainingSetError, match=r"labels lack column\(s\) \['when'\]"):
        point_in_time_join(labels, features, "cust", "when", "ts", ["f"])


# --------------------------------------------------------------------------- config

TX_SCHEMA = Path(__file__).parent / "data" / "tx.yaml"


def make_config(tmp_path: Path, **sections):
    data = {"schema": str(TX_SCHEMA), "storage": {"root": str(tmp_path / "store")}, **sections}
    return build_config(data, check_schema=True)


def test_training_set_config_naming_unknown_column_fails_with_key_path(tmp_path):
    with pytest.raises(ConfigError) as info:
        make_config(tmp_path, training_set={"label": "is_bad"})
    assert str(info.value) == (
        f"training_set.label: column 'is_bad' is not in schema 'tx' ({TX_SCHEMA})"
    )


def test_training_set_config_with_own_label_table_is_not_checked_against_schema(tmp_path):
    cfg = make_config(
        tmp_path, training_set={"labels_path": str(tmp_path / "labels"), "label": "is_bad"}
    )
    assert cfg.training_set.label == "is_bad"


# --------------------------------------------------------------------------- the job

SILVER_TABLE = struct(
    ("tx_id", S), ("cust", S), ("ts", TS), ("amount", D), ("items", I), ("channel", S),
    ("fraud", I), ("batch_id", S), ("source_file", S), ("ingested_at", TS),
)  # fmt: skip
FEATURE_TABLE_FIELDS = (
    ("cust", S), ("ts", TS), ("tx_id", S), ("fraud", I), ("batch_id", S), ("amount", D),
    ("amount_sum_7d", D), ("k", D),
)  # fmt: skip
FEATURE_TABLE = struct(*FEATURE_TABLE_FIELDS)
FEATURE_ROWS = [
    ("c1", t(1), "T1", 0, "b1", 10.0, 10.0, 1.0),
    ("c2", t(2), "T2", 1, "b1", 20.0, 20.0, 1.0),
    ("c1", t(4), "T3", None, "b1", 30.0, 40.0, 1.0),
]


@pytest.fixture
def tables(spark):
    from ml_engine.tables import open_tables

    return open_tables(spark, "rs")


def write_inputs(spark, tables, cfg):
    ingested = datetime(2026, 2, 1, tzinfo=UTC)
    silver = [
        ("T1", "c1", t(1), 10.0, 1, "web", 0, "b1", "in.csv", ingested),
        ("T2", "c2", t(2), 20.0, 1, "web", 1, "b1", "in.csv", ingested),
        ("T3", "c1", t(4), 30.0, 1, "web", None, "b1", "in.csv", ingested),  # unlabelled
    ]
    silver_path = cfg.storage.table_path("silver")
    # Two commits, so the silver and features versions differ (1 and 0).
    for rows in (silver[:1], silver):
        tables.overwrite(
            spark.createDataFrame(rows, SILVER_TABLE), silver_path, partition_by=["batch_id"]
        )
    tables.overwrite(
        spark.createDataFrame(FEATURE_ROWS, FEATURE_TABLE),
        cfg.storage.table_path("features"),
        partition_by=["batch_id"],
    )


def test_build_training_set_from_silver_labels_records_input_versions(spark, tables, tmp_path):
    from ml_engine.training_set import build_training_set

    cfg = make_config(tmp_path, batch_id="b1", features={"selection": {"variance_threshold": 0.0}})
    write_inputs(spark, tables, cfg)
    features_version = tables.version(cfg.storage.table_path("features"))
    labels_version = tables.version(cfg.storage.table_path("silver"))
    assert (features_version, labels_version) == (0, 1)

    result = build_training_set(spark, cfg, tables)

    path = cfg.storage.table_path("training_set")
    expected = spark.createDataFrame(
        [
            ("T1", "c1", t(1), 0, t(1), 10.0, 10.0, 1.0, 0, 1),
            ("T2", "c2", t(2), 1, t(2), 20.0, 20.0, 1.0, 0, 1),
        ],
        struct(
            ("tx_id", S), ("cust", S), ("label_time", TS), ("fraud", I), ("feature_time", TS),
            ("amount", D), ("amount_sum_7d", D), ("k", D), ("features_version", L),
            ("labels_version", L),
        ),
    )  # fmt: skip
    assert_df_equality(tables.read(path), expected, ignore_nullable=True, ignore_row_order=True)
    assert result.outputs == {"training_set": path}
    assert (result.metrics["rows"], result.metrics["label_events"]) == (2, 2)
    assert result.metrics["labels_without_their_record"] == 0
    assert result.notes == []
    assert result.metrics["features_version"] == 0
    assert result.metrics["labels_version"] == 1
    assert result.metrics["training_set_version"] == tables.version(path)
    assert result.metrics["feature_columns"] == ["amount", "amount_sum_7d", "k"]
    assert result.metrics["selected_features"] == ["amount", "amount_sum_7d"]  # k is constant

    build_training_set(spark, cfg, tables)  # a rebuild replaces the set
    assert_df_equality(tables.read(path), expected, ignore_nullable=True, ignore_row_order=True)

    # The feature definitions change (k is gone, features rebuilt): the set takes their columns.
    tables.overwrite(
        spark.createDataFrame([r[:-1] for r in FEATURE_ROWS], struct(*FEATURE_TABLE_FIELDS[:-1])),
        cfg.storage.table_path("features"),
        partition_by=["batch_id"],
        replace_schema=True,
    )
    result = build_training_set(spark, cfg, tables)
    expected = spark.createDataFrame(
        [
            ("T1", "c1", t(1), 0, t(1), 10.0, 10.0, 1, 1),
            ("T2", "c2", t(2), 1, t(2), 20.0, 20.0, 1, 1),
        ],
        struct(
            ("tx_id", S), ("cust", S), ("label_time", TS), ("fraud", I), ("feature_time", TS),
            ("amount", D), ("amount_sum_7d", D), ("features_version", L), ("labels_version", L),
        ),
    )  # fmt: skip
    assert_df_equality(tables.read(path), expected, ignore_nullable=True, ignore_row_order=True)
    assert result.metrics["feature_columns"] == ["amount", "amount_sum_7d"]


def test_build_training_set_with_own_label_table_uses_only_past_features(spark, tables, tmp_path):
    from ml_engine.training_set import build_training_set

    labels_path = str(tmp_path / "labels")
    cfg = make_config(
        tmp_path,
        batch_id="b1",
        training_set={"labels_path": labels_path, "label_time": "when", "label": "is_bad",
                      "feature_columns": ["amount", "amount_sum_7d"]},
    )  # fmt: skip
    write_inputs(spark, tables, cfg)
    tables.overwrite(
        spark.createDataFrame(
            [
                ("c1", t(3), 1),  # T3 (Jan 4) is in its future: T1's features
                ("c1", t(5), 0),
                ("c2", t(1), 1),  # before c2's first feature row
                ("c1", t(6), None),  # no label: not a label event
            ],
            struct(("cust", S), ("when", TS), ("is_bad", I)),
        ),
        labels_path,
    )

    result = build_training_set(spark, cfg, tables)

    expected = spark.createDataFrame(
        [
            ("c1", t(3), 1, t(1), 10.0, 10.0, 0, 0),
            ("c1", t(5), 0, t(4), 30.0, 40.0, 0, 0),
            ("c2", t(1), 1, None, None, None, 0, 0),
        ],
        struct(
            ("cust", S), ("label_time", TS), ("is_bad", I), ("feature_time", TS), ("amount", D),
            ("amount_sum_7d", D), ("features_version", L), ("labels_version", L),
        ),
    )  # fmt: skip
    got = tables.read(cfg.storage.table_path("training_set"))
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)
    assert "selected_features" not in result.metrics


def test_labels_of_records_take_their_own_record_s_features_or_are_left_out(
    spark, tables, tmp_path
):
    """Labels arriving later, by record id (no entity column): each takes its own record's
    feature row even when the entity has a later one, and a label whose record has no feature
    row at or before its time is left out and counted, never given another record's."""
    from ml_engine.training_set import build_training_set

    labels_path = str(tmp_path / "labels")
    cfg = make_config(
        tmp_path,
        training_set={"labels_path": labels_path, "label_time": "when", "label": "is_bad",
                      "feature_columns": ["amount", "amount_sum_7d"]},
    )  # fmt: skip
    write_inputs(spark, tables, cfg)
    tables.overwrite(
        spark.createDataFrame(
            [
                ("T1", t(6), 1),  # c1's T3 (Jan 4) is later than T1 but another record
                ("T2", t(2), 0),
                ("T3", t(3), 1),  # before its record's own time: nothing of it was known
                ("T9", t(5), 1),  # a record with no feature row (quarantined)
            ],
            struct(("tx_id", S), ("when", TS), ("is_bad", I)),
        ),
        labels_path,
    )

    result = build_training_set(spark, cfg, tables)

    expected = spark.createDataFrame(
        [
            ("T1", "c1", t(6), 1, t(1), 10.0, 10.0, 0, 0),
            ("T2", "c2", t(2), 0, t(2), 20.0, 20.0, 0, 0),
        ],
        struct(
            ("tx_id", S), ("cust", S), ("label_time", TS), ("is_bad", I), ("feature_time", TS),
            ("amount", D), ("amount_sum_7d", D), ("features_version", L), ("labels_version", L),
        ),
    )  # fmt: skip
    got = tables.read(cfg.storage.table_path("training_set"))
    assert_df_equality(got, expected, ignore_nullable=True, ignore_row_order=True)
    assert (result.metrics["rows"], result.metrics["label_events"]) == (2, 4)
    assert result.metrics["labels_without_their_record"] == 2
    assert result.notes == [
        "2 of 4 labels were left out: their record (tx_id) has no feature row at or before the "
        "label's time (quarantined, dropped as an outlier, or its batch not built yet)"
    ]


def test_build_training_set_names_a_label_column_missing_from_the_label_table(
    spark, tables, tmp_path
):
    from ml_engine.results import JobError
    from ml_engine.training_set import build_training_set

    labels_path = str(tmp_path / "labels")
    cfg = make_config(tmp_path, training_set={"labels_path": labels_path, "label": "is_bad"})
    write_inputs(spark, tables, cfg)
    tables.overwrite(
        spark.createDataFrame([("c1", t(3), 1)], struct(("cust", S), ("ts", TS), ("bad", I))),
        labels_path,
    )
    with pytest.raises(
        JobError, match=r"training_set\.label: column 'is_bad' is not in the label table"
    ):
        build_training_set(spark, cfg, tables)
