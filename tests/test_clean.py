"""The clean job: config checks, standardisation, dedup, rules, imputation, quarantine, job runs."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pytest
import yaml
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import CleanConfig, CleanRule, ConfigError, build_config, load_config
from ml_engine.features import run_build_features
from ml_engine.quality import clean as clean_module
from ml_engine.quality.clean import (
    COERCE_FAILED,
    COPIES,
    REASON,
    VIOLATIONS,
    clean_rules,
    deduplicate,
    fail_samples,
    mode_values,
    prepare,
    rejected_rows,
    run_clean,
    schema_rules,
    silver_rows,
    standardise,
    summarise,
    with_coerced_types,
    with_violations,
)
from ml_engine.quality.metrics import quantile_metric
from ml_engine.results import JobError
from ml_engine.schemas import NumberText, schema_from_dict
from ml_engine.session import JobCounter
from ml_engine.tables import BatchNotFoundError, open_tables

UTC = timezone.utc
SCHEMA_DICT = {
    "name": "tx",
    "columns": [
        {
            "name": "id",
            "type": "string",
            "nullable": False,
            "role": "record_id",
            "constraints": {"pattern": "T[0-9]{3}"},
        },
        {"name": "cust", "type": "string", "role": "key"},
        {"name": "ts", "type": "timestamp", "role": "event_time"},
        {
            "name": "amount",
            "type": "double",
            "role": "numeric_feature",
            "constraints": {"min": 0, "max": 1000},
        },
        {
            "name": "score",
            "type": "int",
            "role": "numeric_feature",
            "constraints": {"min": 300, "max": 850},
        },
        {
            "name": "channel",
            "type": "string",
            "role": "categorical_feature",
            "constraints": {"allowed": ["web", "app", "store"]},
        },
        {"name": "raw_amount", "type": "string"},
    ],
}
SCHEMA = schema_from_dict(SCHEMA_DICT)
META = [
    T.StructField("batch_id", T.StringType()),
    T.StructField("source_file", T.StringType()),
    T.StructField("ingested_at", T.TimestampType()),
]
BRONZE_STRUCT = T.StructType(SCHEMA.struct.fields + META)
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
ING = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def bronze_rows(spark, rows, batch="b1"):
    """Bronze rows from (id, cust, ts, amount, score, channel, raw_amount[, source_file, ingested_at])."""
    full = []
    for r in rows:
        data, meta = r[:7], r[7:]
        source_file, ingested_at = meta if meta else ("f1.csv", ING)
        full.append((*data, batch, source_file, ingested_at))
    return spark.createDataFrame(full, BRONZE_STRUCT)


# --------------------------------------------------------------------------- config


def _cfg_dict(tmp_path: Path, clean: dict, schema: dict = SCHEMA_DICT) -> dict:
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text(yaml.safe_dump(schema), encoding="utf-8")
    return {
        "schema": str(schema_file),
        "storage": {"root": str(tmp_path / "store")},
        "clean": clean,
    }


def _config_error(tmp_path: Path, clean: dict, schema: dict = SCHEMA_DICT) -> str:
    with pytest.raises(ConfigError) as err:
        build_config(_cfg_dict(tmp_path, clean, schema), check_schema=True)
    return str(err.value)


def test_config_column_the_schema_lacks_names_the_key_path(tmp_path):
    msg = _config_error(
        tmp_path,
        {
            "case": {"nope": "lower"},
            "coerce": {"gone": "double"},
            "rules": [{"name": "r", "type": "range", "column": "missing_col", "min": 0}],
        },
    )
    assert len(msg.splitlines()) == 3
    assert "clean.case.nope: column 'nope' is not in schema 'tx'" in msg
    assert "clean.coerce.gone: column 'gone' is not in schema 'tx'" in msg
    assert "clean.rules.0.column: column 'missing_col' is not in schema 'tx'" in msg


def test_config_rule_on_a_wrong_type_names_rule_column_and_type(tmp_path):
    msg = _config_error(
        tmp_path,
        {
            "rules": [
                {"name": "r_range", "type": "range", "column": "channel", "min": 0},
                {"name": "r_pattern", "type": "pattern", "column": "score", "pattern": "[0-9]+"},
                {"name": "r_allowed", "type": "allowed", "column": "score", "values": [1, "x"]},
            ]
        },
    )
    assert (
        "clean.rules.0.column: rule 'r_range' is a range rule but column 'channel' has type "
        "string; use a numeric column" in msg
    )
    assert (
        "clean.rules.1.column: rule 'r_pattern' is a pattern rule but column 'score' has type "
        "int; patterns apply to string columns" in msg
    )
    assert (
        "clean.rules.2.values: rule 'r_allowed': column 'score' has type int but values ['x'] are not numbers"
        in msg
    )


def test_config_imputation_type_checks_follow_coercion(tmp_path):
    msg = _config_error(
        tmp_path,
        {
            "missing": {
                "raw_amount": {"strategy": "median"},
                "score": {"strategy": "constant", "value": "high"},
            },
            "case": {"score": "upper"},
        },
    )
    assert "clean.case.score: case only applies to string columns, 'score' has type int" in msg
    assert (
        "clean.missing.raw_amount.strategy: median imputation needs a numeric column, "
        "'raw_amount' has type string" in msg
    )
    assert (
        "clean.missing.score.value: column 'score' has type int but the constant 'high' is not "
        "a number" in msg
    )
    # Coerced to double, the same column may be imputed with its median.
    cfg = build_config(
        _cfg_dict(
            tmp_path,
            {"coerce": {"raw_amount": "double"}, "missing": {"raw_amount": {"strategy": "median"}}},
        )
    )
    assert cfg.clean.column_type(cfg.table_schema, "raw_amount") == T.DoubleType()


def test_config_unknown_coerce_type_and_latest_by_key_without_key(tmp_path):
    msg = _config_error(tmp_path, {"coerce": {"raw_amount": "number"}})
    assert "clean.coerce.raw_amount: unknown type 'number'; use one of" in msg
    keyless = {"name": "k", "columns": [{"name": "x", "type": "double"}]}
    msg = _config_error(tmp_path, {"dedup": "latest_by_key"}, schema=keyless)
    assert (
        "clean.dedup: latest_by_key needs a column with role record_id or key in schema 'k'" in msg
    )
    assert "declare one or use exact or none" in msg


def test_config_value_errors_name_the_key(tmp_path):
    msg = _config_error(tmp_path, {"missing": {"score": {"strategy": "constant"}}})
    assert "clean.missing.score: strategy constant needs a value" in msg
    rule = {"name": "r", "type": "range", "column": "amount", "min": 0}
    msg = _config_error(tmp_path, {"rules": [rule, rule]})
    assert "clean: rule name(s) ['r'] are used more than once" in msg
    msg = _config_error(tmp_path, {"rules": [{**rule, "name": "schema:mine"}]})
    assert "the prefix 'schema:' is reserved for schema constraints" in msg
    msg = _config_error(tmp_path, {"quantiles": [0.5, 1.5]})
    assert "clean: quantiles [1.5] are outside [0, 1]" in msg
    msg = _config_error(
        tmp_path, {"rules": [{"name": "p", "type": "pattern", "column": "id", "pattern": "T(["}]}
    )
    assert "clean.rules.0: rule 'p': pattern 'T([' is not a valid regex" in msg


def test_load_config_names_the_file_that_set_the_bad_key(tmp_path):
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text(yaml.safe_dump(SCHEMA_DICT), encoding="utf-8")
    conf = tmp_path / "c.yaml"
    conf.write_text(
        textwrap.dedent(
            f"""
            schema: {schema_file}
            storage: {{root: {tmp_path}}}
            clean:
              mappings: {{colour: {{red: RED}}}}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(conf)
    assert f"{conf}: clean.mappings.colour: column 'colour' is not in schema 'tx'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(
            conf,
            ["clean.mappings={}", "clean.rules=[{name: r, type: range, column: channel, min: 0}]"],
        )
    assert (
        "--set clean.rules: clean.rules.0.column: rule 'r' is a range rule but column 'channel'"
        in str(err.value)
    )


# --------------------------------------------------------------------------- standardise / coerce


def test_standardise_trims_cases_and_maps_spellings(spark):
    schema = "channel string, country string, score int, source_file string"
    df = spark.createDataFrame(
        [
            (" Mobile ", " us", 1, " f1.csv "),
            ("WEB", "De ", 2, "f2.csv"),
            ("   ", "\tfr\t", 3, "f3.csv"),
            (None, None, None, None),
            ("shop", "", 5, "f5.csv"),
            ("app", "gb", 6, "f6.csv"),
        ],
        schema,
    )

    actual = standardise(
        df,
        trim=True,
        case={"channel": "lower", "country": "upper"},
        # keys are trimmed and cased like the column, so "Mobile" matches "mobile"
        mappings={"channel": {"Mobile": "app", "shop": "store"}},
    )

    expected = spark.createDataFrame(
        [
            ("app", "US", 1, " f1.csv "),
            ("web", "DE", 2, "f2.csv"),
            (None, "FR", 3, "f3.csv"),
            (None, None, None, None),
            ("store", None, 5, "f5.csv"),
            ("app", "GB", 6, "f6.csv"),
        ],
        schema,
    )
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_standardise_rejects_case_on_a_non_string_column(spark):
    df = spark.createDataFrame([(1,)], "score int")
    with pytest.raises(ValueError, match=r"standardise: \['score'\] are not string columns"):
        standardise(df, case={"score": "lower"})


def test_coercion_failures_become_null_and_are_named(spark):
    df = spark.createDataFrame(
        [("12.5", "3"), ("abc", "4"), (None, "x"), ("1e3", None)], "a string, b string"
    )

    actual = with_coerced_types(df, {"a": "double", "b": "int"})

    expected = spark.createDataFrame(
        [(12.5, 3, []), (None, 4, ["a"]), (None, None, ["b"]), (1000.0, None, [])],
        f"a double, b int, {COERCE_FAILED} array<string>",
    )
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_coercion_with_a_decimal_comma_casts_comma_numbers_only(spark):
    df = spark.createDataFrame(
        [("1.234,5", "1.000", "x"), ("12,5", "3", "7,5"), ("1.5", "2,5", None), ("n/a", "-4", "")],
        "a string, b string, c string",
    )

    actual = with_coerced_types(
        df, {"a": "double", "b": "int", "c": "decimal(4,1)"}, NumberText(",")
    )

    expected = spark.createDataFrame(
        [
            (1234.5, 1000, None, ["c"]),
            (12.5, 3, Decimal("7.5"), []),
            (None, None, None, ["a", "b"]),  # 1.5: no decimal-comma number; 2,5: no int
            (None, -4, None, ["a", "c"]),
        ],
        f"a double, b int, c decimal(4,1), {COERCE_FAILED} array<string>",
    )
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_coercion_reads_currency_percent_and_grouped_thousands(spark):
    df = spark.createDataFrame(
        [
            ("$1,234.50", "1,000"),
            ("-$5", "$3"),
            ("12.5%", "7 %"),
            ("1,23.5", "1,0000"),  # groups of other than three digits
            ("refund", "€ 12"),
            ("7", "2.5"),
        ],
        "a string, b string",
    )

    actual = with_coerced_types(df, {"a": "double", "b": "int"}, NumberText(".", ",", True))

    expected = spark.createDataFrame(
        [
            (1234.5, 1000, []),
            (-5.0, 3, []),
            (12.5, 7, []),
            (None, None, ["a", "b"]),
            (None, 12, ["a"]),
            (7.0, None, ["b"]),
        ],
        f"a double, b int, {COERCE_FAILED} array<string>",
    )
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_coercion_reads_thousands_grouped_by_blanks_or_apostrophes(spark):
    # French exports group by a blank, a no-break or a narrow no-break space; Swiss by "'"
    # (currency codes left out like signs)
    df = spark.createDataFrame(
        [("1 234,5", "2'500.25"), ("7\u00a0996,77 €", "CHF 1"), ("12\u202f000 %", "1'23.5")],
        "fr string, ch string",
    )

    french = with_coerced_types(df, {"fr": "double"}, NumberText(",", " ", True))
    actual = with_coerced_types(
        french.drop(COERCE_FAILED), {"ch": "double"}, NumberText(".", "'", True)
    )

    expected = spark.createDataFrame(
        [(1234.5, 2500.25, []), (7996.77, 1.0, []), (12000.0, None, ["ch"])],
        f"fr double, ch double, {COERCE_FAILED} array<string>",
    )
    assert_df_equality(actual, expected, ignore_nullable=True)


# --------------------------------------------------------------------------- dedup


DEDUP_STRUCT = "id string, ts timestamp, amount double, source_file string, ingested_at timestamp"
D1, D2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
H10, H11 = datetime(2026, 1, 1, 10, tzinfo=UTC), datetime(2026, 1, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize("broadcast_max", [1_000_000, 0])
def test_latest_by_key_keeps_latest_event_then_latest_ingest_then_greatest_file(
    spark, monkeypatch, broadcast_max
):
    monkeypatch.setattr(clean_module, "BROADCAST_MAX_REPEATED", broadcast_max)
    df = spark.createDataFrame(
        [
            ("T001", H10, 1.0, "f1", D2),
            ("T001", H11, 2.0, "f1", D1),  # latest event time wins over later ingestion
            ("T002", H10, 3.0, "f1", D1),
            ("T002", H10, 4.0, "f1", D2),  # same event time: latest ingested_at wins
            ("T003", H10, 5.0, "f1", D1),
            ("T003", H10, 6.0, "f2", D1),  # same time and ingestion: greatest source_file
            (None, H10, 7.0, "f1", D1),  # rows without a record id are never merged
            (None, H10, 7.0, "f1", D1),
            ("T004", None, 8.0, "f1", D1),
        ],
        DEDUP_STRUCT,
    )

    actual = deduplicate(df, "latest_by_key", ["id", "ts", "amount"], key="id", event_time="ts")

    expected = spark.createDataFrame(
        [
            ("T001", H11, 2.0, "f1", D1, 2),
            ("T002", H10, 4.0, "f1", D2, 2),
            ("T003", H10, 6.0, "f2", D1, 2),
            (None, H10, 7.0, "f1", D1, 1),
            (None, H10, 7.0, "f1", D1, 1),
            ("T004", None, 8.0, "f1", D1, 1),
        ],
        f"{DEDUP_STRUCT}, {COPIES} long",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_latest_by_key_is_deterministic_when_only_other_columns_differ(spark):
    """Ties on event time, ingestion and file go to the smallest xxhash64 of the other
    columns (Spark's documented hash, seed 42), whatever the input's order and partitions."""
    amounts = (3.0, 1.0, 2.0)
    hashes = spark.createDataFrame([(a,) for a in amounts], "amount double").select(
        "amount", F.xxhash64("amount").alias("h")
    )
    winner = min(hashes.collect(), key=lambda r: r["h"])["amount"]
    rows = [("T1", H10, a, "f1", D1) for a in amounts]
    for order in (rows, rows[::-1]):
        actual = deduplicate(
            spark.createDataFrame(order, DEDUP_STRUCT).repartition(2),
            "latest_by_key",
            ["id", "ts", "amount"],
            key="id",
            event_time="ts",
        )
        expected = spark.createDataFrame(
            [("T1", H10, winner, "f1", D1, 3)], f"{DEDUP_STRUCT}, {COPIES} long"
        )
        assert_df_equality(actual, expected, ignore_nullable=True)


@pytest.mark.parametrize("broadcast_max", [1_000_000, 0])
def test_exact_dedup_removes_rows_equal_in_every_data_column(spark, monkeypatch, broadcast_max):
    monkeypatch.setattr(clean_module, "BROADCAST_MAX_REPEATED", broadcast_max)
    df = spark.createDataFrame(
        [
            ("T1", H10, 1.0, "f1", D1),
            ("T1", H10, 1.0, "f2", D2),  # same data re-sent later: one copy survives
            ("T1", H10, 2.0, "f1", D1),
            (None, None, None, "f1", D1),
            (None, None, None, "f1", D1),
        ],
        DEDUP_STRUCT,
    )

    actual = deduplicate(df, "exact", ["id", "ts", "amount"])

    expected = spark.createDataFrame(
        [
            ("T1", H10, 1.0, "f2", D2, 2),
            ("T1", H10, 2.0, "f1", D1, 1),
            (None, None, None, "f1", D1, 2),
        ],
        f"{DEDUP_STRUCT}, {COPIES} long",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def _executed_plan(df) -> str:
    return df._jdf.queryExecution().executedPlan().toString()


def test_dedup_without_duplicates_shuffles_nothing(spark):
    rows = [(f"T{i}", H10, float(i), "f1", D1) for i in range(20)] + [(None, H10, 0.5, "f1", D1)]
    df = spark.createDataFrame(rows, DEDUP_STRUCT).repartition(3)
    df = df.localCheckpoint()  # the input's own repartition is not the dedup's shuffle

    for mode in ("latest_by_key", "exact"):
        actual = deduplicate(df, mode, ["id", "ts", "amount"], key="id", event_time="ts")
        expected = spark.createDataFrame([(*r, 1) for r in rows], f"{DEDUP_STRUCT}, {COPIES} long")
        assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
        plan = _executed_plan(actual)
        assert "Exchange" not in plan and "Window" not in plan, plan


def test_dedup_ranks_only_the_rows_of_repeated_keys(spark):
    rows = [(f"T{i}", H10, float(i), "f1", D1) for i in range(20)]
    rows += [("T3", H11, 30.0, "f2", D2)]
    df = spark.createDataFrame(rows, DEDUP_STRUCT).localCheckpoint()

    actual = deduplicate(df, "latest_by_key", ["id", "ts", "amount"], key="id", event_time="ts")

    survivors = [(*r, 1) for r in rows if r[0] != "T3"] + [("T3", H11, 30.0, "f2", D2, 2)]
    expected = spark.createDataFrame(survivors, f"{DEDUP_STRUCT}, {COPIES} long")
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)
    plan = _executed_plan(actual)
    # the repeated keys are broadcast: the unique rows pass by an anti join, the rows of the
    # semi join are ranked on their keys, order columns and row ids (no shuffle carries a
    # data column: the window's input holds amount only as the tie-break's hash), and the
    # winners' ids are broadcast back to the whole rows
    assert "LeftAnti" in plan and "LeftSemi" in plan and "Window" in plan, plan
    lines = plan.splitlines()
    shuffled = [lines[i + 1] for i, line in enumerate(lines) if "Exchange hashpartitioning" in line]
    assert len(shuffled) >= 2, plan  # the probe's count and the window's keys
    assert not any(re.search(r"[\[ ]amount#\d+[,\]]", line) for line in shuffled), shuffled
    assert any("xxhash64(amount#" in line for line in shuffled), shuffled
    assert re.search(r"BroadcastHashJoin \[_dq_row#\d+L\], \[_dq_row#\d+L\], Inner", plan), plan


def test_dedup_none_keeps_every_row_and_unknown_mode_is_rejected(spark):
    df = spark.createDataFrame([("T1", H10, 1.0, "f1", D1)] * 2, DEDUP_STRUCT)
    expected = spark.createDataFrame(
        [("T1", H10, 1.0, "f1", D1, 1)] * 2, f"{DEDUP_STRUCT}, {COPIES} long"
    )
    assert_df_equality(deduplicate(df, "none", ["id"]), expected, ignore_nullable=True)
    with pytest.raises(ValueError, match="unknown dedup mode 'fuzzy'"):
        deduplicate(df, "fuzzy", ["id"])
    with pytest.raises(ValueError, match="dedup latest_by_key needs a record id or key column"):
        deduplicate(df, "latest_by_key", ["id"], key=None)


# --------------------------------------------------------------------------- rules


def test_schema_constraints_become_named_rules():
    assert schema_rules(SCHEMA, "warn") == [
        CleanRule(
            name="schema:id:pattern",
            type="pattern",
            column="id",
            pattern="T[0-9]{3}",
            action="warn",
        ),
        CleanRule(
            name="schema:amount:range",
            type="range",
            column="amount",
            min=0,
            max=1000,
            action="warn",
        ),
        CleanRule(
            name="schema:score:range", type="range", column="score", min=300, max=850, action="warn"
        ),
        CleanRule(
            name="schema:channel:allowed",
            type="allowed",
            column="channel",
            values=["web", "app", "store"],
            action="warn",
        ),
    ]
    assert schema_rules(SCHEMA, "ignore") == []


def test_rules_flag_violations_and_drop_reasons_name_rule_column_and_value(spark):
    df = bronze_rows(
        spark,
        [
            ("T001", "c1", T0, 10.0, 500, "web", None),
            ("T002", "c2", T0, -5.0, 500, "web", None),
            ("X3", "c3", T0, 900.0, 320, "fax", None),
            ("T004", None, None, None, None, None, None),  # nulls violate no rule
            ("T005", "c5", T0, 1000.0, 850, "app", None),  # bounds are inclusive
            ("T0061", "c6", T0, 0.0, 300, "store", None),  # the pattern must match the whole id
            ("T007", "c7", T0, 20.0, 200, "web", None),
        ],
    )
    rules = [
        CleanRule(
            name="big_amount_low_score",
            type="expression",
            expr="NOT (score < 350 AND amount > 500)",
            action="warn",
        ),
        *schema_rules(SCHEMA, "drop"),
    ]
    policies = CleanConfig(missing={"cust": {"strategy": "drop"}}).missing

    actual = with_violations(df, rules, policies, names=True).select("id", VIOLATIONS, REASON)

    expected = spark.createDataFrame(
        [
            ("T001", [], None),
            (
                "T002",
                ["schema:amount:range"],
                "rule schema:amount:range: column amount value -5.0 outside range [0, 1000]",
            ),
            (
                "X3",
                ["big_amount_low_score", "schema:id:pattern", "schema:channel:allowed"],
                "rule schema:id:pattern: column id value X3 does not match pattern T[0-9]{3}; "
                "rule schema:channel:allowed: column channel value fax not in allowed values "
                "[web, app, store]",
            ),
            ("T004", [], "column cust: null, missing-value policy drop"),
            ("T005", [], None),
            (
                "T0061",
                ["schema:id:pattern"],
                "rule schema:id:pattern: column id value T0061 does not match pattern T[0-9]{3}",
            ),
            (
                "T007",
                ["schema:score:range"],
                "rule schema:score:range: column score value 200 outside range [300, 850]",
            ),
        ],
        f"id string, {VIOLATIONS} array<string>, {REASON} string",
    )
    assert_df_equality(actual, expected, ignore_row_order=True, ignore_nullable=True)


def test_invalid_expression_rule_is_named(spark):
    df = bronze_rows(spark, [("T001", "c1", T0, 10.0, 500, "web", None)])
    bad_column = CleanRule(name="e1", type="expression", expr="no_such_col > 1")
    with pytest.raises(
        ValueError, match=r"rule 'e1': expression 'no_such_col > 1' is not valid SQL"
    ):
        with_violations(df, [bad_column], {})
    not_boolean = CleanRule(name="e2", type="expression", expr="amount + 1")
    with pytest.raises(ValueError, match=r"rule 'e2': expression 'amount \+ 1' has type double"):
        with_violations(df, [not_boolean], {})


def test_fail_samples_are_the_smallest_keys_per_rule(spark):
    df = bronze_rows(
        spark,
        [(f"T{i:03d}", "c", T0, -float(i), 500, "web", None) for i in (9, 3, 7, 1, 5)]
        + [("T100", "c", T0, 1.0, 100, "web", None)],
    )
    rules = [
        CleanRule(name="amount_pos", type="range", column="amount", min=0, action="fail"),
        CleanRule(name="score_ok", type="range", column="score", min=300, action="fail"),
    ]
    flagged = with_violations(df, rules, {})

    assert fail_samples(flagged, rules, F.col("id"), 3) == {
        "amount_pos": ["T001", "T003", "T005"],
        "score_ok": ["T100"],
    }


# --------------------------------------------------------------------------- imputation + summary


IMPUTE_ROWS = [
    ("T001", "c1", T0, 10.0, 400, "web", None),
    ("T002", "c2", T0, None, 500, "app", None),
    ("T003", None, T0, 30.0, None, "app", None),
    ("T004", "c4", T0, 45.5, 700, None, None),
    ("T005", "c5", T0, None, 650, "web", None),
    ("T006", "c6", T0, -1.0, 600, "store", None),  # dropped: schema:amount:range
    ("T007", "c7", T0, 12.25, 320, "store", None),
]
IMPUTE_CLEAN = CleanConfig(
    dedup="none",
    missing={
        "amount": {"strategy": "mean"},
        "score": {"strategy": "median"},
        "channel": {"strategy": "mode"},
        "cust": {"strategy": "constant", "value": "unknown"},
    },
)


def test_imputation_values_are_learned_from_the_rows_that_reach_silver(spark):
    flagged = prepare(bronze_rows(spark, IMPUTE_ROWS), IMPUTE_CLEAN, SCHEMA)

    summary = summarise(flagged, [*schema_rules(SCHEMA, "drop")], IMPUTE_CLEAN.missing)

    kept = [r for r in IMPUTE_ROWS if r[0] != "T006"]
    amounts = np.array([r[3] for r in kept if r[3] is not None])
    scores = np.array([r[4] for r in kept if r[4] is not None])  # 5 values: unambiguous median
    assert summary.fill_values == {
        "amount": pytest.approx(float(np.mean(amounts)), abs=1e-12),
        "score": int(np.median(scores)),
        "channel": "app",  # web and app both occur twice among kept rows: the smaller wins
        "cust": "unknown",
    }
    assert summary.nulls_imputed == {"amount": 2, "score": 1, "channel": 1, "cust": 1}
    assert (summary.rows_in, summary.rows_deduplicated, summary.rows_quarantined) == (7, 7, 1)
    assert summary.violations == {
        "schema:id:pattern": 0,
        "schema:amount:range": 1,
        "schema:score:range": 0,
        "schema:channel:allowed": 0,
    }

    silver = silver_rows(flagged, summary.fill_values, SCHEMA).drop(
        "ts", "raw_amount", "batch_id", "source_file", "ingested_at"
    )
    mean = float(np.mean(amounts))
    expected = spark.createDataFrame(
        [
            ("T001", "c1", 10.0, 400, "web"),
            ("T002", "c2", mean, 500, "app"),
            ("T003", "unknown", 30.0, 500, "app"),
            ("T004", "c4", 45.5, 700, "app"),
            ("T005", "c5", mean, 650, "web"),
            ("T007", "c7", 12.25, 320, "store"),
        ],
        "id string, cust string, amount double, score int, channel string",
    )
    assert_df_equality(silver, expected, ignore_row_order=True, ignore_nullable=True)


def test_integer_mean_is_rounded_half_up_and_modes_break_ties_numerically(spark):
    df = spark.createDataFrame(
        [(1, 10, "b"), (4, 9, "a"), (None, 9, "b"), (None, 10, "a"), (None, 3, None)],
        "n int, m int, s string",
    ).select("*", F.lit(1).cast("long").alias(COPIES))
    flagged = with_violations(df, [], {})
    policies = CleanConfig(missing={"n": {"strategy": "mean"}, "m": {"strategy": "mode"}}).missing

    summary = summarise(flagged, [], policies)

    expected_mean = int(Decimal(str(np.mean([1, 4]))).quantize(Decimal(1), ROUND_HALF_UP))
    assert summary.fill_values == {"n": expected_mean, "m": 9}  # 2.5 -> 3; 9 < 10 (not "10" < "9")
    assert expected_mean == 3
    assert mode_values(df, ["s", "m"]) == {"s": "a", "m": 9}


def test_quarantine_rows_carry_reason_key_and_the_row_as_json(spark):
    flagged = prepare(bronze_rows(spark, IMPUTE_ROWS), IMPUTE_CLEAN, SCHEMA)

    rejected = rejected_rows(
        flagged, SCHEMA, clean_rules(IMPUTE_CLEAN, SCHEMA), IMPUTE_CLEAN.missing
    )

    expected = spark.createDataFrame(
        [
            (
                "rule schema:amount:range: column amount value -1.0 outside range [0, 1000]",
                "clean",
                "T006",
                "f1.csv",
                "b1",
                ING,
            )
        ],
        "reason string, stage string, record_key string, source_file string, batch_id string, "
        "ingested_at timestamp",
    )
    assert_df_equality(rejected.drop("raw_record"), expected, ignore_nullable=True)
    raw = json.loads(rejected.first()["raw_record"])
    assert raw == {
        "id": "T006",
        "cust": "c6",
        "ts": "2026-01-01T10:00:00.000Z",
        "amount": -1.0,
        "score": 600,
        "channel": "store",
    }


# --------------------------------------------------------------------------- the job


JOB_CLEAN = {
    "dedup": "latest_by_key",
    "case": {"channel": "lower"},
    "mappings": {"channel": {"mobile": "app"}},
    "coerce": {"raw_amount": "double"},
    "missing": {
        "amount": {"strategy": "mean"},
        "score": {"strategy": "median"},
        "channel": {"strategy": "mode"},
        "cust": {"strategy": "drop"},
    },
    "rules": [
        {
            "name": "big_amount_low_score",
            "type": "expression",
            "expr": "NOT (score < 350 AND amount > 500)",
            "action": "warn",
        }
    ],
    "schema_constraints_action": "drop",
    # no quantile falls on a step of the 6-value empirical CDF of silver's columns
    "quantiles": [0.1, 0.4, 0.9],
}
F2 = ("f2.csv", ING)
JOB_ROWS = [
    ("T001", "c1", T0, 10.0, 400, " Web ", "12.5"),
    ("T002", "c2", T0, None, 500, "mobile", None),  # amount imputed; mobile -> app
    ("T003", "c3", T0, 30.0, None, "APP", None),  # score imputed
    ("T003", "c3", T0 - timedelta(hours=1), 31.0, 450, "app", None),  # older copy: removed
    ("T004", None, T0, 45.5, 700, "web", None),  # quarantined: cust null, policy drop
    ("T005", "c5", T0, -1.0, 600, "store", None),  # quarantined: schema:amount:range
    ("T006", "c6", T0, 12.25, 320, None, None),  # channel imputed
    ("T007", "c7", T0, 900.0, 310, "web", None),  # warning only
    ("T008", "c8", T0, 20.0, 800, "fax", None),  # quarantined: schema:channel:allowed
    ("T001", "c1", T0, 10.0, 400, " Web ", "12.5", *F2),  # re-sent in a later file: removed
    ("T009", "c9", T0, 5.0, 600, "app", "abc"),  # raw_amount does not cast
]


@pytest.fixture(scope="module")
def tables(spark):
    return open_tables(spark, "rs")


def job_config(tmp_path: Path, clean: dict, batch: str = "b1", schema: dict = SCHEMA_DICT):
    data = _cfg_dict(tmp_path, clean, schema)
    data["batch_id"] = batch
    return build_config(data, check_schema=True)


def write_bronze(spark, tables, cfg, rows_by_batch: dict[str, list[tuple]]):
    df = None
    for batch, rows in rows_by_batch.items():
        part = bronze_rows(spark, rows, batch=batch)
        df = part if df is None else df.unionByName(part)
    tables.overwrite(df, cfg.storage.table_path("bronze"), partition_by=["batch_id"])


def read_batch(tables, cfg, name, batch="b1"):
    return tables.read(cfg.storage.table_path(name)).where(F.col("batch_id") == batch)


def dq_values(tables, cfg, batch="b1", run_id=None):
    dq = read_batch(tables, cfg, "dq_metrics", batch)
    if run_id is not None:
        dq = dq.where(F.col("run_id") == run_id)
    rows = dq.select("column", "metric", "value").collect()
    return {(r["column"], r["metric"]): r["value"] for r in rows}


def test_run_clean_writes_silver_quarantine_and_metrics_and_a_rerun_changes_nothing(
    spark, tables, tmp_path
):
    cfg = job_config(tmp_path, JOB_CLEAN)
    other_batch = [("T100", "c1", T0, 1.0, 400, "web", None)]
    write_bronze(spark, tables, cfg, {"b0": other_batch, "b1": JOB_ROWS})

    result = run_clean(spark, cfg, tables)

    assert result.job == "clean"
    assert result.outputs == {
        n: cfg.storage.table_path(n) for n in ("silver", "quarantine", "dq_metrics", "fill_values")
    }
    assert result.metrics == {
        "rows_in": 11,
        "rows_out": 6,
        "duplicates_removed": 2,
        "duplicates_in_other_batches": 0,
        "replaced_in_other_batches": 0,
        "rows_quarantined": 3,
        "warnings": 1,
    }
    kept = {"T001": 10.0, "T003": 30.0, "T006": 12.25, "T007": 900.0, "T009": 5.0}
    mean_amount = float(np.mean(list(kept.values())))
    median_score = float(np.median([400, 500, 320, 310, 600]))  # five values: unambiguous
    silver_schema = (
        "id string, cust string, ts timestamp, amount double, score int, channel string, "
        "raw_amount double, batch_id string, source_file string, ingested_at timestamp"
    )
    expected_silver = spark.createDataFrame(
        [
            ("T001", "c1", T0, 10.0, 400, "web", 12.5, "b1", "f2.csv", ING),
            ("T002", "c2", T0, mean_amount, 500, "app", None, "b1", "f1.csv", ING),
            (
                "T003",
                "c3",
                T0,
                30.0,
                int(median_score),
                "app",
                None,
                "b1",
                "f1.csv",
                ING,
            ),
            ("T006", "c6", T0, 12.25, 320, "app", None, "b1", "f1.csv", ING),
            ("T007", "c7", T0, 900.0, 310, "web", None, "b1", "f1.csv", ING),
            ("T009", "c9", T0, 5.0, 600, "app", None, "b1", "f1.csv", ING),
        ],
        silver_schema,
    )
    silver = read_batch(tables, cfg, "silver")
    assert_approx_df_equality(
        silver, expected_silver, precision=1e-9, ignore_row_order=True, ignore_nullable=True
    )
    expected_quarantine = spark.createDataFrame(
        [
            ("column cust: null, missing-value policy drop", "T004"),
            ("rule schema:amount:range: column amount value -1.0 outside range [0, 1000]", "T005"),
            (
                "rule schema:channel:allowed: column channel value fax not in allowed values "
                "[web, app, store]",
                "T008",
            ),
        ],
        "reason string, record_key string",
    )
    quarantine = read_batch(tables, cfg, "quarantine")
    assert_df_equality(
        quarantine.where(F.col("stage") == "clean").select("reason", "record_key"),
        expected_quarantine,
        ignore_row_order=True,
        ignore_nullable=True,
    )

    metrics = dq_values(tables, cfg)
    table_level = {m: v for (c, m), v in metrics.items() if c is None}
    assert table_level == {
        "rows_in": 11.0,
        "rows_out": 6.0,
        "duplicates_removed": 2.0,
        "duplicates_in_other_batches": 0.0,
        "replaced_in_other_batches": 0.0,
        "rows_quarantined": 3.0,
        "warnings": 1.0,
    }
    assert table_level["rows_in"] == (
        silver.count() + table_level["duplicates_removed"] + table_level["rows_quarantined"]
    )
    assert {c: v for (c, m), v in metrics.items() if m == "violations"} == {
        "big_amount_low_score": 1.0,
        "schema:id:pattern": 0.0,
        "schema:amount:range": 1.0,
        "schema:score:range": 0.0,
        "schema:channel:allowed": 1.0,
    }
    assert metrics[("raw_amount", "coercion_failures")] == 1.0
    assert metrics[("cust", "missing_dropped")] == 1.0
    assert {c: metrics[(c, "nulls_imputed")] for c in ("amount", "score", "channel")} == {
        "amount": 1.0,
        "score": 1.0,
        "channel": 1.0,
    }
    # Profiles describe the silver rows before imputation (the imputed value is not data):
    # compare with numpy on the expected silver values, imputed nulls left out.
    for column, values in {
        "amount": [10.0, 30.0, 12.25, 900.0, 5.0],
        "score": [400, 500, 320, 310, 600],
    }.items():
        v = np.array(values, dtype=float)
        expected = {
            "null_count": 1.0,
            "approx_distinct": float(len(set(values))),
            "min": v.min(),
            "max": v.max(),
            "mean": v.mean(),
            "stddev": np.std(v, ddof=1),
            **{
                quantile_metric(q): np.quantile(v, q, method="inverted_cdf")
                for q in JOB_CLEAN["quantiles"]
            },
        }
        actual = {m: val for (c, m), val in metrics.items() if c == column and m != "nulls_imputed"}
        assert actual == {m: pytest.approx(x, rel=1e-12) for m, x in expected.items()}
    assert metrics[("raw_amount", "null_count")] == 5.0
    assert metrics[("channel", "approx_distinct")] == 2.0
    dq = read_batch(tables, cfg, "dq_metrics")
    first_run = dq.select("run_id", "stage").distinct().collect()
    assert [r["stage"] for r in first_run] == ["clean"]

    # A rerun of the same batch leaves the same silver, quarantine and metric values.
    silver_before = silver.collect()
    quarantine_before = quarantine.collect()
    run_clean(spark, cfg, tables)
    assert_df_equality(
        read_batch(tables, cfg, "silver"),
        spark.createDataFrame(silver_before, silver.schema),
        ignore_row_order=True,
    )
    assert_df_equality(
        read_batch(tables, cfg, "quarantine"),
        spark.createDataFrame(quarantine_before, quarantine.schema),
        ignore_row_order=True,
    )
    # The rerun replaced the batch's metrics with its own run's, of the same values.
    run_ids = {
        r["run_id"]
        for r in read_batch(tables, cfg, "dq_metrics").select("run_id").distinct().collect()
    }
    assert len(run_ids) == 1 and first_run[0]["run_id"] not in run_ids
    assert dq_values(tables, cfg, run_id=run_ids.pop()) == metrics
    # the other batch was never touched
    assert read_batch(tables, cfg, "silver", "b0").count() == 0


def test_latest_by_key_holds_a_record_once_across_batches_the_latest_copy_wins(
    spark, tables, tmp_path
):
    def row(record, hours, amount, ingested=ING):
        return (
            record,
            "c",
            T0 + timedelta(hours=hours),
            amount,
            400,
            "web",
            None,
            "f.csv",
            ingested,
        )

    later = ING + timedelta(days=2)
    batches = {
        "b1": [row("T001", 0, 1.0), row("T002", 0, 2.0), row("T003", 0, 3.0)],
        # T002 sent again with a later event time: it moves to b2
        "b2": [row("T002", 1, 22.0), row("T004", 0, 4.0)],
        # a backfill ingested last: its T003 is older than b1's and loses; its T001 is the
        # latest (and sent twice within the batch)
        "b3": [
            row("T003", -1, 33.0, later),
            row("T001", 2, 11.0, later),
            row("T001", 1, 10.0, later),
        ],
    }
    base = job_config(tmp_path, {})
    write_bronze(spark, tables, base, batches)
    expected = [("T003", "b1", 3.0), ("T002", "b2", 22.0), ("T004", "b2", 4.0)]
    expected += [("T001", "b3", 11.0)]

    def check_tables():
        for name in ("silver", "features"):
            rows = tables.read(base.storage.table_path(name)).select("id", "batch_id", "amount")
            assert_df_equality(
                rows, spark.createDataFrame(expected, rows.schema), ignore_row_order=True
            )

    runs = {}
    for b in batches:  # each batch cleaned and its features built, in order
        runs[b] = run_clean(spark, job_config(tmp_path, {}, batch=b), tables)
        run_build_features(spark, job_config(tmp_path, {}, batch=b), tables)
    check_tables()
    rerun = run_clean(spark, job_config(tmp_path, {}, batch="b1"), tables)
    run_build_features(spark, job_config(tmp_path, {}, batch="b1"), tables)
    check_tables()
    counts = ("rows_in", "rows_out", "duplicates_removed", "duplicates_in_other_batches")
    counts += ("replaced_in_other_batches", "rows_quarantined")

    def metrics(result):
        return tuple(result.metrics[m] for m in counts)

    assert metrics(runs["b1"]) == (3, 3, 0, 0, 0, 0)
    # Nothing is imputed with this config: no fill_values table.
    assert "fill_values" not in runs["b1"].outputs
    assert not tables.exists(job_config(tmp_path, {}).storage.table_path("fill_values"))
    assert metrics(runs["b2"]) == (2, 2, 0, 0, 1, 0)
    assert metrics(runs["b3"]) == (3, 1, 2, 1, 1, 0)
    # rerun after the later batches: b1's T001 and T002 have later copies elsewhere
    assert metrics(rerun) == (3, 1, 2, 2, 0, 0)
    dq = dq_values(tables, base, batch="b3")
    assert [dq[(None, m)] for m in counts] == [3.0, 1.0, 2.0, 1.0, 1.0, 0.0]


IMPUTE_FROM = {
    "dedup": "none",
    "missing": {
        "amount": {"strategy": "mean"},
        "score": {"strategy": "median"},
        "channel": {"strategy": "mode"},
        "cust": {"strategy": "constant", "value": "unknown"},
    },
    "impute_from": "b0",
}


def test_impute_from_fills_later_batches_with_the_values_learned_on_that_batch(
    spark, tables, tmp_path
):
    """The training batch's learned values fill the nulls of a later batch (whose own mean,
    median and mode differ), are stored with the batch they came from, and a batch cleaned
    before its source, or after the policy changed, is refused before anything is written."""
    b0 = [
        ("T001", "c1", T0, 10.0, 400, "web", None),
        ("T002", "c2", T0, 20.0, 500, "web", None),
        ("T003", "c3", T0, 60.0, 700, "app", None),
        ("T004", None, T0, None, None, None, None),
    ]
    b1 = [
        ("T011", "c1", T0, 500.0, 800, "store", None),
        ("T012", "c2", T0, 700.0, 820, "store", None),
        ("T013", None, T0, None, None, None, None),
    ]
    cfg = {b: job_config(tmp_path, IMPUTE_FROM, batch=b) for b in ("b0", "b1")}
    write_bronze(spark, tables, cfg["b0"], {"b0": b0, "b1": b1})
    path = cfg["b0"].storage.table_path("fill_values")
    refused = (
        f"clean: {path} holds no fill values learned from batch 'b0'; clean batch 'b0' first "
        "(clean.impute_from is 'b0'), or unset clean.impute_from to learn from each batch"
    )
    with pytest.raises(JobError) as err:
        run_clean(spark, cfg["b1"], tables)
    assert str(err.value) == refused
    assert not tables.exists(cfg["b1"].storage.table_path("silver"))

    run_clean(spark, cfg["b0"], tables)
    run_clean(spark, cfg["b1"], tables)

    mean0, median0 = float(np.mean([10.0, 20.0, 60.0])), int(np.median([400, 500, 700]))
    assert (mean0, median0) == (30.0, 500)  # b1's own: 600.0 and 810
    silver = read_batch(tables, cfg["b1"], "silver", "b1").select(
        "id", "cust", "amount", "score", "channel"
    )
    expected = spark.createDataFrame(
        [
            ("T011", "c1", 500.0, 800, "store"),
            ("T012", "c2", 700.0, 820, "store"),
            ("T013", "unknown", mean0, median0, "web"),
        ],
        "id string, cust string, amount double, score int, channel string",
    )
    assert_df_equality(silver, expected, ignore_row_order=True, ignore_nullable=True)
    stored = spark.createDataFrame(
        [
            (c, strategy, value, learned, b)
            for b in ("b0", "b1")
            for c, strategy, value, learned in [
                ("amount", "mean", "30.0", "b0"),
                ("channel", "mode", "web", "b0"),
                ("cust", "constant", "unknown", None),
                ("score", "median", "500", "b0"),
            ]
        ],
        "column string, strategy string, value string, learned_from string, batch_id string",
    )
    assert_df_equality(tables.read(path), stored, ignore_row_order=True, ignore_nullable=True)

    changed = {**IMPUTE_FROM, "missing": {**IMPUTE_FROM["missing"], "score": {"strategy": "mean"}}}
    with pytest.raises(JobError) as err:
        run_clean(spark, job_config(tmp_path, changed, batch="b1"), tables)
    assert str(err.value) == (
        f"clean: {path} lacks fill values of column(s) ['score'] learned from batch 'b0' with "
        "the strategy clean.missing now gives them; clean batch 'b0' again, or unset "
        "clean.impute_from to learn from each batch"
    )


def test_fail_rule_stops_before_writing_and_names_rule_and_sample_keys(spark, tables, tmp_path):
    cfg = job_config(tmp_path, JOB_CLEAN)
    write_bronze(spark, tables, cfg, {"b1": JOB_ROWS})
    run_clean(spark, cfg, tables)
    names = ("silver", "quarantine", "dq_metrics")
    versions = {n: tables.version(cfg.storage.table_path(n)) for n in names}

    failing = {
        **JOB_CLEAN,
        "rules": [
            {
                "name": "amount_small",
                "type": "range",
                "column": "amount",
                "max": 25,
                "action": "fail",
            }
        ],
        "fail_sample_size": 2,
    }
    with pytest.raises(JobError) as err:
        run_clean(spark, job_config(tmp_path, failing), tables)

    # T003 (30.0), T004 (45.5) and T007 (900.0) exceed 25; the two smallest keys are shown
    assert (
        "violates fail rule(s): rule amount_small (column amount) failed for 3 row(s), "
        "e.g. keys ['T003', 'T004']. Nothing was written" in str(err.value)
    )
    assert {n: tables.version(cfg.storage.table_path(n)) for n in names} == versions


def test_batch_missing_from_bronze_is_refused_naming_the_batches_there(spark, tables, tmp_path):
    cfg = job_config(tmp_path, JOB_CLEAN, batch="b9")
    write_bronze(spark, tables, cfg, {"b1": JOB_ROWS[:2], "b2": JOB_ROWS[2:3]})
    bronze = cfg.storage.table_path("bronze")
    with pytest.raises(BatchNotFoundError) as err:
        run_clean(spark, cfg, tables)
    assert str(err.value) == (
        f"batch 'b9' is not in Delta table {bronze}; batches there: b1, b2. Set batch_id to one "
        "of them or run the job that writes it"
    )
    assert not tables.exists(cfg.storage.table_path("silver"))


def test_missing_bronze_table_is_a_job_error(spark, tables, tmp_path):
    cfg = job_config(tmp_path, JOB_CLEAN)
    with pytest.raises(JobError, match="clean: no bronze table at .*; run the ingest job first"):
        run_clean(spark, cfg, tables)


def _wide_schema(k: int) -> dict:
    cols = [
        {"name": "id", "type": "string", "role": "record_id"},
        {"name": "ts", "type": "timestamp", "role": "event_time"},
    ]
    cols += [
        {
            "name": f"x{i}",
            "type": "double",
            "role": "numeric_feature",
            "constraints": {"min": 0, "max": 100},
        }
        for i in range(k)
    ]
    return {"name": f"wide{k}", "columns": cols}


def test_number_of_spark_jobs_does_not_grow_with_the_number_of_columns(spark, tables, tmp_path):
    counts = {}
    for k in (5, 40):
        schema_dict = _wide_schema(k)
        schema = schema_from_dict(schema_dict)
        root = tmp_path / f"k{k}"
        root.mkdir()
        clean = {
            "missing": {f"x{i}": {"strategy": ("mode", "mean", "median")[i % 3]} for i in range(k)},
            "rules": [
                {
                    "name": f"x{i}_small",
                    "type": "expression",
                    "expr": f"x{i} < 90",
                    "action": "warn",
                }
                for i in range(k)
            ],
        }
        cfg = job_config(root, clean, schema=schema_dict)
        # the same 12 rows, one value per row repeated in every column
        values = [None if r % 5 == 0 else (r * 17.5) % 110 for r in range(12)]
        rows = [(f"T{r:03d}", T0, *([v] * k), "b1", "f1.csv", ING) for r, v in enumerate(values)]
        bronze = spark.createDataFrame(rows, T.StructType(schema.struct.fields + META))
        tables.overwrite(bronze, cfg.storage.table_path("bronze"), partition_by=["batch_id"])

        with JobCounter(spark) as jobs:
            result = run_clean(spark, cfg, tables)
        counts[k] = jobs.count
        # values above 100 are quarantined by the schema range rules
        assert result.metrics["rows_quarantined"] == sum(v is not None and v > 100 for v in values)
    assert counts[5] == counts[40]
