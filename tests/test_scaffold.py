"""`ml-engine init` scaffolding: a draft schema and config from a sample of the user's data.

No Spark: the scaffold reads its sample with pyarrow and the standard library.
"""

from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ml_engine.config import Config, load_config
from ml_engine.scaffold import ColumnGuess, ScaffoldError, scaffold
from ml_engine.schemas import load_schema

FEATURES = [f"f{j:02d}" for j in range(30)]


def columns_of(schema_path):
    """(name, type, nullable, roles, format) of every column of a written schema."""
    return [
        (c.name, c.type, c.nullable, c.roles, c.format) for c in load_schema(schema_path).columns
    ]


def header_of(path):
    """The leading comment of a written file, its wrapped lines joined by spaces."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:])
    return " ".join(lines)


def column_lines(path):
    return [line for line in path.read_text().splitlines() if line.startswith("  - {")]


def config_of(result):
    """The written config as data; every key in it must exist in the config model."""
    with open(result.config_path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    Config.model_validate({k: v for k, v in data.items() if k != "inherits"})
    return data


@pytest.fixture
def events_csv(tmp_path):
    """Dataset (1): integer id, ISO 'T' timestamps, 30 numeric features, a 0/1 target."""
    rng = np.random.default_rng(7)
    n = 200
    df = pd.DataFrame({"id": np.arange(1, n + 1)})
    start = datetime(2024, 1, 1)
    df["ts"] = [(start + timedelta(minutes=37 * i)).isoformat() for i in range(n)]
    for name in FEATURES:
        df[name] = rng.normal(size=n).round(4)
    df["target"] = rng.integers(0, 2, n)
    path = tmp_path / "data" / "events.csv"
    path.parent.mkdir()
    df.to_csv(path, index=False)
    return path


def visits_frame(n=120):
    """Dataset (2): string ids, a non-unique store id, slash timestamps, mixed features, y."""
    rng = np.random.default_rng(11)
    start = datetime(2024, 3, 1)
    return pd.DataFrame(
        {
            "id": [f"u-{i:04d}" for i in range(1, n + 1)],
            "store_id": [f"s{i % 7}" for i in range(n)],
            "ts": [
                (start + timedelta(hours=5 * i)).strftime("%Y/%m/%d %H:%M:%S") for i in range(n)
            ],
            "visits": rng.integers(0, 50, n),
            "spend": np.where(np.arange(n) % 10 == 3, np.nan, rng.gamma(2, 30, n).round(2)),
            "channel": rng.choice(["web", "app", "store"], n),
            "is_weekend": rng.choice([True, False], n),
            "note": [f"free text number {i} here" for i in range(n)],
            "y": rng.normal(100, 20, n).round(3),
        }
    )


@pytest.fixture
def visits_jsonl(tmp_path):
    path = tmp_path / "raw" / "visits.jsonl"
    path.parent.mkdir()
    visits_frame().to_json(path, orient="records", lines=True)
    return path


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


# --------------------------------------------------------------------------- dataset (1): CSV


def test_csv_schema_has_the_sampled_types_roles_and_format(events_csv, tmp_path):
    result = scaffold(str(events_csv), str(tmp_path / "project"))
    assert columns_of(result.schema_path) == [
        ("id", "int", False, ("record_id", "key"), None),
        ("ts", "timestamp", False, ("event_time",), "yyyy-MM-dd'T'HH:mm:ss"),
        *[(name, "double", True, ("numeric_feature",), None) for name in FEATURES],
        ("target", "int", True, ("label",), None),
    ]
    schema = load_schema(result.schema_path)
    assert (schema.name, schema.record_id, schema.key, schema.event_time, schema.label) == (
        "events",
        "id",
        "id",
        "ts",
        "target",
    )


def test_csv_schema_marks_every_guess_with_a_comment(events_csv, tmp_path):
    result = scaffold(str(events_csv), str(tmp_path / "project"))
    header = header_of(tmp_path / "project" / "schema.yaml")
    assert header.startswith("Draft schema written by `ml-engine init` on ")
    assert (
        f"from {events_csv} (csv): types, nullability and roles are guessed from its first 200 rows."
        in header
    )
    lines = column_lines(tmp_path / "project" / "schema.yaml")
    assert len(lines) == 33
    assert all("  # guessed: " in line for line in lines)
    comments = {
        line.split("name: ")[1].split(",")[0]: line.split("# guessed: ")[1] for line in lines
    }
    assert comments["id"] == (
        "whole numbers that fit int -> int; unique in the 200-row sample -> record id and entity "
        "key (no other column looks like an entity key); never empty -> not nullable"
    )
    assert comments["ts"] == (
        "text like '2024-01-01T00:00:00' -> timestamp, format yyyy-MM-dd'T'HH:mm:ss; the only "
        "date/time column -> event time; never empty -> not nullable"
    )
    assert comments["f07"] == "decimal numbers -> double; not an id or the label -> numeric feature"
    assert comments["target"] == (
        "whole numbers that fit int -> int; named 'target' -> label (2 distinct values in the "
        "sample: classification)"
    )
    assert [g.reason for g in result.guesses] == list(comments.values())


def test_csv_config_holds_exactly_the_keys_to_run_every_job(events_csv, tmp_path):
    result = scaffold(str(events_csv), str(tmp_path / "project"))
    data = config_of(result)
    assert data == {
        "inherits": "ml-engine:defaults",
        "schema": "schema.yaml",
        "storage": {"root": "work"},
        "ingest": {
            "path": "../data/events.csv",
            "format": "csv",
            "timestamp_format": "yyyy-MM-dd'T'HH:mm:ss",
        },
        # the record id is the entity: no windows
        "features": {"date_parts": {"ts": ["hour", "dayofweek"]}},
        "mlflow": {"experiment": "events", "registered_model": "events-model"},
        "train": {"task": "classification"},
    }
    header = header_of(tmp_path / "project" / "config.yaml")
    assert header.startswith(f"Draft config written by `ml-engine init` from {events_csv} on ")
    assert "Paths are relative to this file." in header
    text = (tmp_path / "project" / "config.yaml").read_text()
    assert "# label 'target' has 2 distinct values in the sample" in text


def test_csv_result_lists_paths_guesses_and_next_steps(events_csv, tmp_path):
    out = tmp_path / "project"
    result = scaffold(str(events_csv), str(out))
    assert result.written == (str(out / "schema.yaml"), str(out / "config.yaml"))
    assert (result.data_format, result.rows_sampled, result.warnings) == ("csv", 200, ())
    assert result.guesses[0] == ColumnGuess(
        name="id",
        type="int",
        roles=("record_id", "key"),
        format=None,
        nullable=False,
        reason=result.guesses[0].reason,
    )
    assert (
        f"  ml-engine run pipeline --config {out / 'config.yaml'}" in result.next_steps.splitlines()
    )
    assert (
        f"  ml-engine run ingest --config {out / 'config.yaml'}" in result.next_steps.splitlines()
    )


def test_sample_rows_limits_the_rows_read(events_csv, tmp_path):
    result = scaffold(str(events_csv), str(tmp_path / "p"), sample_rows=50)
    assert result.rows_sampled == 50
    assert "unique in the 50-row sample" in result.guesses[0].reason


# --------------------------------------------------------------------------- dataset (2): JSON


def test_json_lines_schema_separates_record_id_and_entity_key(visits_jsonl, tmp_path):
    result = scaffold(str(visits_jsonl), str(tmp_path / "conf"))
    assert columns_of(result.schema_path) == [
        ("id", "string", False, ("record_id",), None),
        ("store_id", "string", False, ("key",), None),
        ("ts", "timestamp", False, ("event_time",), "yyyy/MM/dd HH:mm:ss"),
        ("visits", "int", True, ("numeric_feature",), None),
        ("spend", "double", True, ("numeric_feature",), None),
        ("channel", "string", True, ("categorical_feature",), None),
        ("is_weekend", "boolean", True, ("categorical_feature",), None),
        ("note", "string", True, (), None),
        ("y", "double", True, ("label",), None),
    ]
    comments = [
        line.split("# guessed: ")[1] for line in column_lines(tmp_path / "conf" / "schema.yaml")
    ]
    assert comments[1] == (
        "text -> string; identifier-like name, repeats in the sample -> entity key; never empty "
        "-> not nullable"
    )
    assert (
        comments[5]
        == "text -> string; 3 distinct values in 120 non-empty rows -> categorical feature"
    )
    assert comments[7] == (
        "text -> string; 120 distinct values in 120 non-empty rows: free text or an identifier, "
        "left out of the features"
    )
    assert comments[8] == (
        "decimal numbers -> double; named 'y' -> label (120 distinct values in the sample: "
        "regression)"
    )


def test_json_lines_schema_marks_every_guess_with_a_comment(visits_jsonl, tmp_path):
    result = scaffold(str(visits_jsonl), str(tmp_path / "conf"))
    lines = column_lines(tmp_path / "conf" / "schema.yaml")
    assert [line.split("# guessed: ")[1] for line in lines] == [g.reason for g in result.guesses]
    assert header_of(tmp_path / "conf" / "schema.yaml").startswith(
        "Draft schema written by `ml-engine init` on "
    )


def test_json_lines_config(visits_jsonl, tmp_path):
    result = scaffold(str(visits_jsonl), str(tmp_path / "conf"))
    assert config_of(result) == {
        "inherits": "ml-engine:defaults",
        "schema": "schema.yaml",
        "storage": {"root": "work"},
        "ingest": {
            "path": "../raw/visits.jsonl",
            "format": "json",
            "timestamp_format": "yyyy/MM/dd HH:mm:ss",
        },
        "features": {
            "date_parts": {"ts": ["hour", "dayofweek"]},
            "windows": {
                "columns": ["visits", "spend"],
                "days": [7, 30],
                "aggs": ["count", "mean", "max"],
            },
        },
        "mlflow": {"experiment": "visits", "registered_model": "visits-model"},
        "train": {"task": "regression"},
    }
    assert result.warnings == ()


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_json_keys_and_parquet_columns_of_odd_names_are_renamed_and_read_by_input_name(
    tmp_path, fmt
):
    # a dot would make Spark look for a nested field; blanks, %, ( ) are named as CSV headers
    frame = pd.DataFrame(
        {
            "Reading ID": [f"R{i}" for i in range(60)],
            "Read At": [f"2026-09-{1 + i % 28:02d} 10:00:00" for i in range(60)],
            "reading.temp": [20 + i * 0.25 for i in range(60)],
            "humidity-%": [30 + i % 7 for i in range(60)],
            "Power Load kW": [100 + i * 1.5 for i in range(60)],
        }
    )
    data = tmp_path / "raw" / f"r.{fmt}"
    data.parent.mkdir()
    if fmt == "json":
        frame.to_json(data, orient="records", lines=True)
    else:
        frame.to_parquet(data)
    result = scaffold(str(data), str(tmp_path / "o"), label="Power Load kW")
    schema = load_schema(result.schema_path)
    assert [(c.name, c.input_name, c.roles) for c in schema.columns] == [
        ("Reading_ID", "Reading ID", ("record_id", "key")),
        ("Read_At", "Read At", ("event_time",)),
        ("reading_temp", "reading.temp", ("numeric_feature",)),
        ("humidity", "humidity-%", ("numeric_feature",)),
        ("Power_Load_kW", "Power Load kW", ("label",)),
    ]
    field = {"json": "key", "parquet": "column"}[fmt]
    assert result.guesses[2].reason.endswith(
        f"; {field} 'reading.temp' renamed, read by its input_name"
    )
    assert config_of(result)["features"]["date_parts"] == {"Read_At": ["hour", "dayofweek"]}
    assert result.warnings == ()
    # the written config checks the input's timestamps through the input name
    from ml_engine.preflight import input_problems

    assert input_problems(load_config(result.config_path)) == []
    frame["Read At"] = "28/09/2026 10:00"
    frame.to_json(data, orient="records", lines=True) if fmt == "json" else frame.to_parquet(data)
    assert [p.split(" (first:")[0] for p in input_problems(load_config(result.config_path))] == [
        f"the schema's format of column Read_At in {result.schema_path}: 'yyyy-MM-dd HH:mm:ss' "
        f"matches none of the first 20 values of column 'Read_At' in {data}"
    ]


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_fields_of_nested_objects_and_structs_are_columns_read_by_their_path(tmp_path, fmt):
    # 60 events: a nested user (null in one row) with a nested address, a cart, a list of
    # tags (text), and "meta", an object in some rows and text in others (text, whole)
    records = [
        {
            "event_id": f"e{i:03d}",
            "ctx": {"at": f"2026-09-{1 + i % 28:02d} 10:00:00"},
            "user": None if i == 7 else {"id": f"u{i % 9}", "age": 20 + i % 50,
                                         "address": {"country": ["DE", "FR"][i % 2]}},
            "cart": {"total": 10 + i * 0.5},
            "tags": ["a"] * (i % 3),
            "meta": {"v": i} if i % 2 else "none",
            "bought": i % 3 == 0,
        }
        for i in range(60)
    ]  # fmt: skip
    data = tmp_path / "raw" / f"e.{fmt}"
    data.parent.mkdir()
    if fmt == "json":
        data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    else:
        for r in records:
            r["meta"] = str(r["meta"])  # a Parquet column has one type
        pd.DataFrame(records).to_parquet(data)
    result = scaffold(str(data), str(tmp_path / "o"), label="bought")
    schema = load_schema(result.schema_path)
    assert [(c.name, c.input_name, c.type) for c in schema.columns] == [
        ("event_id", None, "string"),
        ("ctx_at", ("ctx", "at"), "timestamp"),
        ("user_id", ("user", "id"), "string"),
        ("user_age", ("user", "age"), "int" if fmt == "json" else "long"),
        ("user_address_country", ("user", "address", "country"), "string"),
        ("cart_total", ("cart", "total"), "double"),
        ("tags", None, "string"),
        ("meta", None, "string"),
        ("bought", None, "boolean"),
    ]
    assert result.guesses[4].reason.endswith(
        "; field 'country' of object 'address' in 'user', read by its input_name"
    )
    assert (schema.key, schema.event_time) == ("user_id", "ctx_at")
    # the input's check reads a nested time of JSON by its path too
    from ml_engine.preflight import input_problems

    assert input_problems(load_config(result.config_path)) == []
    if fmt == "json":
        for r in records:
            r["ctx"]["at"] = "28/09/2026 10:00"
        data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
        assert [
            p.split(" (first:")[0] for p in input_problems(load_config(result.config_path))
        ] == [
            f"the schema's format of column ctx_at in {result.schema_path}: 'yyyy-MM-dd "
            f"HH:mm:ss' matches none of the first 20 values of column 'ctx_at' in {data}"
        ]


def test_features_are_drafted_from_the_event_time_and_the_entity_key(tmp_path):
    n = 60
    frame = pd.DataFrame(
        {
            "rec": [f"r{i:03d}" for i in range(n)],
            "account": [f"A{i % 6:02d}" for i in range(n)],
            "day": [f"2026-03-{1 + i % 28:02d}" for i in range(n)],
            # numbers but one word: text in the schema, a double in silver (clean.coerce)
            "fee": ["oops" if i == 7 else f"{i * 1.25:.2f}" for i in range(n)],
            "a": np.arange(n),
            "b": np.arange(n) * 0.5,
            "note": [f"free text number {i} here" for i in range(n)],
            "c": np.arange(n) % 7,
            "d": np.arange(n) % 5 * 1.5,
            "label": np.arange(n) % 2,
        }
    )
    frame.to_csv(tmp_path / "days.csv", index=False)
    result = scaffold(str(tmp_path / "days.csv"), str(tmp_path / "p"))
    assert config_of(result)["clean"] == {"coerce": {"fee": "double"}}
    # a date has no hour; the first three numeric features (schema order) get the windows
    assert config_of(result)["features"] == {
        "date_parts": {"day": ["dayofweek"]},
        "windows": {
            "columns": ["fee", "a", "b"],
            "days": [7, 30],
            "aggs": ["count", "mean", "max"],
        },
    }
    text = (tmp_path / "p" / "config.yaml").read_text()
    assert "# per account (the entity key): its rows in the days up to each row's day" in text
    assert "# 18 columns, fee_count_7d to b_max_30d" in text
    cfg = load_config(tmp_path / "p" / "config.yaml")  # the engine takes the draft as it is
    assert (cfg.features.windows.columns, cfg.features.date_parts) == (
        ["fee", "a", "b"],
        {"day": ["dayofweek"]},
    )
    # Without a date/time column the draft engineers nothing.
    frame.drop(columns=["day"]).to_csv(tmp_path / "undated.csv", index=False)
    undated = scaffold(str(tmp_path / "undated.csv"), str(tmp_path / "q"))
    assert "features" not in config_of(undated)


def test_parquet_directory_keeps_the_files_types(tmp_path):
    frame = visits_frame()
    frame["ts"] = pd.to_datetime(frame["ts"], format="%Y/%m/%d %H:%M:%S")
    folder = tmp_path / "lake" / "Store Visits"
    folder.mkdir(parents=True)
    frame.iloc[:60].to_parquet(folder / "part-0.parquet", index=False)
    frame.iloc[60:].to_parquet(folder / "part-1.parquet", index=False)
    (folder / "_SUCCESS").write_text("")
    result = scaffold(str(folder), str(tmp_path / "lake" / "conf"))
    assert columns_of(result.schema_path) == [
        ("id", "string", False, ("record_id",), None),
        ("store_id", "string", False, ("key",), None),
        ("ts", "timestamp", False, ("event_time",), None),
        ("visits", "long", True, ("numeric_feature",), None),
        ("spend", "double", True, ("numeric_feature",), None),
        ("channel", "string", True, ("categorical_feature",), None),
        ("is_weekend", "boolean", True, ("categorical_feature",), None),
        ("note", "string", True, (), None),
        ("y", "double", True, ("label",), None),
    ]
    assert result.rows_sampled == 120
    assert config_of(result)["ingest"] == {"path": "../Store Visits", "format": "parquet"}
    assert config_of(result)["mlflow"]["experiment"] == "store_visits"


# --------------------------------------------------------------------------- formats and types


@pytest.mark.parametrize(
    "values, type_, fmt",
    [
        (["2024-01-02T03:04:05", "2024-12-31T23:59:59"], "timestamp", "yyyy-MM-dd'T'HH:mm:ss"),
        (["2024-01-02 03:04:05", "2024-12-31 23:59:59"], "timestamp", "yyyy-MM-dd HH:mm:ss"),
        (
            ["2024-01-02T03:04:05", "2024-01-02T03:04:05.25"],
            "timestamp",
            "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS]",
        ),
        (
            ["2024-01-02 03:04:05.123456789", "2024-01-02 03:04:06"],
            "timestamp",
            "yyyy-MM-dd HH:mm:ss[.SSSSSSSSS]",
        ),
        (
            ["2024-01-02T03:04:05Z", "2024-01-02T03:04:05.5+02:00"],
            "timestamp",
            "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS]XXX",
        ),
        (
            ["2024-01-02T03:04:05+0200", "2024-01-02T03:04:05Z"],
            "timestamp",
            "yyyy-MM-dd'T'HH:mm:ssXX",
        ),
        (["2024-01-02 03:04", "2024-01-03 13:14"], "timestamp", "yyyy-MM-dd HH:mm"),
        (["2024/01/02 03:04:05", "2024/11/30 23:00:00"], "timestamp", "yyyy/MM/dd HH:mm:ss"),
        (["25/01/2024 03:04", "05/12/2024 13:04"], "timestamp", "dd/MM/yyyy HH:mm"),
        (["25/1/2024 3:04:05", "5/12/2024 13:04:05"], "timestamp", "d/M/yyyy H:mm:ss"),
        (["01/25/2024 03:04:05", "12/05/2024 13:04:05"], "timestamp", "MM/dd/yyyy HH:mm:ss"),
        (["2024-01-02", "2024-02-29"], "date", "yyyy-MM-dd"),
        (["2024/01/02", "2024/02/29"], "date", "yyyy/MM/dd"),
        (["31/01/2024", "01/02/2024"], "date", "dd/MM/yyyy"),
        (["31.01.2024", "01.02.2024"], "date", "dd.MM.yyyy"),
        (["31-01-2024", "1-2-2024"], "date", "d-M-yyyy"),
        (["25.01.2024 03:04", "5.12.2024 13:04"], "timestamp", "d.M.yyyy H:mm"),
        (["31.01.2024", "01/02/2024"], "string", None),
        (["01/25/2024 03:04 PM", "12/05/2024 11:04 am"], "timestamp", "MM/dd/yyyy hh:mm a"),
        (["1/25/2024 3:04:05 PM", "12/5/2024 12:00:00 AM"], "timestamp", "M/d/yyyy h:mm:ss a"),
        (["2024-01-25 3:04PM", "2024-12-05 11:04PM"], "timestamp", "yyyy-MM-dd h:mma"),
        (["01/25/2024 13:04 PM"], "string", None),  # no 13 o'clock on a 12-hour clock
        (["2024-02-30", "2024-01-01"], "string", None),
        (["2024-01-02 03:04:05", "2024-01-02T03:04:05"], "string", None),
        (["2024-01-02", "2024-01-02 03:04:05"], "string", None),
        (["2024-1-2 03:04:05", "2024-01-02 03:04:05"], "string", None),
    ],
)
def test_datetime_text_formats_are_detected(tmp_path, values, type_, fmt):
    rows = "\n".join(f"{i},{v}" for i, v in enumerate(values))
    data = write(tmp_path / "t.csv", f"id,when\n{rows}\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    when = load_schema(result.schema_path).column("when")
    assert (when.type, when.format) == (type_, fmt)


@pytest.mark.parametrize(
    ("name", "values", "type_", "fmt"),
    [
        ("ts", [1759300000 + 3600 * i for i in range(60)], "timestamp", "epoch_seconds"),
        ("createdAt", [1759300000123 + i for i in range(60)], "timestamp", "epoch_millis"),
        ("sent_at", [1759300000 + i for i in range(59)] + [1759300000123], "long", None),  # mixed
        ("amount", [1759300000 + i for i in range(60)], "int", None),  # not named like a time
        ("ts", [100 + i for i in range(60)], "int", None),  # 1970: a counter, not a time
        ("posting_date", [20261001 + i % 28 for i in range(60)], "date", "yyyyMMdd"),
        ("posting_date", [20261001 + i for i in range(60)], "int", None),  # 20261032: no date
        ("doc_no", [20261001 + i % 28 for i in range(60)], "int", None),  # not named like one
    ],
)
@pytest.mark.parametrize("fmt_in", ["csv", "json"])
def test_whole_numbers_named_like_a_time_are_epoch_timestamps(
    tmp_path, fmt_in, name, values, type_, fmt
):
    frame = pd.DataFrame({"id": [f"r{i}" for i in range(60)], name: values, "x": range(60)})
    data = tmp_path / f"t.{fmt_in}"
    if fmt_in == "csv":
        frame.to_csv(data, index=False)
    else:
        frame.to_json(data, orient="records", lines=True)
    result = scaffold(str(data), str(tmp_path / "o"))
    column = load_schema(result.schema_path).column(name)
    assert (column.type, column.format) == (type_, fmt)
    if fmt == "epoch_seconds":
        assert result.guesses[1].reason.startswith(
            "whole numbers named like a time, e.g. 1759300000 = 2025-10-01 06:26:40 UTC -> "
            "timestamp, format epoch_seconds"
        )
        from ml_engine.preflight import input_problems

        cfg = load_config(result.config_path)
        assert (cfg.ingest.timestamp_format, input_problems(cfg)) == ("epoch_seconds", [])
        if fmt_in == "csv":  # a text time where seconds are expected
            frame[name] = "2026-01-01 10:00:00"
            frame.to_csv(data, index=False)
            assert [p.split(" (first")[0] for p in input_problems(cfg)] == [
                f"the schema's format of column ts in {result.schema_path}: 'epoch_seconds' "
                f"matches none of the first 20 values of column 'ts' in {data}"
            ]


def test_numbers_with_a_decimal_comma_are_numbers_read_with_ingest_csv_decimal(tmp_path):
    # 100 rows of a ';' export: amounts with points grouping thousands, a share, counts, a
    # date with points (not a number), and one "n/a" amount (1 in 50 tolerated)
    amounts = [f"{i * 37 + 0.5:_.2f}".replace(".", ",").replace("_", ".") for i in range(100)]
    amounts[7] = "n/a"
    lines = [
        f"B{i:04d};{amounts[i]};{i % 3 * 2.5:.1f};{i % 9};{1 + i % 28:02d}.10.2026".replace(
            ".0;", ",0;"
        ).replace(".5;", ",5;")
        for i in range(100)
    ]
    data = write(tmp_path / "t.csv", "doc;amount;share;n;day\n" + "\n".join(lines) + "\n")
    assert lines[30] == "B0030;1.110,50;0,0;3;03.10.2026"
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    assert [(c.name, c.type, c.format) for c in schema.columns] == [
        ("doc", "string", None),
        ("amount", "string", None),  # cast by clean.coerce for its n/a
        ("share", "double", None),
        ("n", "int", None),
        ("day", "date", "dd.MM.yyyy"),
    ]
    cfg = config_of(result)
    assert cfg["ingest"]["csv"] == {"delimiter": ";", "decimal": ","}
    assert cfg["clean"]["coerce"] == {"amount": "double"}
    text = (tmp_path / "out" / "config.yaml").read_text()
    assert "decimal comma, detected in column 'amount' (e.g. 0,50)" in text
    # a column of numbers with a point beside one with a comma: no setting, a warning
    lines = [f"{i};{i},5;{i}.25" for i in range(60)]
    data = write(tmp_path / "m.csv", "id;a;b\n" + "\n".join(lines) + "\n")
    result = scaffold(str(data), str(tmp_path / "out2"))
    assert (
        "csv" not in config_of(result)["ingest"]
        or "decimal" not in (config_of(result)["ingest"]["csv"])
    )
    assert [w for w in result.warnings if "decimal" in w] == [
        "column 'a' writes numbers with a decimal comma ('0,5'), column 'b' with a point "
        "('0.25'): ingest reads one decimal separator (ingest.csv.decimal), so the other "
        "column's values will not parse"
    ]


def test_currency_amounts_and_grouped_thousands_are_numbers_read_with_ingest_csv_thousands(
    tmp_path,
):
    # 100 rows of a US export: dollar amounts with commas grouping thousands (quoted), a
    # percentage, counts grouped by commas ("1,037": ambiguous alone, grouping beside a
    # column with decimal points), plain prices, and one "refund" amount (1 in 50 tolerated)
    totals = [f'"${i * 37.25 + 0.5:,.2f}"' for i in range(100)]
    totals[9] = "refund"
    lines = [f'{i},{totals[i]},{i % 4 * 2.5}%,"{1000 + i * 37:,}",{i + 0.25}' for i in range(100)]
    data = write(tmp_path / "t.csv", "id,total,share,qty,price\n" + "\n".join(lines) + "\n")
    assert lines[30] == '30,"$1,118.00",5.0%,"2,110",30.25'
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    assert [(c.name, c.type) for c in schema.columns] == [
        ("id", "int"),
        ("total", "string"),  # cast by clean.coerce for its "refund"
        ("share", "double"),
        ("qty", "int"),
        ("price", "double"),
    ]
    cfg = config_of(result)
    assert cfg["ingest"]["csv"] == {"strip_signs": True, "thousands": ","}
    assert cfg["clean"]["coerce"] == {"total": "double"}
    text = (tmp_path / "out" / "config.yaml").read_text()
    assert "commas group thousands, detected in column 'total' (e.g. $1,006.25)" in text
    reasons = {g.name: g.reason for g in result.guesses}
    assert reasons["share"].startswith("decimal numbers, written like '0.0%' -> double")
    assert reasons["qty"].startswith("whole numbers that fit int, written like '1,000' -> int")
    assert reasons["total"].startswith(
        "numbers written like '$0.50' but 1 of 100 values (e.g. 'refund') -> string"
    )
    assert not [w for w in result.warnings if "decimal" in w]
    # --label takes the header as written, before init renames it
    data = write(tmp_path / "l.csv", "id,Order Total,Is Late\n" + "\n".join(
        f"{i},{i * 3.5},{'yes' if i % 3 else 'no'}" for i in range(60)) + "\n")  # fmt: skip
    result = scaffold(str(data), str(tmp_path / "out2"), label="Order Total")
    assert [(c.name, c.roles) for c in load_schema(result.schema_path).columns][1] == (
        "Order_Total",
        ("label",),
    )


@pytest.mark.parametrize(
    "separators, amount, csv",
    [
        # a French export: ';' between fields, a narrow no-break space grouping, euros
        (
            ";",
            "{:,.2f} €",
            {"delimiter": ";", "decimal": ",", "strip_signs": True, "thousands": " "},
        ),
        # a Swiss one: apostrophes grouping, a decimal point
        (",", "CHF {:,.2f}", {"strip_signs": True, "thousands": "'"}),
    ],
)
def test_thousands_grouped_by_blanks_or_apostrophes_are_numbers(tmp_path, separators, amount, csv):
    group, point = ("\u202f", ",") if separators == ";" else ("'", ".")
    amounts = [
        amount.format(i * 123.25 + 0.5).replace(",", "G").replace(".", point).replace("G", group)
        for i in range(60)
    ]
    rows = [f"{i}{separators}{amounts[i]}" for i in range(60)]
    data = write(tmp_path / "t.csv", f"id{separators}amount\n" + "\n".join(rows) + "\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    assert [(c.name, c.type) for c in load_schema(result.schema_path).columns] == [
        ("id", "int"),
        ("amount", "double"),
    ]
    assert config_of(result)["ingest"]["csv"] == csv
    assert result.guesses[1].reason.startswith(
        f"decimal numbers, written like '{amounts[0]}' -> double"
    )


def test_ambiguous_day_month_order_assumes_day_first_and_warns(tmp_path):
    data = write(tmp_path / "t.csv", "id,when\n1,01/02/2024\n2,03/04/2024\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    assert load_schema(result.schema_path).column("when").format == "dd/MM/yyyy"
    note = (
        "day/month order not decided by the sample (no day above 12): day first assumed, check it"
    )
    assert f"column 'when': {note}" in result.warnings
    assert result.guesses[1].reason.endswith(note)


@pytest.mark.parametrize(
    "values, type_",
    [
        (["1", "-2", "2147483647"], "int"),
        (["1", "2147483648"], "long"),
        (["1", "99999999999999999999"], "string"),
        (["007", "12"], "string"),
        (["1.5", "2", "1e-3", "NaN"], "double"),
        (["true", "False"], "boolean"),
        (["a", "b"], "string"),
    ],
)
def test_text_types(tmp_path, values, type_):
    rows = "\n".join(f"{i},{v}" for i, v in enumerate(values))
    data = write(tmp_path / "t.csv", f"id,x\n{rows}\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    assert load_schema(result.schema_path).column("x").type == type_


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_delimiter_is_detected_from_the_header(tmp_path, delimiter):
    text = "id|x|note\n1|2.5|a,b\n2|3.5|c\n".replace("|", delimiter)
    data = write(tmp_path / "t.csv", text)
    result = scaffold(str(data), str(tmp_path / "out"))
    assert config_of(result)["ingest"]["csv"] == {"delimiter": delimiter}
    assert [(c.name, c.type) for c in load_schema(result.schema_path).columns] == [
        ("id", "int"),
        ("x", "double"),
        ("note", "string"),
    ]


def test_gzip_csv_latin1_and_odd_header_names(tmp_path):
    data = tmp_path / "Sales 2024.csv.gz"
    text = "Order Date,,price,price\n2024-01-02,café,1.5,2\n2024-01-03,thé,2.5,3\n"
    with gzip.open(data, "wb") as f:
        f.write(text.encode("iso-8859-1"))
    result = scaffold(str(data), str(tmp_path / "out"))
    assert [(c.name, c.type) for c in load_schema(result.schema_path).columns] == [
        ("Order_Date", "date"),
        ("column_2", "string"),
        ("price", "double"),
        ("price_4", "int"),
    ]
    assert result.guesses[0].reason.endswith("header 'Order Date' renamed")
    data_cfg = config_of(result)
    assert data_cfg["ingest"] == {
        "path": "../Sales 2024.csv.gz",
        "format": "csv",
        "csv": {"encoding": "iso-8859-1"},
        "date_format": "yyyy-MM-dd",
    }
    assert data_cfg["mlflow"]["experiment"] == "sales_2024"


# --------------------------------------------------------------------------- roles


def test_unique_text_column_without_an_id_name_is_the_record_id(tmp_path):
    data = write(
        tmp_path / "t.csv",
        "amount,email,at\n1.5,a@x.io,2024-01-01 10:00:00\n2.5,b@x.io,2024-01-02 10:00:00\n"
        "3.5,c@x.io,2024-01-03 10:00:00\n",
    )
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    assert (schema.record_id, schema.key, schema.event_time) == ("email", "email", "at")
    assert result.guesses[1].reason.startswith(
        "text -> string; unique identifier-shaped values in the 3-row sample -> record id and "
        "entity key"
    )


def _tickets_csv(path, with_customer):
    """200 tickets: a unique ref, free text, a zip code, holder codes (H0000..H0059), customer
    names (60, each on several tickets), a region category, an amount and a time."""
    header = "ref,comment,zip,holder," + ("customer," if with_customer else "") + "region,amount,at"
    lines = [header]
    for i in range(200):
        customer = f"shop-{'abcdefghij'[i % 10]}{i % 60 // 10}," if with_customer else ""
        lines.append(
            f"TCK-{i:04d},printer {i} is broken,{2100 + i % 70:05d},H{i % 60:04d},{customer}"
            f"{'nesw'[i % 4]},{i * 1.5},2024-01-01 {i % 24:02d}:{i % 60:02d}:00"
        )
    return write(path, "\n".join(lines) + "\n")


def _tickets_guesses(tmp_path, with_customer):
    """The written schema and each column's guess reason for :func:`_tickets_csv`."""
    result = scaffold(str(_tickets_csv(tmp_path / "t.csv", with_customer)), str(tmp_path / "o"))
    return load_schema(result.schema_path), {g.name: g.reason for g in result.guesses}


def test_an_entity_named_column_of_repeating_identifiers_is_the_entity_key(tmp_path):
    schema, reasons = _tickets_guesses(tmp_path, with_customer=True)
    assert (schema.record_id, schema.key) == ("ref", "customer")
    assert reasons["customer"] == (
        "text -> string; named like an entity, 60 distinct values repeating in 200 rows -> "
        "entity key; never empty -> not nullable"
    )
    assert reasons["ref"].endswith("unique identifier-shaped values in the 200-row sample -> "
                                   "record id; never empty -> not nullable")  # fmt: skip
    assert "left out of the features" in reasons["holder"]


def test_repeating_codes_are_the_entity_key_when_no_column_is_named_like_one(tmp_path):
    schema, reasons = _tickets_guesses(tmp_path, with_customer=False)
    # zip repeats too but has no letters; comment has blanks; region is a category
    assert (schema.record_id, schema.key) == ("ref", "holder")
    assert reasons["holder"] == (
        "text -> string; codes repeating in the sample (60 distinct in 200 rows) -> entity key; "
        "never empty -> not nullable"
    )
    roles = {c.name: c.roles for c in schema.columns}
    assert (roles["comment"], roles["zip"], roles["region"]) == ((), (), ("categorical_feature",))


def test_a_column_named_for_an_entity_with_few_values_is_the_key_and_stays_a_category(tmp_path):
    # 200 readings of 12 meters; merchant_category has fewer values and ends in no entity word
    lines = ["reading_uid,merchant_category,meter,kwh,read_at"]
    for i in range(200):
        lines.append(f"r{i:04d},cat{i % 5},M{i % 12:03d},{i * 0.5},2024-01-01 {i % 24:02d}:00:00")
    result = scaffold(str(write(tmp_path / "m.csv", "\n".join(lines) + "\n")), str(tmp_path / "o"))
    schema = load_schema(result.schema_path)
    roles = {c.name: c.roles for c in schema.columns}
    assert (schema.record_id, schema.key) == ("reading_uid", "meter")
    assert (roles["meter"], roles["merchant_category"]) == (
        ("key", "categorical_feature"),
        ("categorical_feature",),
    )
    assert {g.name: g.reason for g in result.guesses}["meter"] == (
        "text -> string; named like an entity, 12 distinct values repeating in 200 rows -> "
        "entity key and categorical feature; never empty -> not nullable"
    )


@pytest.mark.parametrize(
    ("record", "key", "named"),
    [
        ("Reading ID", "Sensor ID", ("Reading_ID", "Sensor_ID")),
        ("readingId", "sensorId", ("readingId", "sensorId")),
        ("ReadingID", "SensorID", ("ReadingID", "SensorID")),
        ("reading.id", "sensor.id", ("reading_id", "sensor_id")),
        ("reading-id", "sensor-id", ("reading_id", "sensor_id")),
    ],
)
def test_identifier_names_with_blanks_dots_or_capitals_are_the_record_id_and_key(
    tmp_path, record, key, named
):
    # 200 readings of 40 sensors: the sensor id repeats and is the key (not a category, and
    # not the record id as the only identifier-named column would otherwise make it)
    rows = [
        {record: f"R{i}", key: f"S-{i % 40:03d}", "temp": i * 0.5, "zone": "nsw"[i % 3]}
        for i in range(200)
    ]
    data = write(tmp_path / "r.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    result = scaffold(str(data), str(tmp_path / "o"))
    schema = load_schema(result.schema_path)
    roles = {c.name: c.roles for c in schema.columns}
    assert (schema.record_id, schema.key) == named  # as a CSV header is named
    assert (roles[named[0]], roles[named[1]]) == (("record_id",), ("key",))
    assert {g.name: g.reason for g in result.guesses}[named[1]].startswith(
        "text -> string; identifier-like name, repeats in the sample -> entity key; never empty "
        "-> not nullable"
    )


def test_without_a_record_id_dedup_is_exact(tmp_path):
    data = write(
        tmp_path / "t.csv",
        "customer_id,amount,created_at\nc1,1.5,2024-01-01 10:00:00\nc1,2.5,2024-01-02 10:00:00\n"
        "c2,3.5,2024-01-03 10:00:00\n",
    )
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    assert (schema.record_id, schema.key, schema.event_time) == (None, "customer_id", "created_at")
    assert config_of(result)["clean"] == {"dedup": "exact"}
    assert (
        "no record id was found: config.yaml sets clean.dedup to exact (drop rows equal in every "
        "column) instead of keeping the latest row per record id." in result.warnings
    )


@pytest.mark.parametrize(
    "flag",
    ["is_fraud", "failure", "Converted", "cancelled", "Attrition_Flag", "survived", "Returned"],
)
def test_a_flag_of_the_predicted_event_is_the_label_when_no_column_has_a_label_name(tmp_path, flag):
    rows = "\n".join(f"{i},{i % 2},{i % 3 == 0},{i * 1.5}" for i in range(1, 11))
    data = write(tmp_path / "t.csv", f"id,{flag},is_weekend,amount\n{rows}\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    assert schema.label == flag
    assert schema.column("is_weekend").roles == ("categorical_feature",)
    assert config_of(result)["train"] == {"task": "classification"}


def test_data_without_numeric_columns_gets_no_outlier_detection(tmp_path):
    rows = "\n".join(
        f"t{i},{('web', 'app')[i % 2]},{('low', 'high')[i % 3 > 0]}" for i in range(60)
    )
    data = write(tmp_path / "t.csv", f"ticket_id,channel,priority\n{rows}\n")
    result = scaffold(str(data), str(tmp_path / "out"), label="priority")
    assert config_of(result)["outliers"] == {"detectors": []}
    assert load_config(result.config_path).outliers.detectors == []
    assert (
        "no numeric feature was found: config.yaml sets outliers.detectors: [] (no outlier "
        "detection); give numeric columns `role: numeric_feature` in schema.yaml and remove that "
        "line to check them." in result.warnings
    )


def test_label_given_by_name_is_the_label_and_its_values_set_the_task(tmp_path):
    rows = "\n".join(f"T{i},{i * 1.5},{('low', 'normal', 'high')[i % 3]}" for i in range(1, 13))
    data = write(tmp_path / "t.csv", f"ticket,words,priority\n{rows}\n")
    result = scaffold(str(data), str(tmp_path / "out"), label="priority")
    schema = load_schema(result.schema_path)
    assert schema.label == "priority"
    assert schema.column("priority").roles == ("label",)
    assert schema.column("words").roles == ("numeric_feature",)
    assert config_of(result)["train"] == {"task": "classification"}
    assert "given with --label -> label (3 distinct values in the sample: classification)" in (
        (tmp_path / "out" / "schema.yaml").read_text()
    )
    # A float column given as the label is a regression target.
    result = scaffold(str(data), str(tmp_path / "out2"), label="words")
    assert load_schema(result.schema_path).label == "words"
    assert config_of(result)["train"] == {"task": "regression"}


@pytest.mark.parametrize(
    ("values", "positive"),
    [
        (["ja", "nein"], "ja"),  # "ja" is alphabetically first: set
        (["Ja", "Nein", "nein"], "ja"),  # spelled in both cases: lowered by clean.case
        (["oui", "non"], None),  # oui is last already
        (["no", "yes"], None),  # yes is last already
        (["0", "1"], None),
        (["fraud", "legit"], None),  # no word for yes: the default stays
        (["ja", "nein", "vielleicht"], None),  # three classes
    ],
)
def test_a_class_meaning_yes_is_the_positive_class(tmp_path, values, positive):
    rows = "".join(f"R{i},{i * 0.5},{values[i % len(values)]}\n" for i in range(60))
    data = write(tmp_path / "t.csv", "id,x,answer\n" + rows)
    result = scaffold(str(data), str(tmp_path / "o"), label="answer")
    train = config_of(result)["train"]
    assert train.get("positive_class") == positive
    if positive is not None:
        assert (
            f"'{positive}' means yes: precision, recall, F1 and the score output are about it "
            "(else about 'nein', the alphabetically last class)"
        ) in (tmp_path / "o" / "config.yaml").read_text()


def test_the_config_shows_a_gate_bound_of_its_tasks_metric_commented_out(events_csv, tmp_path):
    """No bound is set (the data decides what a good score is), but the line to set one is
    there, with the task's metric, and loads once uncommented."""
    from ml_engine.config import load_config

    rows = "\n".join(f"T{i},{i * 1.5},{('low', 'normal', 'high')[i % 3]}" for i in range(1, 13))
    tickets = write(tmp_path / "t.csv", f"ticket,words,priority\n{rows}\n")
    cases = {
        "binary": (scaffold(str(events_csv), str(tmp_path / "binary")), "auc_roc"),
        "multiclass": (scaffold(str(tickets), str(tmp_path / "multi"), label="priority"), "f1"),
        "regression": (scaffold(str(events_csv), str(tmp_path / "reg"), label="f00"), "r2"),
    }
    for name, (result, metric) in cases.items():
        path = Path(result.config_path)
        text = path.read_text()
        assert "gate_thresholds" not in config_of(result)["train"], name
        line = next(x for x in text.splitlines() if "gate_thresholds" in x)
        setting = line[: line.index("  # none set")].rstrip()
        assert setting == f"  # gate_thresholds: {{{metric}: 0.7}}", name
        assert line.endswith(
            "# none set: the first model trained becomes champion whatever it scores; set the "
            "least a model must reach"
        ), name
        path.write_text(text.replace("  # gate_thresholds", "  gate_thresholds"))
        assert load_config(str(path)).train.gate_thresholds == {metric: 0.7}, name


def test_a_few_dirty_values_do_not_hide_the_event_time_or_the_record_id(tmp_path):
    # 100 rows: 2 unparsable timestamps and one record sent twice (1 in 50 of each tolerated).
    lines = [f"r{i:03d},2026-03-{1 + i % 28:02d} 10:{i % 60:02d}:00,{i * 0.5}" for i in range(99)]
    lines[10] = "r010,2026-13-45 10:00:00,5.0"
    lines[20] = "r020,yesterday,10.0"
    lines.append(lines[30])
    data = write(tmp_path / "t.csv", "order_id,placed,amount\n" + "\n".join(lines) + "\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    assert (schema.record_id, schema.event_time) == ("order_id", "placed")
    assert schema.column("placed").format == "yyyy-MM-dd HH:mm:ss"
    text = (tmp_path / "out" / "schema.yaml").read_text()
    assert "(2 of 100 values do not match, e.g. '2026-13-45 10:00:00': ingest quarantines" in text
    assert "unique in the 100-row sample but for 1 repeated value(s) (records sent twice)" in text
    # Three bad timestamps in 100 are more than 1 in 50: the column stays text.
    lines[40] = "r040,2026/02/03 10:00:00,20.0"
    data = write(tmp_path / "u.csv", "order_id,placed,amount\n" + "\n".join(lines) + "\n")
    result = scaffold(str(data), str(tmp_path / "out2"))
    assert load_schema(result.schema_path).column("placed").type == "string"


def _deliveries_csv(path, rows, empty_refs=(), empty_couriers=(), couriers=80):
    """``rows`` deliveries: an order ref (ORD-000000, ...), a courier code repeating over
    deliveries (CR000..), a time, a distance and the minutes taken; the refs and couriers of
    the rows listed in ``empty_refs`` and ``empty_couriers`` are left empty."""
    lines = ["order_ref,courier,placed_at,distance_km,minutes"]
    for i in range(rows):
        ref = "" if i in empty_refs else f"ORD-{i:06d}"
        courier = "" if i in empty_couriers else f"CR{i % couriers:03d}"
        lines.append(
            f"{ref},{courier},2026-03-{1 + i % 28:02d} 10:{i % 60:02d}:00,{i % 97 * 0.1:.1f},"
            f"{10 + i % 53 * 0.5}"
        )
    return write(path, "\n".join(lines) + "\n")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_an_id_empty_in_one_sampled_row_is_still_the_record_id_and_not_nullable(tmp_path, fmt):
    # Rows without an id or entity are quarantined by ingest (not nullable), not left out.
    # 1000 rows: one without an order ref, three without a courier (1 in 50 tolerated).
    data = _deliveries_csv(tmp_path / "d.csv", 1000, empty_refs={417}, empty_couriers={5, 733, 901})
    if fmt == "parquet":
        (tmp_path / "lake").mkdir()
        frame = pd.read_csv(data, dtype={"order_ref": str, "courier": str, "placed_at": str})
        frame.to_parquet(tmp_path / "lake" / "part-0.parquet", index=False)
        data = tmp_path / "lake"
    result = scaffold(str(data), str(tmp_path / "out"), label="minutes")
    assert columns_of(result.schema_path)[:2] == [
        ("order_ref", "string", False, ("record_id",), None),
        ("courier", "string", False, ("key",), None),
    ]
    line, comment = column_lines(tmp_path / "out" / "schema.yaml")[0].split("  # guessed: ")
    assert (line.rstrip(), comment) == (
        "  - {name: order_ref, type: string, nullable: false, role: record_id}",
        "text -> string; unique identifier-shaped values in the 1000-row sample -> record id; "
        "1 of the 1000 sampled rows has no value -> not nullable: ingest will quarantine such "
        "rows",
    )
    assert result.guesses[1].reason == (
        "text -> string; codes repeating in the sample (80 distinct in 1000 rows) -> entity key; "
        "3 of the 1000 sampled rows have no value -> not nullable: ingest will quarantine such "
        "rows"
    )
    # No "no record id" or "no entity key" warning, and clean keeps the latest row per record.
    assert result.warnings == ()
    assert "clean" not in config_of(result)


@pytest.mark.parametrize(
    ("rows", "empty_refs", "reason"),
    [
        (10, {4}, "9 distinct values in 9 non-empty rows"),
        (1000, set(range(21)), "979 distinct values in 979 non-empty rows"),
    ],
    ids=["1-of-10-empty", "21-of-1000-empty"],
)
def test_an_id_empty_in_more_than_one_sampled_row_in_50_is_not_the_record_id(
    tmp_path, rows, empty_refs, reason
):
    data = _deliveries_csv(tmp_path / "d.csv", rows, empty_refs=empty_refs, couriers=3)
    result = scaffold(str(data), str(tmp_path / "out"), label="minutes")
    assert load_schema(result.schema_path).record_id is None
    assert result.guesses[0] == ColumnGuess(
        name="order_ref",
        type="string",
        roles=(),
        format=None,
        nullable=True,
        reason=f"text -> string; {reason}: free text or an identifier, left out of the features",
    )
    assert config_of(result)["clean"] == {"dedup": "exact"}


@pytest.mark.parametrize(("empty", "key"), [(20, "courier"), (21, "order_ref")])
def test_codes_empty_in_more_than_one_sampled_row_in_50_are_not_the_entity_key(
    tmp_path, empty, key
):
    data = _deliveries_csv(tmp_path / "d.csv", 1000, empty_couriers=set(range(empty)))
    result = scaffold(str(data), str(tmp_path / "out"), label="minutes")
    schema = load_schema(result.schema_path)
    assert (schema.record_id, schema.key) == ("order_ref", key)


def test_numbers_with_a_few_words_for_no_value_are_cast_by_clean(tmp_path):
    # 100 rows: 2 of x's and 2 of n's values are words meaning "no value" (1 in 50 tolerated).
    lines = [f"r{i:03d},{i * 0.25},{i % 7}" for i in range(100)]
    lines[3] = "r003,n/a,3"
    lines[50] = "r050,-,missing"
    lines[60] = "r060,15.0,?"
    data = write(tmp_path / "t.csv", "reading_id,x,n\n" + "\n".join(lines) + "\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    for c in ("x", "n"):
        assert (schema.column(c).type, schema.column(c).roles) == ("string", ("numeric_feature",))
    assert config_of(result)["clean"] == {"coerce": {"x": "double", "n": "int"}}
    text = (tmp_path / "out" / "schema.yaml").read_text()
    assert "numbers but 2 of 100 values (e.g. 'n/a') -> string, cast to double by clean.coerce" in (
        text
    )
    assert "numbers but 2 of 100 values (e.g. 'missing') -> string, cast to int" in text
    config = (tmp_path / "out" / "config.yaml").read_text()
    assert "2 of 100 sample values are not numbers, e.g. n/a" in config
    # Without an id-named column: unique numbers with a word for "no value" are a measure,
    # not the record id (an id has no missing values).
    rows = "\n".join(f"{i * 0.25},{'n/a' if i == 5 else i * 1.5},c{i % 3}" for i in range(100))
    data = write(tmp_path / "v.csv", "a,b,c\n" + rows + "\n")
    result = scaffold(str(data), str(tmp_path / "out3"))
    schema = load_schema(result.schema_path)
    assert (schema.record_id, schema.column("b").roles) == (None, ("numeric_feature",))
    assert config_of(result)["clean"] == {"dedup": "exact", "coerce": {"b": "double"}}
    # Three words in 100 are more than 1 in 50: x stays text, left out of the features.
    lines[70] = "r070,unknown,0"
    data = write(tmp_path / "u.csv", "reading_id,x,n\n" + "\n".join(lines) + "\n")
    result = scaffold(str(data), str(tmp_path / "out2"))
    schema = load_schema(result.schema_path)
    assert (schema.column("x").type, schema.column("x").roles) == ("string", ())
    assert config_of(result)["clean"] == {"coerce": {"n": "int"}}


@pytest.mark.parametrize(("missing", "coerced"), [(8, True), (51, False)])
def test_numbers_with_na_in_many_rows_are_cast_while_numbers_are_most(tmp_path, missing, coerced):
    # "NA" and "NULL" in `missing` of 100 rows: words for no value, however many, as long as
    # numbers are at least half of the values
    hours = [
        ("NA" if i % 2 else "NULL") if i < missing else f"{i * 0.5 + 0.25}" for i in range(100)
    ]
    data = write(
        tmp_path / "t.csv",
        "ticket,reply_hours\n" + "".join(f"T{i:03d},{h}\n" for i, h in enumerate(hours)),
    )
    result = scaffold(str(data), str(tmp_path / "out"))
    column = load_schema(result.schema_path).column("reply_hours")
    assert (column.type, column.roles) == ("string", ("numeric_feature",) if coerced else ())
    assert config_of(result).get("clean", {}).get("coerce") == (
        {"reply_hours": "double"} if coerced else None
    )


def test_categories_spelled_in_upper_and_lower_case_are_lowered_by_clean(tmp_path):
    regions = [" North", "north", "NORTH ", "south", "South", "east"]
    plans = ["basic", "pro"]  # one spelling each: left as they are
    answers = ["Yes", "no", "yes"]
    rows = [
        f"r{i:03d},{regions[i % 6]},{plans[i % 2]},{i * 0.5},{answers[i % 3]}" for i in range(60)
    ]
    data = write(tmp_path / "t.csv", "row_id,region,plan,x,answer\n" + "\n".join(rows) + "\n")
    result = scaffold(str(data), str(tmp_path / "out"), label="answer")
    assert config_of(result)["clean"] == {"case": {"region": "lower", "answer": "lower"}}
    config = (tmp_path / "out" / "config.yaml").read_text()
    assert "# 6 spellings of 3 values, e.g. NORTH, North" in config
    assert '# 3 spellings of 2 values, e.g. "Yes", "yes"' in config


def test_a_rare_class_gets_balanced_class_weights(tmp_path):
    def project(positives_in_10, out):
        rows = [f"r{i:03d},{i * 0.5},{int(i % 10 < positives_in_10)}" for i in range(100)]
        data = write(tmp_path / f"{out}.csv", "row_id,x,label\n" + "\n".join(rows) + "\n")
        return scaffold(str(data), str(tmp_path / out))

    rare = project(1, "rare")
    assert config_of(rare)["train"] == {"task": "classification", "class_weight": "balanced"}
    assert (
        "# the rarest class, 1, is 10 of 100 sampled labels (10.0%): weighted up so the "
        + ("model does not ignore it\n")
        in (tmp_path / "rare" / "config.yaml").read_text()
    )
    assert config_of(project(3, "common"))["train"] == {"task": "classification"}
    # one value in 100: weighted up, with a word on values that are typos
    rows = [
        f"r{i:03d},{i * 0.5},{'critical' if i == 7 else ['low', 'high'][i % 2]}" for i in range(100)
    ]
    data = write(tmp_path / "typo.csv", "row_id,x,label\n" + "\n".join(rows) + "\n")
    scaffold(str(data), str(tmp_path / "typo"))
    assert (
        "# the rarest class, critical, is 1 of 100 sampled labels (1.0%): weighted up so the "
        "model does not ignore it; if it is a typo, not a class, list the label's allowed values"
    ) in (tmp_path / "typo" / "config.yaml").read_text()


def test_parquet_nanosecond_timestamps_are_timestamps_without_a_warning(tmp_path):
    df = pd.DataFrame(
        {"id": ["a", "b", "c"], "at": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03"])}
    )
    (tmp_path / "d").mkdir()
    df.to_parquet(tmp_path / "d" / "x.parquet")  # pandas' default: nanoseconds
    result = scaffold(str(tmp_path / "d" / "x.parquet"), str(tmp_path / "out"))
    assert not [w for w in result.warnings if "nanosecond" in w]
    assert [(g.name, g.type) for g in result.guesses] == [("id", "string"), ("at", "timestamp")]


def test_a_label_that_is_not_a_column_is_refused_with_a_suggestion(tmp_path):
    data = write(tmp_path / "t.csv", "ticket,words,priority\nT1,2.5,low\nT2,3.5,high\n")
    with pytest.raises(ScaffoldError) as err:
        scaffold(str(data), str(tmp_path / "out"), label="priorty")
    assert str(err.value) == (
        f"--label 'priorty' is not a column of {data}; did you mean 'priority'? its columns: "
        "ticket, words, priority"
    )
    assert not (tmp_path / "out").exists()
    data = write(tmp_path / "r.csv", "ticket,region,priority_level\nT1,north,low\n")
    with pytest.raises(ScaffoldError) as err:  # a part of the name; difflib alone says region
        scaffold(str(data), str(tmp_path / "out"), label="prio")
    assert str(err.value) == (
        f"--label 'prio' is not a column of {data}; did you mean 'priority_level'? its columns: "
        "ticket, region, priority_level"
    )


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ("support/2026-11-01", "tickets"),  # a batch folder: the files' stem
        ("orders/2026-11-01.csv", "orders"),  # a dated file: its folder
        ("orders/2026-11-01", "orders"),  # a batch folder of files with other stems
        ("churn/churn_day1.csv", "churn"),  # a day number after the data's name
        ("sensors/raw/day1", "sensors"),  # a numbered day inside a folder of raw batches
        ("shop/reference", "shop"),  # a batch named for its place in the data's life
    ],
)
def test_a_batch_named_by_a_date_does_not_name_the_experiment(tmp_path, data, name):
    lines = "id,amount\na1,2.5\na2,3.5\n"
    if data.endswith(".csv"):
        write(tmp_path / data, lines)
    elif name == "tickets":
        write(tmp_path / data / "tickets.csv", lines)
    else:
        write(tmp_path / data / "part-0.csv", lines)
        write(tmp_path / data / "part-1.csv", lines)
    result = scaffold(str(tmp_path / data), str(tmp_path / "out"))
    assert config_of(result)["mlflow"] == {"experiment": name, "registered_model": f"{name}-model"}


def test_without_a_label_or_time_the_config_is_written_and_the_result_warns(tmp_path):
    data = write(tmp_path / "t.csv", "id,a,b\n1,2.5,x\n2,3.5,y\n3,4.5,x\n4,5.5,x\n5,1.0,y\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    assert (schema.label, schema.event_time) == (None, None)
    data_cfg = config_of(result)
    assert "train" not in data_cfg
    assert data_cfg["ingest"] == {"path": "../t.csv", "format": "csv"}
    assert result.warnings == (
        "no date/time column was found: the jobs take the time ingest loads a row "
        "(`ingested_at`) as its event time, so window aggregates count the rows that arrived in "
        "the window and each label is paired with its own row's features. If one of the columns "
        "holds when each row happened in a format not detected, give it `type: timestamp`, its "
        "`format` and `role: event_time` in schema.yaml.",
        "no label was recognised: build_training_set and train need the column to predict with "
        "role label; rerun init with --label COLUMN, or give it `role: label` in schema.yaml and "
        "set train.task (classification or regression) in config.yaml.",
    )
    assert (
        "No label was recognised (no column named label, target, y, class or outcome, nor a "
        "two-valued churn/fraud/failure/conversion/... or is_* flag): give the column to "
        "predict `role: label`."
    ) in header_of(tmp_path / "out" / "schema.yaml")


def test_columns_named_like_a_model_output_are_renamed(tmp_path):
    rows = "".join(f"{i},{i + 0.5},{'xy'[i % 2]},{i * 2},{i % 2}\n" for i in range(1, 7))
    data = write(tmp_path / "t.csv", "id,score,prediction, prediction_value ,outcome\n" + rows)
    result = scaffold(str(data), str(tmp_path / "out"))
    schema = load_schema(result.schema_path)
    assert list(schema.names) == [
        "id",
        "score_value",
        "prediction_value_3",
        "prediction_value",
        "outcome",
    ]
    why = (
        "is a name a model output takes, so the schema names it otherwise (the CSV files keep "
        "their header: ingest reads them by position)"
    )
    assert [w for w in result.warnings if "model output" in w] == [
        f"column 'score_value': the header's 'score' {why}",
        f"column 'prediction_value_3': the header's 'prediction' {why}",
    ]
    assert {g.name: g.reason.split("; ")[-1] for g in result.guesses if "renamed" in g.reason} == {
        "score_value": "header 'score' renamed",
        "prediction_value_3": "header 'prediction' renamed",
        "prediction_value": "header ' prediction_value ' renamed",
    }
    # a JSON key keeps its name in the data, the schema reading it as its input_name
    lines = write(tmp_path / "t.jsonl", '{"id": 1, "score": 2.5, "outcome": 0}\n' * 5)
    result = scaffold(str(lines), str(tmp_path / "json"))
    schema = load_schema(result.schema_path)
    assert [(c.name, c.input_name) for c in schema.columns] == [
        ("id", None),
        ("score_value", "score"),
        ("outcome", None),
    ]
    assert [w for w in result.warnings if "score" in w] == [
        "column 'score_value': the key 'score' is a name a model output takes, so the schema "
        "names it otherwise (the files keep it: ingest reads the key by its input_name)"
    ]


def test_csv_columns_named_like_a_class_probability_are_renamed_and_load(spark, tmp_path):
    from pyspark.sql import Row

    from ml_engine.config import load_config
    from ml_engine.jobs import run_job
    from ml_engine.tables import open_tables

    # label `mode` with classes a, b and c: the model's probability of class b is `score_b`;
    # `score_z` names no class and stays
    lines = [f"r{i},{i * 1.5},{i * 3},{'abc'[i % 3]}\n" for i in range(1, 10)]
    data = write(tmp_path / "raw" / "d1.csv", "rid,score_b,score_z,mode\n" + "".join(lines))
    result = scaffold(str(data), str(tmp_path / "out"), label="mode")
    assert list(load_schema(result.schema_path).names) == [
        "rid",
        "score_b_value",
        "score_z",
        "mode",
    ]
    assert [w for w in result.warnings if "probability" in w] == [
        "column 'score_b_value': the header's 'score_b' is the name the model's probability of "
        "class 'b' of label 'mode' takes, so the schema names it otherwise (the CSV files keep "
        "their header: ingest reads them by position)"
    ]

    def ingested(result, *columns):
        """Bronze's ``columns`` after ingest of the drafted config, ordered by the first."""
        store = tmp_path / "store" / Path(result.schema_path).parent.name
        cfg = load_config(str(result.config_path), [f"storage.root={store}"])
        run_job("ingest", spark, cfg, open_tables(spark, "rs"))
        bronze = open_tables(spark, "rs").read(cfg.storage.table_path("bronze"))
        return bronze.select(*columns).orderBy(columns[0]).collect()

    # ingest loads the file as it is, the values under the schema's name
    assert ingested(result, "rid", "score_b_value", "mode") == [
        Row(rid=f"r{i}", score_b_value=i * 1.5, mode="abc"[i % 3]) for i in range(1, 10)
    ]

    # a JSON key is read by its input_name; whole-number classes
    json_lines = "".join(
        json.dumps({"id": f"j{i}", "score_2": i / 2, "y": i % 3}) + "\n" for i in range(9)
    )
    data = write(tmp_path / "raw2" / "t.jsonl", json_lines)
    result = scaffold(str(data), str(tmp_path / "json"))
    assert [w for w in result.warnings if "probability" in w] == [
        "column 'score_2_value': the key 'score_2' is the name the model's probability of "
        "class '2' of label 'y' takes, so the schema names it otherwise (the files keep it: "
        "ingest reads the key by its input_name)"
    ]
    assert ingested(result, "id", "score_2_value", "y") == [
        Row(id=f"j{i}", score_2_value=i / 2, y=i % 3) for i in range(9)
    ]


# --------------------------------------------------------------------------- refusals and errors


def test_existing_files_are_not_overwritten_without_force(events_csv, tmp_path):
    out = tmp_path / "project"
    scaffold(str(events_csv), str(out))
    (out / "schema.yaml").write_text("# edited by hand\n")
    with pytest.raises(ScaffoldError) as err:
        scaffold(str(events_csv), str(out))
    assert str(err.value) == (
        f"{out / 'schema.yaml'} and {out / 'config.yaml'} already exist; pass --force to "
        f"overwrite, or choose another --out directory"
    )
    assert (out / "schema.yaml").read_text() == "# edited by hand\n"
    scaffold(str(events_csv), str(out), force=True)
    assert (out / "schema.yaml").read_text().startswith("# Draft schema")


def test_one_existing_file_is_named_alone(events_csv, tmp_path):
    out = tmp_path / "project"
    write(out / "config.yaml", "storage: {root: x}\n")
    with pytest.raises(ScaffoldError) as err:
        scaffold(str(events_csv), str(out))
    assert str(err.value) == (
        f"{out / 'config.yaml'} already exists; pass --force to overwrite, or choose another "
        f"--out directory"
    )
    assert not (out / "schema.yaml").exists()


KNOWN = (
    "CSV (.csv, .tsv, .csv.gz), JSON lines (.json, .jsonl, .ndjson, also .gz) and Parquet "
    "(.parquet)"
)


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda d: d / "nope.csv",
            "{p}: no such file or directory; give --data the path of a "
            + KNOWN.replace(") and Parquet", ") or Parquet")
            + " file or of a directory of them",
        ),
        (
            lambda d: write(d / "e.csv", ""),
            "{p}: empty: no header line; give --data a CSV file with a header line and rows",
        ),
        (
            lambda d: write(d / "h.csv", "a,b\n"),
            "{p}: empty: a header line but no data rows; types and roles are guessed from rows, "
            "so give --data a file with rows",
        ),
        (
            lambda d: write(d / "e.jsonl", "\n\n"),
            "{p}: empty: no JSON object found; give --data JSON lines (one object per line)",
        ),
        (
            lambda d: write(d / "t.xlsx", "x"),
            "{p}: cannot tell the format from the name 't.xlsx'; ml-engine reads " + KNOWN + ": "
            "rename the file to its format's extension or convert it",
        ),
        (
            lambda d: write(
                d / "s.csv",
                "Account statement\r\nGenerated: 2026-12-01, 08:00\r\n\r\nid,amount,day,note\r\n"
                + "".join(f"{i},{i}.5,2026-11-0{1 + i},x\r\n" for i in range(5)),
            ),
            "{p}: its header is line 4, below other content ('Account statement'; 'Generated: "
            "2026-12-01, 08:00'); ingest takes the first line of each file as its header: remove "
            "the lines above it, e.g. `tail -n +4 s.csv > s.data.csv` (and move the original out "
            "of the directory), then run init again",
        ),
        (
            lambda d: write(d / "a.json", '[{"a": 1}]\n'),
            "{p}: holds a JSON array; ingest reads JSON lines (one object per line): convert it, "
            "e.g. with `jq -c '.[]' a.json > a.jsonl`",
        ),
        (
            lambda d: (
                (write(d / "m" / "a.csv", "a\n1\n"), write(d / "m" / "b.jsonl", "{}\n"))[0].parent
            ),
            "{p}: the directory holds files of more than one format (csv: a.csv; json: b.jsonl); "
            "ingest reads every file of the directory as one format: move the other files out, or "
            "give --data one file",
        ),
        (
            lambda d: write(d / "n" / "_SUCCESS", "").parent,
            "{p}: the directory holds no data files; ml-engine reads " + KNOWN,
        ),
        (
            lambda d: write(d / "r" / "README.md", "x").parent,
            "{p}: the directory holds no data files ml-engine can read (found README.md); it reads "
            + KNOWN,
        ),
    ],
)
def test_unusable_data_is_refused_naming_the_path(tmp_path, make, message):
    path = make(tmp_path / "in")
    with pytest.raises(ScaffoldError) as err:
        scaffold(str(path), str(tmp_path / "out"))
    assert str(err.value) == message.format(p=path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "name, fmt, csv",
    [("sales.txt", "csv", {"delimiter": "|"}), ("part-00000", "csv", None),
     ("events.dat", "json", None), ("export", "parquet", None)],
)  # fmt: skip
def test_files_named_otherwise_are_read_by_their_content(tmp_path, name, fmt, csv):
    frame = pd.DataFrame({"id": range(60), "units": [i % 7 for i in range(60)]})
    data = tmp_path / "d" / name
    data.parent.mkdir()
    if fmt == "parquet":
        frame.to_parquet(data)
    elif fmt == "json":
        frame.to_json(data, orient="records", lines=True)
    else:
        frame.to_csv(data, index=False, sep=(csv or {}).get("delimiter", ","))
    result = scaffold(str(data.parent), str(tmp_path / "out"))
    written = config_of(result)["ingest"]
    assert (written["format"], written.get("csv")) == (fmt, csv)
    assert [(c.name, c.type) for c in load_schema(result.schema_path).columns] == [
        ("id", "long" if fmt == "parquet" else "int"),
        ("units", "long" if fmt == "parquet" else "int"),
    ]


def test_a_file_named_otherwise_with_quoted_delimiters_is_read_as_csv(tmp_path):
    # "a, b" in quotes is one field: the lines still split into as many fields each
    rows = "".join(f'{i},"{"a, b" if i % 3 else "c"}",{i % 7}\n' for i in range(60))
    data = write(tmp_path / "d" / "notes.txt", "id,note,units\n" + rows)
    result = scaffold(str(data), str(tmp_path / "out"))
    assert config_of(result)["ingest"]["format"] == "csv"
    assert [(c.name, c.type) for c in load_schema(result.schema_path).columns] == [
        ("id", "int"),
        ("note", "string"),
        ("units", "int"),
    ]


def test_csv_files_of_a_directory_must_share_their_header(tmp_path):
    write(tmp_path / "d" / "a.csv", "id,x\n1,2\n")
    write(tmp_path / "d" / "b.csv", "id,y\n3,4\n")
    with pytest.raises(ScaffoldError) as err:
        scaffold(str(tmp_path / "d"), str(tmp_path / "out"), sample_rows=10)
    assert str(err.value) == (
        f"{tmp_path / 'd' / 'b.csv'}: its header ['id', 'y'] (delimiter comma) differs from "
        f"{tmp_path / 'd' / 'a.csv'}'s ['id', 'x'] (comma); ingest takes CSV fields by position, "
        f"so every file needs the same columns: move the odd files out or give --data one file"
    )


def test_json_lines_that_are_not_objects_are_skipped_with_a_warning(tmp_path):
    rows = [json.dumps({"id": i, "x": i * 0.5}) for i in range(1, 5)]
    data = write(tmp_path / "t.ndjson", "\n".join([rows[0], "not json", *rows[1:], "[1]"]) + "\n")
    result = scaffold(str(data), str(tmp_path / "out"))
    assert result.rows_sampled == 4
    assert result.warnings[0] == (
        "2 line(s) of the sample are not JSON objects and were skipped (t.ndjson:2, t.ndjson:6); "
        "ingest will quarantine them"
    )


def test_data_far_from_the_config_is_named_by_its_absolute_path(events_csv, tmp_path):
    result = scaffold(str(events_csv), str(tmp_path / "a" / "b" / "project"))
    assert config_of(result)["ingest"]["path"] == str(events_csv)


def test_data_inside_the_output_directory_is_named_relative_to_it(tmp_path):
    data = write(tmp_path / "p" / "raw" / "t.csv", "id,x\n1,2.5\n2,3.5\n")
    result = scaffold(str(data), str(tmp_path / "p"))
    assert config_of(result)["ingest"]["path"] == "raw/t.csv"


def test_sample_rows_below_one_is_refused(events_csv, tmp_path):
    with pytest.raises(ScaffoldError) as err:
        scaffold(str(events_csv), str(tmp_path / "out"), sample_rows=0)
    assert str(err.value) == "sample_rows must be at least 1, got 0"
