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
        (
            # YAML 1.1 reads yes/no as booleans: the rule would compare text with true/false
            "- {name: a, type: string, constraints: {allowed: [yes, no]}}",
            "column 'a': constraint 'allowed' of a string column holds [True, False], not text "
            "(YAML reads unquoted yes/no/on/off/true/false as booleans); quote each value as it "
            'is written in the data, e.g. allowed: ["yes", "no"]',
        ),
        (
            "- {name: a, type: string, constraints: {allowed: [A1, 01, 2]}}",
            "column 'a': constraint 'allowed' of a string column holds [1, 2], not text (YAML "
            "reads unquoted numbers as numbers)",
        ),
        (
            "- {name: a, type: int, constraints: {allowed: [0, 1.5, 'x', on]}}",
            "column 'a': constraint 'allowed' of an int column holds [1.5, 'x', True], which are "
            "not whole numbers; list values of the column's type or change its type",
        ),
        (
            "- {name: a, type: boolean, constraints: {allowed: ['true']}}",
            "column 'a': constraint 'allowed' of a boolean column holds ['true']; use true/false",
        ),
        ("- {name: a, type: int}\n  - {name: A, type: int}", "column 'A' is declared twice"),
        (
            "- {name: a, type: int, role: event_time}",
            "column 'a': role event_time needs type timestamp or date",
        ),
        (
            "- {name: a, type: int, role: key}\n  - {name: b, type: int, role: key}",
            "role 'key' is given to several columns ['a', 'b']",
        ),
        (
            "- {name: reading.temp, type: double}",
            "column 'reading.temp': a column name cannot hold '.' (Spark reads 'a.b' as field b "
            "of column a; Delta tables refuse blanks and ,;{}()= in names); name it "
            "'reading_temp' and, if the input files name it 'reading.temp', add input_name: "
            '"reading.temp"',
        ),
        (
            "- {name: 'a`b', input_name: a b, type: double}",
            "column 'a`b': a column name cannot hold '`' (Spark",
        ),
        (
            "- {name: 'Zone (A/B)', type: string}",
            "column 'Zone (A/B)': a column name cannot hold ' ' or '(' or ')' (Spark reads 'a.b' "
            "as field b of column a; Delta tables refuse blanks and ,;{}()= in names); name it "
            "'Zone_A_B' and, if the input files name it 'Zone (A/B)', add input_name: "
            '"Zone (A/B)"',
        ),
        ("- {name: a, input_name: 3, type: int}", "column 'a': 'input_name' must be the column's"),
        (
            "- {name: a, type: long, format: epoch_millis}",
            "column 'a': format epoch_millis (a number since 1970) needs type timestamp",
        ),
        (
            "- {name: a, type: int}\n  - {name: b, input_name: A, type: int}",
            "columns 'a' and 'b' are both read from input column 'A'; give each its own input_name",
        ),
        (
            "- {name: a, input_name: [user, 3], type: int}",
            "column 'a': 'input_name' as a list is the path of keys to a nested field, e.g. "
            '[user, age] for {"user": {"age": 31}}; got [\'user\', 3]',
        ),
        (
            "- {name: u, input_name: User, type: string}\n"
            "  - {name: age, input_name: [user, age], type: int}",
            "column 'u' reads 'User' whole while column 'age' reads a field inside it; read its "
            'fields as columns (input_name: ["User", "<field>"]), or it whole as JSON text, not '
            "both",
        ),
        (
            "- {name: a, input_name: [u, age], type: int}\n  - {name: b, input_name: [U, Age], "
            "type: int}",
            "columns 'a' and 'b' are both read from input column 'U.Age'",
        ),
    ],
)
def test_malformed_schema_names_file_and_column(tmp_path, columns, message):
    p = write_schema(tmp_path, f"name: bad\ncolumns:\n  {columns}\n")
    with pytest.raises(SchemaError) as err:
        load_schema(p)
    assert str(err.value).startswith(str(p))
    assert message in str(err.value)


def test_constraints_written_beside_the_type_are_shown_under_constraints(tmp_path):
    p = write_schema(
        tmp_path,
        "name: m\ncolumns:\n  - {name: t, type: double, min: -60, max: 60.5, note: x}\n"
        '  - {name: c, type: string, allowed: ["a", "b"]}\n',
    )
    with pytest.raises(SchemaError) as err:
        load_schema(p)
    assert str(err.value) == (
        f"{p}: column 't': unknown key(s) ['max', 'min', 'note']; allowed: ['constraints', "
        "'description', 'format', 'input_name', 'name', 'nullable', 'role', 'type']; min, max "
        "belong under 'constraints': constraints: {min: -60, max: 60.5}"
    )
    p.write_text(p.read_text().replace("min: -60, max: 60.5, note: x", "constraints: {min: -60}"))
    with pytest.raises(SchemaError) as err:
        load_schema(p)
    assert str(err.value).endswith(
        "column 'c': unknown key(s) ['allowed']; allowed: ['constraints', 'description', "
        "'format', 'input_name', 'name', 'nullable', 'role', 'type']; allowed belongs under "
        '\'constraints\': constraints: {allowed: ["a", "b"]}'
    )


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


def test_a_column_may_hold_record_id_and_key(tmp_path):
    p = write_schema(
        tmp_path,
        """\
        name: customers
        columns:
          - {name: customer_id, type: string, nullable: false, role: [record_id, key]}
          - {name: signup, type: date, role: event_time}
          - {name: spend, type: double, role: numeric_feature}
          - {name: note, type: string}
        """,
    )
    s = load_schema(p)
    cid = s.column("customer_id")
    assert cid.roles == ("record_id", "key")
    assert cid.role == "record_id"
    assert (cid.has_role("key"), cid.has_role("label")) == (True, False)
    assert (s.record_id, s.key, s.event_time, s.label) == (
        "customer_id",
        "customer_id",
        "signup",
        None,
    )
    assert [c.name for c in s.with_role("key")] == ["customer_id"]
    assert s.column("spend").roles == ("numeric_feature",)
    assert s.column("note").roles == ()
    assert s.column("note").role is None


def test_a_single_role_string_gives_a_one_role_tuple(sample_schema_path):
    s = load_schema(sample_schema_path)
    assert s.column("customer_id").roles == ("key",)
    assert s.column("is_fraud").role == "label"


def test_a_key_may_also_be_a_categorical_feature(tmp_path):
    p = write_schema(
        tmp_path,
        """\
        name: s
        columns:
          - {name: store, type: string, role: [key, categorical_feature]}
          - {name: channel, type: string, role: categorical_feature}
        """,
    )
    s = load_schema(p)
    assert (s.key, s.categorical_features) == ("store", ["store", "channel"])


LEAK = "it would leak the label into the features"
LABEL_NOT_ID = "the label is the value to predict, not what identifies or times a record"
TIME_NOT_ID = "the event time says when a record happened, not which record or entity it is"
UNIQUE = "a value unique to each record has nothing a model can learn from"


@pytest.mark.parametrize(
    "column, message",
    [
        (
            "{name: a, type: int, role: [label, numeric_feature]}",
            f"roles label and numeric_feature cannot be combined: {LEAK}",
        ),
        (
            "{name: a, type: string, role: [categorical_feature, label]}",
            f"roles categorical_feature and label cannot be combined: {LEAK}",
        ),
        (
            "{name: a, type: timestamp, role: [event_time, key]}",
            f"roles event_time and key cannot be combined: {TIME_NOT_ID}",
        ),
        (
            "{name: a, type: timestamp, role: [record_id, event_time]}",
            f"roles record_id and event_time cannot be combined: {TIME_NOT_ID}",
        ),
        (
            "{name: a, type: int, role: [numeric_feature, categorical_feature]}",
            "roles numeric_feature and categorical_feature cannot be combined: a feature is "
            "encoded either as a number or as categories; keep the role its values fit",
        ),
        (
            "{name: a, type: int, role: [key, label]}",
            f"roles key and label cannot be combined: {LABEL_NOT_ID}",
        ),
        (
            "{name: a, type: string, role: [record_id, categorical_feature]}",
            f"roles record_id and categorical_feature cannot be combined: {UNIQUE}",
        ),
        ("{name: a, type: string, role: [key, key]}", "role 'key' is listed twice"),
        (
            "{name: a, type: string, role: []}",
            "'role' is an empty list; give one or more roles or leave it out",
        ),
        (
            "{name: a, type: string, role: [key, entity]}",
            "unknown role 'entity'; use one of ['record_id', 'key', 'event_time', 'label', "
            "'numeric_feature', 'categorical_feature']",
        ),
    ],
)
def test_role_combinations_that_make_no_sense_are_refused(tmp_path, column, message):
    p = write_schema(tmp_path, f"name: bad\ncolumns:\n  - {column}\n")
    with pytest.raises(SchemaError) as err:
        load_schema(p)
    assert str(err.value) == f"{p}: column 'a': {message}"


def test_a_single_column_role_in_a_list_is_still_held_by_one_column(tmp_path):
    p = write_schema(
        tmp_path,
        """\
        name: s
        columns:
          - {name: a, type: string, role: [record_id, key]}
          - {name: b, type: string, role: key}
        """,
    )
    with pytest.raises(SchemaError) as err:
        load_schema(p)
    assert str(err.value) == (
        f"{p}: role 'key' is given to several columns ['a', 'b']; only one may have it"
    )


def test_input_name_reads_a_column_the_tables_name_otherwise(tmp_path):
    p = write_schema(
        tmp_path,
        "name: r\ncolumns:\n"
        '  - {name: reading_temp, input_name: "reading.temp", type: double}\n'
        "  - {name: zone, input_name: zone, type: string}\n"
        '  - {name: Sensor_ID, input_name: "Sensor ID", type: string}\n'
        "  - {name: user_age, input_name: [user, age], type: int}\n"
        "  - {name: country, input_name: [user, address, country], type: string}\n"
        "  - {name: user_id, input_name: [user_id], type: string}\n",
    )
    schema = load_schema(p)
    assert [(c.name, c.input_path, c.nested, c.read_as) for c in schema.columns] == [
        ("reading_temp", ("reading.temp",), False, "reading.temp"),
        ("zone", ("zone",), False, "zone"),
        ("Sensor_ID", ("Sensor ID",), False, "Sensor ID"),
        ("user_age", ("user", "age"), True, "user.age"),
        ("country", ("user", "address", "country"), True, "user.address.country"),
        ("user_id", ("user_id",), False, "user_id"),  # a path of one key is that key
    ]
