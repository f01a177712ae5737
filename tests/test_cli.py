"""The command line: exit codes and one-line reasons, checked by running the real command."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from deltalake import write_deltalake

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, env=None, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "ml_engine.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_init_with_a_label_that_is_not_a_column_exits_2_in_one_line(tmp_path):
    data = tmp_path / "t.csv"
    data.write_text("ticket,words,priority\nT1,2.5,low\nT2,3.5,high\n")
    r = run_cli("init", "--data", str(data), "--out", str(tmp_path / "p"), "--label", "prio")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ml-engine: init: --label 'prio' is not a column of {data}; did you mean 'priority'? "
        "its columns: ticket, words, priority"
    ]


def test_unknown_job_exits_2_naming_the_jobs():
    r = run_cli("run", "bake", "--config", "conf/local.yaml")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "ml-engine: run bake: unknown job 'bake'; jobs: ingest, clean, detect_outliers, "
        "build_features, build_training_set, train, score, drift_report, vacuum"
    ]


@pytest.mark.parametrize("job", ["train", "drift_report"])
def test_job_script_behaves_like_ml_engine_run(job, tmp_path):
    args = ["--config", "conf/local.yaml", "--set", f"storage.root={tmp_path}"]
    script = subprocess.run(
        [sys.executable, f"jobs/{job}.py", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    cli = run_cli("run", job, *args)
    assert (script.returncode, script.stderr) == (cli.returncode, cli.stderr)
    assert script.returncode == 2
    table = {"train": "training_set", "drift_report": "predictions"}[job]
    assert f"{job}: its input table {table} does not exist at {tmp_path}/tables/{table}" in (
        script.stderr
    )
    if job == "drift_report":  # its model is looked up too, in a store no run has made yet
        assert script.stderr.strip().splitlines()[-1] == (
            f"ml-engine: run drift_report: no registered model 'transactions-fraud' in "
            f"sqlite:///{tmp_path}/mlflow.db (mlflow.registered_model); run the train job first"
        )
    assert list(tmp_path.iterdir()) == []  # a refused job makes nothing, not even the store


def test_jobs_lists_every_job_with_what_it_reads_and_writes():
    r = run_cli("jobs")
    assert r.returncode == 0
    assert r.stdout.splitlines() == [
        "ingest               reads raw files (ingest.path); writes bronze, quarantine",
        "clean                reads bronze; writes silver, quarantine, dq_metrics, fill_values",
        "detect_outliers      reads silver; writes the fitted detector, outlier_stats, "
        "quarantine (policy drop)",
        "build_features       reads silver, the fitted detector; writes features (with each "
        "row's outlier flags)",
        "build_training_set   reads features, labels (silver by default); writes training_set",
        "train                reads training_set; writes an MLflow run, a registered model "
        "version, the gate's aliases",
        "score                reads features of the batch, the model (score.model_alias); "
        "writes predictions",
        "drift_report         reads features, predictions of the batch; writes drift_metrics, "
        "an HTML report, an MLflow run",
        "vacuum               reads every table's log, the run log, the registered models' "
        "inputs; writes no rows; merges each batch's small files (vacuum.compact), deletes the "
        "files of replaced rows older than vacuum.retain_hours",
    ]


def test_config_errors_are_one_line_each_with_source_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherits: ml-engine:sample\nstorage: {root: store}\nclean: {dedupe: exact}\n")
    r = run_cli("run", "clean", "--config", str(bad), "--set", "sample_data.rows=many")
    assert r.returncode == 2
    assert sorted(r.stderr.strip().splitlines()) == [
        "ml-engine: run clean: config error: --set sample_data.rows: expected a whole number, "
        "got 'many'",
        f"ml-engine: run clean: config error: {bad}: clean.dedupe: unknown key 'dedupe'; "
        "did you mean 'dedup'?",
    ]


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_is_accepted_before_or_after_the_job_name(tmp_path, where):
    bad = tmp_path / "bad.yaml"
    bad.write_text("inherits: ml-engine:sample\nstorage: {root: store}\nclean: {dedupe: exact}\n")
    args = ["run", "clean", "--config", str(bad)]
    r = run_cli(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert r.returncode == 2
    assert "Traceback (most recent call last)" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        f"ml-engine: run clean: config error: {bad}: clean.dedupe: unknown key 'dedupe'; "
        "did you mean 'dedup'?"
    )


def project(tmp_path: Path, schema: str, config: str = "") -> Path:
    """A config of one's own (not the sample's) with its schema beside it."""
    (tmp_path / "schema.yaml").write_text(textwrap.dedent(schema))
    (tmp_path / "config.yaml").write_text(
        "inherits: ml-engine:defaults\nschema: schema.yaml\nstorage: {root: store}\n"
        + textwrap.dedent(config)
    )
    return tmp_path / "config.yaml"


SHOP_SCHEMA = """
    name: shop
    columns:
      - {name: order_id, type: string, nullable: false, role: [record_id, key]}
      - {name: placed, type: timestamp, role: event_time}
      - {name: basket, type: double, role: numeric_feature}
      - {name: returned, type: int, role: label}
"""


def test_missing_input_path_fails_before_spark_starts(tmp_path):
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/2026-11-28}\n")
    r = run_cli("run", "ingest", "--config", str(config), cwd=tmp_path.parent)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ml-engine: run ingest: ingest.path: {tmp_path / 'raw' / '2026-11-28'} does not exist; "
        "point it at the raw file, directory or glob"
    ]
    assert not list((tmp_path).glob("store"))


def test_timestamp_format_that_does_not_match_the_first_lines_fails_before_spark(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text(
        "order_id,placed,basket,returned\n"
        "o1,2026-11-28T10:00:00,12.5,0\n"
        "o2,2026-11-28T11:30:00,40.0,1\n"
    )
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/orders.csv}\n")
    r = run_cli("run", "ingest", "--config", str(config))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "ml-engine: run ingest: ingest.timestamp_format: 'yyyy-MM-dd HH:mm:ss' matches none of "
        f"the first 2 values of column 'placed' in {raw / 'orders.csv'} (first: "
        "'2026-11-28T10:00:00'); set it to the file's format, e.g. \"yyyy-MM-dd'T'HH:mm:ss\""
    ]


@pytest.mark.parametrize(
    ("first", "suggested"),
    [
        ("28.11.2026 10:00", "dd.MM.yyyy HH:mm"),
        ("28.11.2026 10:00:05", "dd.MM.yyyy HH:mm:ss"),
        ("11/28/2026 10:00 PM", "MM/dd/yyyy hh:mm a"),
        ("11/28/2026 10:00:05 am", "MM/dd/yyyy hh:mm:ss a"),
    ],
)
def test_a_timestamp_format_with_points_or_a_12_hour_clock_is_suggested(tmp_path, first, suggested):
    from ml_engine.config import load_config
    from ml_engine.preflight import input_problems

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text(f"order_id,placed,basket,returned\no1,{first},12.5,0\n")
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/orders.csv}\n")
    assert input_problems(load_config(config)) == [
        "ingest.timestamp_format: 'yyyy-MM-dd HH:mm:ss' matches none of the first 1 values of "
        f"column 'placed' in {raw / 'orders.csv'} (first: '{first}'); set it to the file's "
        f'format, e.g. "{suggested}"'
    ]


def test_a_nested_input_path_with_csv_input_is_refused_before_spark_starts(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.preflight import input_problems

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text("order_id,placed,basket,returned\no1,,12.5,0\n")
    schema = SHOP_SCHEMA.replace("{name: basket,", "{name: basket, input_name: [cart, total],")
    config = project(tmp_path, schema, "ingest: {path: raw/orders.csv}\n")
    assert input_problems(load_config(config)) == [
        f"ingest.format: csv, but column basket of {tmp_path / 'schema.yaml'} is read from the "
        "nested field ['cart', 'total'] (input_name), which only JSON and Parquet input have; "
        "name the CSV header field, or set ingest.format"
    ]


def test_a_csv_header_below_a_report_title_is_named_before_spark_starts(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.preflight import input_problems

    raw = tmp_path / "raw"
    raw.mkdir()
    rows = "".join(f"o{i},2026-11-28 10:00:00,1{i}.5,0\n" for i in range(5))
    (raw / "orders.csv").write_text(f"Orders report\n\norder_id,placed,basket,returned\n{rows}")
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw}\n")
    assert input_problems(load_config(config)) == [
        f"ingest.path: {raw / 'orders.csv'}: its header is line 3, below other content ('Orders "
        "report'); ingest takes the first line of each file as its header: remove the lines "
        "above it, e.g. `tail -n +3 orders.csv > orders.data.csv` (and move the original out of "
        "the directory)"
    ]


def test_a_csv_header_lacking_schema_columns_is_named_before_its_values_are_checked(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.preflight import input_problems

    raw = tmp_path / "raw"
    raw.mkdir()
    # a file of labels, not of orders: its third field is no basket
    (raw / "labels.csv").write_text("order_id,returned,placed\no1,1,2026-11-28 10:00:00\n")
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw}\n")
    assert input_problems(load_config(config)) == [
        f"ingest.path: the header of {raw / 'labels.csv'} names 3 columns where schema 'shop' "
        f"({tmp_path / 'schema.yaml'}) declares 4: it lacks ['basket'], so none of its lines "
        "would load. Point ingest.path at the data files (ingest.csv.delimiter is ','), or "
        "make the files and the schema file agree"
    ]
    # the same number of fields under other names: read by position, as ingest does
    (raw / "labels.csv").write_text("id,when,amount,y\no1,2026-11-28 10:00:00,2.5,1\n")
    assert input_problems(load_config(config)) == []
    # ... unless a shared name is at another field: basket dropped, a column added at the end
    (raw / "labels.csv").write_text("order_id,placed,returned,tip\no1,2026-11-28 10:00:00,1,2\n")
    assert input_problems(load_config(config)) == [
        f"ingest.path: {raw / 'labels.csv'}: the header lacks ['basket'] and names ['returned'] "
        f"at other fields than schema 'shop' ({tmp_path / 'schema.yaml'}) declares them "
        "(returned: field 3 in the file, 4 in the schema); read by position, its values would "
        "load under other columns' names. Make the files and the schema file agree (a column "
        "added or dropped: add or remove it in the schema file)"
    ]


def test_timestamp_check_reads_columns_where_the_header_puts_them(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.preflight import input_problems

    raw = tmp_path / "raw"
    raw.mkdir()
    # placed is the 4th field here, not the schema's 2nd; store is not in the schema
    (raw / "orders.csv").write_text(
        "Store,returned,order_id,PLACED,basket\ns1,0,o1,2026-11-28 10:00:00,12.5\n"
    )
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/orders.csv}\n")
    assert input_problems(load_config(config)) == []
    (raw / "orders.csv").write_text(
        "Store,returned,order_id,PLACED,basket\ns1,0,o1,2026-11-28T10:00:00,12.5\n"
    )
    assert input_problems(load_config(config)) == [
        "ingest.timestamp_format: 'yyyy-MM-dd HH:mm:ss' matches none of the first 1 values of "
        f"column 'placed' in {raw / 'orders.csv'} (first: '2026-11-28T10:00:00'); set it to the "
        "file's format, e.g. \"yyyy-MM-dd'T'HH:mm:ss\""
    ]


def test_parquet_nanosecond_timestamps_pass_the_checks_before_spark(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.preflight import input_problems

    raw = tmp_path / "raw"
    raw.mkdir()
    orders = pd.DataFrame(
        {
            "order_id": ["o1", "o2"],
            "placed": pd.to_datetime(["2026-11-28 10:00:00", "2026-11-28 11:30:00"]),
            "basket": [12.5, 40.0],
            "returned": [0, 1],
        }
    )
    orders.to_parquet(raw / "orders.parquet")  # pandas writes nanoseconds by default
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw, format: parquet}\n")
    assert input_problems(load_config(config)) == []  # ingest reads them (test_ingest)


def test_parquet_input_is_checked_for_format_columns_and_timestamps_before_spark(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.preflight import input_problems

    raw = tmp_path / "raw"
    raw.mkdir()
    orders = pd.DataFrame(
        {
            "Order_ID": ["o1", "o2"],
            "placed": ["28/11/2026 10:00", "28/11/2026 11:30"],
            "basket": [12.5, 40.0],
            "returned": [0, 1],
        }
    )
    orders.to_parquet(raw / "part-0")  # no extension: known by its magic bytes
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw}\n")
    assert input_problems(load_config(config)) == [
        f"ingest.format: csv, but {raw / 'part-0'} of ingest.path is a parquet file; set "
        "ingest.format: parquet (or --set ingest.format=parquet)"
    ]
    parquet = ["ingest.format=parquet"]
    # column names match without case, as Spark matches them; the text timestamps are checked
    assert input_problems(load_config(config, parquet)) == [
        "ingest.timestamp_format: 'yyyy-MM-dd HH:mm:ss' matches none of the first 2 values of "
        f"column 'placed' in {raw / 'part-0'} (first: '28/11/2026 10:00'); set it to the file's "
        'format, e.g. "dd/MM/yyyy HH:mm"'
    ]
    fixed = [*parquet, "ingest.timestamp_format=dd/MM/yyyy HH:mm"]
    assert input_problems(load_config(config, fixed)) == []
    orders.drop(columns=["basket"]).to_parquet(raw / "part-0")
    assert input_problems(load_config(config, fixed)) == [
        f"ingest.path: column(s) ['basket'] declared in schema 'shop' ({tmp_path / 'schema.yaml'}) "
        "are in none of the Parquet files; the files have columns ['Order_ID', 'placed', "
        "'returned']. Fix the schema's names or the files"
    ]
    (raw / "part-0").unlink()
    (raw / "orders.json").write_text('{"order_id": "o1"}\n')
    assert input_problems(load_config(config, parquet)) == [
        f"ingest.format: parquet, but {raw / 'orders.json'} of ingest.path is a json file; set "
        "ingest.format: json (or --set ingest.format=json)"
    ]


def test_role_a_job_needs_is_named_before_spark_starts(tmp_path):
    schema = SHOP_SCHEMA.replace("role: [record_id, key]", "role: record_id")
    config = project(tmp_path, schema)
    r = run_cli("run", "build_training_set", "--config", str(config), "--set", "batch_id=b1")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[0] == (
        "ml-engine: run build_training_set: build_training_set needs a column with role key "
        f"(the entity a row belongs to) in schema 'shop' ({tmp_path / 'schema.yaml'}); declare "
        "one (a column can be both: role: [record_id, key])"
    )


def test_columns_named_like_a_model_output_are_named_before_any_job_of_a_model_chain(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.jobs import PIPELINE
    from ml_engine.preflight import preflight

    schema = SHOP_SCHEMA.replace("name: basket", "name: score") + (
        "      - {name: predicted_label, type: string, role: categorical_feature}\n"
    )
    config = project(tmp_path, schema, "features: {ratios: {prediction: [score, score]}}\n")
    cfg = load_config(str(config))
    hint = (
        "the model's outputs take these names (prediction, probability, rawPrediction, "
        "predicted_label, score, score_<class>); rename the column in the schema file (a CSV "
        "file is read by position when its header differs from the schema only in renamed "
        "columns; a JSON key or Parquet column keeps its name as the column's input_name)"
    )
    where = f"schema 'shop' ({tmp_path / 'schema.yaml'})"
    expected = [
        f"{where}: column 'score': train, score, drift_report cannot use it: {hint}",
        f"{where}: column 'predicted_label': train, score, drift_report cannot use it: {hint}",
        "features: engineered column 'prediction': train, score, drift_report cannot use it: "
        "a model output takes this name; give it another name in the config",
    ]
    problems = preflight(cfg, PIPELINE)
    assert [p for p in problems if "cannot use it" in p] == expected
    # the data jobs alone have no model output to clash with
    assert not [p for p in preflight(cfg, PIPELINE[:5]) if "cannot use it" in p]
    assert [p for p in preflight(cfg, ["drift_report"]) if "cannot use it" in p] == [
        e.replace("train, score, drift_report", "drift_report") for e in expected
    ]


def test_the_jobs_that_talk_to_the_tracking_server_are_the_model_jobs_and_a_keeping_vacuum(
    tmp_path,
):
    from ml_engine import jobs as J
    from ml_engine.config import load_config

    cfg = load_config(str(project(tmp_path, SHOP_SCHEMA)))
    assert cfg.vacuum.keep_model_inputs is True  # the default
    assert [n for n, spec in J.JOBS.items() if spec.tracks(cfg)] == [
        "train",
        "score",
        "drift_report",
        "vacuum",
    ]
    cfg.vacuum.keep_model_inputs = False
    assert [n for n, spec in J.JOBS.items() if spec.tracks(cfg)] == [
        "train",
        "score",
        "drift_report",
    ]


def test_missing_input_table_and_batch_are_named_before_spark_starts(tmp_path):
    config = project(tmp_path, SHOP_SCHEMA)
    r = run_cli("run", "clean", "--config", str(config), "--set", "batch_id=b3")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ml-engine: run clean: its input table bronze does not exist at "
        f"{tmp_path / 'store' / 'tables' / 'bronze'}; run ingest first (or check storage.root)"
    ]
    bronze = pd.DataFrame({"order_id": ["o1", "o2"], "batch_id": ["b1", "b2"]})
    write_deltalake(
        str(tmp_path / "store" / "tables" / "bronze"), bronze, partition_by=["batch_id"]
    )
    r = run_cli("run", "clean", "--config", str(config), "--set", "batch_id=b3")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ml-engine: run clean: batch 'b3' is not in its input table bronze "
        f"({tmp_path / 'store' / 'tables' / 'bronze'}); batches there: b1, b2. Set batch_id to "
        "one of them or run the jobs before clean for this batch"
    ]


def test_label_table_columns_are_checked_before_spark_starts(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.preflight import preflight

    schema = SHOP_SCHEMA.replace(
        "role: [record_id, key]}",
        "role: record_id}\n      - {name: shopper, type: string, role: key}",
    )
    labels = tmp_path / "labels"
    config = project(tmp_path, schema, f"training_set: {{labels_path: {labels}}}\n")
    features = pd.DataFrame(
        {"order_id": ["o1"], "shopper": ["s1"], "placed": [pd.Timestamp("2026-11-28")],
         "basket": [2.0], "batch_id": ["b1"]}
    )  # fmt: skip
    write_deltalake(str(tmp_path / "store" / "tables" / "features"), features)
    # labels of orders: the record id, the label and its time are enough
    write_deltalake(str(labels), features[["order_id", "placed"]].assign(returned=[1]))
    assert preflight(load_config(config), ["build_training_set"]) == []
    # labels without the record id are labels of shoppers, which need the key
    write_deltalake(str(labels), features[["placed"]].assign(returned=[1]), mode="overwrite",
                    schema_mode="overwrite")  # fmt: skip
    assert preflight(load_config(config), ["build_training_set"]) == [
        f"build_training_set: training_set.key: column 'shopper' is not in the label table "
        f"{labels}; its columns: ['placed', 'returned'] (labels of single records need only "
        "the record id 'order_id', the label and its time)"
    ]


def test_a_column_type_the_tables_do_not_have_is_refused_before_spark_starts(tmp_path):
    from ml_engine.config import load_config
    from ml_engine.preflight import type_problems

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "b2.csv").write_text("order_id,placed,basket,returned\no3,2026-11-28 10:00:00,1.5,0\n")
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/b2.csv}\n")
    tables = tmp_path / "store" / "tables"
    # tables an earlier schema file wrote: basket a whole number, returned text in silver
    earlier = pd.DataFrame(
        {"order_id": ["o1"], "basket": [2], "returned": ["0"], "batch_id": ["b1"]}
    )
    for name in ("bronze", "silver"):
        write_deltalake(str(tables / name), earlier, partition_by=["batch_id"])
    r = run_cli("run", "pipeline", "--config", str(config))
    assert r.returncode == 2
    refusal = (
        "ml-engine: run pipeline: {job}: column types of the schema file {schema}{coerce} "
        "differ from those of the table {path} ({columns}). A column keeps its type in a "
        "table, because its earlier batches hold the old one: give it the table's type again, "
        "or write every batch with the new types to new tables (--set storage.root=PATH). "
        "Nothing was written"
    )
    schema = tmp_path / "schema.yaml"
    assert r.stderr.strip().splitlines() == [
        refusal.format(
            job="ingest", schema=schema, coerce="", path=tables / "bronze",
            columns="basket (table: bigint, now: double), returned (table: string, now: int)",
        ),
        refusal.format(
            job="clean", schema=schema, coerce=" and clean.coerce", path=tables / "silver",
            columns="basket (table: bigint, now: double), returned (table: string, now: int)",
        ),
    ]  # fmt: skip
    # clean.coerce giving silver's types again: only ingest is refused
    coerced = ["clean.coerce={basket: long, returned: string}"]
    problems = type_problems(load_config(config, coerced), ["ingest", "clean"])
    assert problems == [r.stderr.strip().splitlines()[0].removeprefix("ml-engine: run pipeline: ")]


def test_model_command_names_its_own_options_when_an_alias_is_missing(tmp_path, capsys):
    from mlflow import MlflowClient

    from ml_engine import cli
    from ml_engine.config import load_config
    from ml_engine.scoring import make_champion, resolve_model_version

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = MlflowClient(tracking_uri=uri, registry_uri=uri)
    store.create_registered_model("shop-model")
    store.create_model_version("shop-model", source=str(tmp_path / "model"))
    store.set_registered_model_alias("shop-model", "champion", "1")
    config = project(
        tmp_path, SHOP_SCHEMA, f"mlflow: {{tracking_uri: '{uri}', registered_model: shop-model}}\n"
    )
    r = run_cli("model", "--config", str(config), "--alias", "challenger")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "ml-engine: model: model 'shop-model' has no alias 'challenger' (--alias); aliases: "
        "champion -> v1. No version holds it now: a new version is challenger until the gate "
        "promotes it. Or give a version with --version"
    ]
    # score with an alias no version holds: refused before Spark starts, exit 2
    features = tmp_path / "store" / "tables" / "features"
    write_deltalake(str(features), pd.DataFrame({"order_id": ["o1"], "batch_id": ["b1"]}))
    r = run_cli(
        "run", "score", "--config", str(config), "--set", "batch_id=b1",
        "--set", "score.model_alias=challenger",
    )  # fmt: skip
    assert (r.returncode, r.stderr.strip().splitlines()) == (
        2,
        [
            "ml-engine: run score: model 'shop-model' has no alias 'challenger' "
            "(score.model_alias); aliases: champion -> v1. No version holds it now: a new "
            "version is challenger until the gate promotes it. Or give a version with "
            "score.model_version"
        ],
    )
    r = run_cli("model", "--config", str(config), "champion")  # the alias needs --alias
    assert (r.returncode, r.stderr.split()[:3], r.stderr.splitlines()[-1]) == (
        2,
        ["usage:", "ml-engine", "model"],
        "ml-engine model: error: unrecognized arguments: champion",
    )
    r = run_cli("model", "--config", str(config), "--version", "1")
    assert (r.returncode, r.stdout.strip()) == (
        0,
        "shop-model version 1 (run None; aliases: champion)",
    )
    # a rollback: v2, promoted by hand from challenger, then champion moved back to v1
    store.create_model_version("shop-model", source=str(tmp_path / "model2"))
    store.set_registered_model_alias("shop-model", "challenger", "2")
    # in this process from here on: the command's start-up was shown by the runs above
    code = cli.main(["model", "--config", str(config), "--alias", "challenger", "--promote"])
    assert (code, capsys.readouterr().out.strip()) == (
        0,
        "shop-model: champion moved from version 1 to version 2 (run None); score and "
        "drift_report use it from their next run",
    )
    assert store.get_registered_model("shop-model").aliases == {"champion": 2}
    tag = store.get_model_version("shop-model", "2").tags["ml_engine.promoted"]
    assert re.fullmatch(
        r"ml-engine model --promote at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC, replacing version 1", tag
    )
    cfg = load_config(config)
    v1 = resolve_model_version(cfg, version=1)
    assert make_champion(cfg, v1) == (
        "shop-model: champion moved from version 2 to version 1 (run None); score and "
        "drift_report use it from their next run"
    )
    assert make_champion(cfg, v1) == "shop-model version 1 is already champion; nothing moved"
    assert store.get_registered_model("shop-model").aliases == {"champion": 1}
    # a store that does not exist yet holds no model: said so, and none is made to ask
    fresh = tmp_path / "fresh"
    fresh_uri = f"sqlite:///{fresh / 'mlflow.db'}"
    code = cli.main(["model", "--config", str(config), f"--set=mlflow.tracking_uri={fresh_uri}"])
    assert (code, capsys.readouterr().err.strip(), fresh.exists()) == (
        1,
        f"ml-engine: model: no registered model 'shop-model' in {fresh_uri} "
        "(mlflow.registered_model); run the train job first",
        False,
    )
    # a tracking server that does not answer is named as such, before MLflow's retries
    code = cli.main(
        ["model", "--config", str(config), "--set=mlflow.tracking_uri=http://127.0.0.1:9"]
    )
    assert (code, capsys.readouterr().err.strip()) == (
        2,
        "ml-engine: model: mlflow.tracking_uri: the tracking server http://127.0.0.1:9 does not "
        "answer ([Errno 111] Connection refused); start it or fix the URI (MLFLOW_TRACKING_URI)",
    )


def test_spark_error_is_one_line_naming_the_root_cause_and_the_file(spark, tmp_path):
    # A file edited after Hadoop wrote its checksum: the read fails deep inside a task.
    raw = tmp_path / "raw" / "day1"
    spark.createDataFrame(
        [("o1", "2026-11-28 10:00:00", "12.5", "0")], "a string, b string, c string, d string"
    ).coalesce(1).write.option("header", "true").csv(str(raw))
    data = next(raw.glob("part-*.csv"))
    data.write_text(data.read_text().replace("12.5", "99.9"))
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/day1}\n")
    r = run_cli("run", "ingest", "--config", str(config))
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(
        "ml-engine: run ingest: org.apache.hadoop.fs.ChecksumException: Checksum error: "
        f"file:{data} at 0 exp: "
    )
    assert "(Spark's log: " in lines[0]
    assert "\tat org.apache" not in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_parquet_files_with_clashing_column_types_name_the_file_and_column(spark, tmp_path):
    import pandas as pd
    import yaml

    from ml_engine.cli import spark_error_reason
    from ml_engine.quality.ingest import read_raw
    from ml_engine.schemas import schema_from_dict

    raw = tmp_path / "raw" / "day1"
    raw.mkdir(parents=True)
    placed = pd.Series(["2026-11-28 10:00:00"], dtype="datetime64[us]")
    frame = {"order_id": ["o1"], "placed": placed, "basket": [12.5]}
    pd.DataFrame({**frame, "returned": pd.Series([0], dtype="int32")}).to_parquet(raw / "a.parquet")
    # the other file stores the label as text: no reader takes both as one column
    pd.DataFrame({**frame, "order_id": ["o2"], "returned": ["no"]}).to_parquet(raw / "b.parquet")
    schema = schema_from_dict(yaml.safe_load(textwrap.dedent(SHOP_SCHEMA)))
    with pytest.raises(Exception) as err:  # what run_job turns into the error line
        read_raw(spark, str(raw), "parquet", schema).collect()
    reason = spark_error_reason(err.value)
    assert re.fullmatch(
        r"org.apache.spark.SparkException: "
        r"\[FAILED_READ_FILE.PARQUET_COLUMN_DATA_TYPE_MISMATCH\] Encountered error while reading "
        rf"file file://{raw}/[ab].parquet. Data type mismatches when reading Parquet column "
        r"\[returned\]. .*; org.apache.spark.sql.execution.datasources."
        r"SchemaColumnConvertNotSupportedException: column: \[returned\].*",
        reason,
    ), reason


def _path_without_java(tmp_path: Path) -> str:
    """A PATH holding only make: no java anywhere on it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    os.symlink(shutil.which("make"), bin_dir / "make")
    return str(bin_dir)


def test_missing_java_is_explained_by_the_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = _path_without_java(tmp_path)
    from ml_engine.config import load_config

    data = tmp_path / "raw.csv"  # a header, no lines
    data.write_text(",".join(load_config(ROOT / "conf" / "local.yaml").table_schema.names) + "\n")
    r = run_cli(
        "run", "ingest", "--config", "conf/local.yaml", "--set", f"ingest.path={data}", env=env
    )
    assert r.returncode == 4
    assert r.stderr.strip().startswith(
        "ml-engine: run ingest: Java was not found (no JAVA_HOME, no 'java' on PATH). "
        "Spark needs Java 17: install it"
    )
    assert "Traceback" not in r.stderr


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("target", ["test", "demo"])
def test_missing_java_is_explained_by_make(tmp_path, target):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = _path_without_java(tmp_path)
    r = subprocess.run(
        ["make", "-s", target], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60
    )
    assert r.returncode != 0
    assert "Java 17 is needed by Spark and was not found" in r.stdout
    assert "openjdk-17-jre-headless" in r.stdout


def test_ctrl_c_during_a_job_prints_one_line_and_exits_130(spark, tmp_path, monkeypatch, capsys):
    import signal
    import time

    from ml_engine import cli
    from ml_engine import jobs as J

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "orders.csv").write_text("order_id,placed,basket,returned\no1,2026-11-28 10:00:00,1,0\n")
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/orders.csv}\n")
    monkeypatch.setattr(J, "open_session_and_tables", lambda *a, **k: (spark, None))

    def interrupted(*args):
        # A real SIGINT to this process, as Ctrl-C sends it, while the "job" runs.
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        raise AssertionError("SIGINT did not interrupt the job")

    monkeypatch.setattr(J, "run_job", interrupted)
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as PySpark's handler would not raise either
    try:
        code = cli.main(["run", "ingest", "--config", str(config)])
    finally:
        signal.signal(signal.SIGINT, before)
    assert code == 130
    assert capsys.readouterr().err.splitlines() == [
        "ml-engine: run ingest: interrupted; nothing it had not committed was kept (each table "
        "is at its last committed version): run the same command again"
    ]


def test_a_failed_dataframe_operation_logs_no_json_trace_on_the_terminal(spark):
    from pyspark.errors import PySparkException
    from pyspark.logger import PySparkLogger
    from pyspark.sql import functions as F

    from ml_engine import cli

    logger = PySparkLogger.getLogger("DataFrameQueryContextLogger")
    records: list[logging.LogRecord] = []
    collect = logging.Handler()
    collect.emit = records.append

    def logged() -> list[str]:
        records.clear()
        with pytest.raises(PySparkException):
            spark.range(1).select(F.lit("maybe").cast("boolean")).collect()
        return [r.levelname for r in records]

    logger.addHandler(collect)
    try:
        # PySpark's default (an earlier in-process cli.main may have quieted it already)
        logger.setLevel(logging.NOTSET)
        assert logged() == ["ERROR"]
        cli._quiet_libraries()
        assert logged() == []
    finally:
        logger.removeHandler(collect)


def test_a_per_batch_job_names_its_batch_in_its_done_line(spark, tmp_path, monkeypatch, capsys):
    from ml_engine import cli
    from ml_engine import jobs as J
    from ml_engine.results import JobResult

    raw = tmp_path / "raw" / "2026-05-01"
    raw.mkdir(parents=True)
    (raw / "orders.csv").write_text("order_id,placed,basket,returned\no1,2026-11-28 10:00:00,1,0\n")
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/2026-05-01}\n")
    monkeypatch.setattr(J, "open_session_and_tables", lambda *a, **k: (spark, None))
    monkeypatch.setattr(J, "run_job", lambda name, *a: JobResult(job=name))
    assert cli.main(["run", "ingest", "--config", str(config)]) == 0
    # the batch taken from ingest.path's last directory, as every job takes it
    assert capsys.readouterr().out.splitlines() == ["[ingest] done: batch 2026-05-01"]
    cli.print_result(JobResult(job="train"), None)
    assert capsys.readouterr().out.splitlines() == ["[train] done"]
    assert [n for n, spec in J.JOBS.items() if not spec.per_batch] == [
        "build_training_set",
        "train",
        "vacuum",
    ]


def test_several_jobs_run_in_the_order_given_in_one_session(spark, tmp_path, monkeypatch, capsys):
    from ml_engine import cli
    from ml_engine import jobs as J
    from ml_engine.results import JobResult

    raw = tmp_path / "raw" / "b1"
    raw.mkdir(parents=True)
    (raw / "orders.csv").write_text("order_id,placed,basket,returned\no1,2026-11-28 10:00:00,1,0\n")
    config = project(tmp_path, SHOP_SCHEMA, "ingest: {path: raw/b1}\n")
    sessions = []
    monkeypatch.setattr(
        J, "open_session_and_tables", lambda cfg, app, **k: sessions.append(app) or (spark, None)
    )
    monkeypatch.setattr(J, "run_job", lambda name, *a: JobResult(job=name))
    # clean reads bronze, which does not exist: the ingest before it in the same run writes it
    assert cli.main(["run", "ingest", "clean", "--config", str(config)]) == 0
    assert sessions == ["ml-engine:ingest+clean"]
    assert capsys.readouterr().out.splitlines() == [
        "[ingest] done: batch b1",
        "[clean] done: batch b1",
    ]
    assert cli.main(["run", "ingest", "clen", "--config", str(config)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "ml-engine: run ingest clen: unknown job 'clen'; jobs: ingest, clean, detect_outliers, "
        "build_features, build_training_set, train, score, drift_report, vacuum"
    ]


def test_a_run_of_several_jobs_stops_at_the_first_that_fails_with_its_exit_code(
    spark, tmp_path, monkeypatch, capsys
):
    from ml_engine import cli
    from ml_engine import jobs as J
    from ml_engine.catalog import BatchCatalog
    from ml_engine.tables import open_tables

    raw = tmp_path / "raw" / "b1"
    raw.mkdir(parents=True)
    (raw / "orders.csv").write_text(
        "order_id,placed,basket,returned\n"
        "o1,2026-11-28 10:00:00,1.5,0\n"
        "o2,2026-11-28 11:00:00,30.0,1\n"
    )
    rule = "{name: basket_small, type: range, column: basket, max: 25, action: fail}"
    config = project(
        tmp_path, SHOP_SCHEMA, f"ingest: {{path: raw/b1}}\nclean: {{rules: [{rule}]}}\n"
    )
    tables = open_tables(spark, "rs")
    monkeypatch.setattr(J, "open_session_and_tables", lambda cfg, app, **k: (spark, tables))

    code = cli.main(["run", "ingest", "clean", "detect_outliers", "--config", str(config)])

    out, err = capsys.readouterr()
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        "[ingest] done: batch b1"
    ]
    store = tmp_path / "store" / "tables"
    assert err.splitlines() == [
        f"ml-engine: run ingest clean detect_outliers: clean: batch b1 of {store / 'bronze'} "
        "violates fail rule(s): rule basket_small (column basket) failed for 1 row(s), e.g. keys "
        "['o2']. Nothing was written; fix the data or change the rules' action."
    ]
    # ingest's commits stand and its batch is complete; clean and detect_outliers wrote nothing
    catalog = BatchCatalog(tables, str(store / "job_runs"))
    assert catalog.batches(str(store / "bronze")) == ["b1"]
    assert sorted(p.name for p in store.iterdir()) == ["bronze", "job_runs", "quarantine"]


@pytest.mark.parametrize(
    ("job", "overrides", "batch"),
    [
        ("clean", [], "day3"),
        ("build_features", [], "day3"),
        ("build_features", ["features.rebuild=true"], None),
        ("build_features", ["features.start=2026-01-01"], None),
        ("train", [], None),
    ],
)
def test_the_done_line_names_a_batch_only_for_a_run_over_one_batch(job, overrides, batch):
    from ml_engine.cli import _batch_of
    from ml_engine.config import load_config

    cfg = load_config(
        "ml-engine:sample", ["storage.root=/store", "ingest.path=/raw/day3", *overrides]
    )
    assert _batch_of(job, cfg) == batch
