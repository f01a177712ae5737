"""Schema files load into StructType + constraints + roles; malformed files name file and column."""

from __future__ import annotations

import json
import textwrap

import pytest
from pyspark.sql import types as T

from ml_engine.schemas import Constraints, SchemaError, load_schema


def write_schema(tmp_path, text, name="s.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def test_sample_schema_loads_types_roles_and_constraints(sample_schema_path):
    s = load_schema(sample_schema_path)
    assert s.struct == T.StructType(
        [
            T.StructField("transaction_id", T.StringType(), False),
            T.StructField("customer_id", T.StringType(), False),
            T.StructField("event_time", T.TimestampType(), False),
            T.StructField("amount", T.DoubleType(), True),
            T.StructField("account_age_days", T.IntegerType(), True),
            T.StructField("num_items", T.IntegerType(), True),
            T.StructField("distance_km", T.DoubleType(), True),
            T.StructField("credit_score", T.IntegerType(), True),
            T.StructField("channel", T.StringType(), True),
            T.StructField("merchant_category", T.StringType(), True),
            T.StructField("country", T.StringType(), True),
            T.StructField("is_fraud", T.IntegerType(), True),
        ]
    )
    assert (s.record_id, s.key, s.event_time, s.label) == (
        "transaction_id",
        "customer_id",
        "event_time",
        "is_fraud",
    )
    assert s.numeric_features == [
        "amount",
        "account_age_days",
        "num_items",
        "distance_km",
        "credit_score",
    ]
    assert s.categorical_features == ["channel", "merchant_category", "country"]
    assert s.column("credit_score").constraints == Constraints(min=300, max=850)
    assert s.column("channel").constraints.allowed == ("web", "store", "app", "phone")


def test_json_schema_and_decimal_type(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"name": "j", "columns": [{"name": "p", "type": "decimal(10,2)"}]}))
    assert load_schema(p).struct == T.StructType([T.StructField("p", T.DecimalType(10, 2), True)])


@pytest.mark.parametrize(
    "columns, message",
    [
        ("- {name: a, type: strng}", "column 'a': unknown type 'strng'"),
        ("- {name: a}", "column 'a': missing 'type'"),
        ("- {name: a, type: string, role: target}", "column 'a': unknown role 'target'"),
        (
            "- {name: a, type: string, constraints: {min: 1}}",
            "column 'a': min/max constraints need a numeric type",
        ),
        (
            "- {name: a, type: int, constraints: {pattern: 'x'}}",
            "column 'a': a pattern constraint needs type string",
        ),
        (
            "- {name: a, type: string, constraints: {pattern: '(unclosed'}}",
            "column 'a': pattern '(unclosed' is not a valid regex",
        ),
        (
            "- {name: a, type: int, constraints: {min: 5, max: 1}}",
            "column 'a': min 5 is greater than max 1",
        ),
        (
            "- {name: a, type: int, constraints: {between: [1, 2]}}",
            "column 'a': unknown constraint(s) ['between']",
        ),
        ("- {name: a, type: int, nullable: maybe}", "column 'a': 'nullable' must be true or false"),
        ("- {name: a, type: int}\n  - {name: A, type: int}", "column 'A' is declared twice"),
        (
            "- {name: a, type: int, role: event_time}",
            "column 'a': role event_time needs type timestamp or date",
        ),
        (
            "- {name: a, type: int, role: key}\n  - {name: b, type: int, role: key}",
            "role 'key' is given to several columns ['a', 'b']",
        ),
    ],
)
def test_malformed_schema_names_file_and_column(tmp_path, columns, message):
    p = write_schema(tmp_path, f"name: bad\ncolumns:\n  {columns}\n")
    with pytest.raises(SchemaError) as err:
        load_schema(p)
    assert str(err.value).startswith(str(p))
    assert message in str(err.value)


def test_schema_without_columns_is_rejected(tmp_path):
    p = write_schema(tmp_path, "name: empty\ncolumns: []\n")
    with pytest.raises(SchemaError, match="'columns' must be a non-empty list"):
        load_schema(p)


def test_invalid_yaml_is_reported_with_file(tmp_path):
    p = write_schema(tmp_path, "name: x\ncolumns: [\n")
    with pytest.raises(SchemaError, match=f"{p}: not valid YAML"):
        load_schema(p)


def test_missing_schema_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="schema file .* not found"):
        load_schema(tmp_path / "nope.yaml")
