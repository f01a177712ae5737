"""Config: layering, overrides, environment secrets and errors that name file and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from ml_engine.config import ConfigError, dump_config, load_config, parse_override

SCHEMA = textwrap.dedent(
    """
    name: t
    columns:
      - {name: id, type: string, nullable: false, role: key}
      - {name: ts, type: timestamp, nullable: false, role: event_time}
      - {name: x, type: double, role: numeric_feature}
      - {name: c, type: string, role: categorical_feature}
    """
)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    write(tmp_path / "schema.yaml", SCHEMA)
    write(
        tmp_path / "base.yaml",
        f"""
        schema: {tmp_path / "schema.yaml"}
        storage: {{root: {tmp_path / "store"}}}
        spark: {{conf: {{spark.sql.shuffle.partitions: 8, spark.sql.adaptive.enabled: true}}}}
        ingest: {{path: /data/raw/batch_7, format: csv}}
        """,
    )
    write(
        tmp_path / "local.yaml",
        """
        inherits: base.yaml
        spark: {master: "local[3]", conf: {spark.sql.shuffle.partitions: 4}}
        """,
    )
    return tmp_path


def test_environment_file_overrides_base_and_keeps_other_keys(conf_dir):
    cfg = load_config(conf_dir / "local.yaml")
    assert cfg.spark.master == "local[3]"
    assert cfg.spark.conf == {
        "spark.sql.shuffle.partitions": "4",
        "spark.sql.adaptive.enabled": "true",
    }
    assert cfg.ingest.format == "csv"


def test_set_values_take_the_type_of_the_field_they_set(conf_dir):
    cfg = load_config(
        conf_dir / "local.yaml",
        [
            "spark.conf.spark.sql.shuffle.partitions=2",
            "sample_data.rows=500",
            "batch_id=2026-11-28",
            "ingest.timestamp_format=yyyy-MM-dd",
            "train.gate=dry_run",
            "train.params={maxIter: 5, regParam: 0.1}",
            "features.log=[x]",
            "clean.trim=false",
        ],
    )
    assert cfg.spark.conf == {
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.adaptive.enabled": "true",
    }
    assert cfg.sample_data.rows == 500
    assert cfg.batch_id == "2026-11-28" and cfg.effective_batch_id() == "2026-11-28"
    assert cfg.ingest.timestamp_format == "yyyy-MM-dd"
    assert cfg.train.gate == "dry_run"
    assert cfg.train.params == {"maxIter": 5, "regParam": 0.1}
    assert cfg.features.log == ["x"]
    assert cfg.clean.trim is False


def test_text_that_looks_like_a_number_stays_text_in_a_text_field(conf_dir):
    cfg = load_config(conf_dir / "local.yaml", ["batch_id=007", "mlflow.experiment=1e3"])
    assert (cfg.batch_id, cfg.mlflow.experiment) == ("007", "1e3")


def test_dates_written_in_a_file_stay_text(conf_dir):
    write(conf_dir / "dated.yaml", "inherits: base.yaml\nbatch_id: 2026-11-28\n")
    assert load_config(conf_dir / "dated.yaml").batch_id == "2026-11-28"


def test_set_null_resets_a_key_to_its_default(conf_dir):
    cfg = load_config(conf_dir / "local.yaml", ["spark.master=null"])
    assert cfg.spark.master == "local[*]"


def test_null_in_a_later_file_clears_an_inherited_mapping_and_list(conf_dir):
    write(
        conf_dir / "parent.yaml",
        "inherits: base.yaml\nclean: {case: {c: lower}}\nfeatures: {log: [x]}\n",
    )
    write(
        conf_dir / "child.yaml",
        "inherits: parent.yaml\nclean: {case: null}\nfeatures: {log: null}\n",
    )
    parent, child = load_config(conf_dir / "parent.yaml"), load_config(conf_dir / "child.yaml")
    assert (parent.clean.case, parent.features.log) == ({"c": "lower"}, ["x"])
    assert (child.clean.case, child.features.log) == ({}, [])


def test_replace_tag_replaces_an_inherited_mapping_instead_of_merging(conf_dir):
    write(conf_dir / "parent.yaml", "inherits: base.yaml\nclean: {mappings: {c: {a: b}}}\n")
    write(conf_dir / "merged.yaml", "inherits: parent.yaml\nclean: {mappings: {c: {x: y}}}\n")
    write(
        conf_dir / "replaced.yaml",
        "inherits: parent.yaml\nclean:\n  mappings: !replace {c: {x: y}}\n",
    )
    assert load_config(conf_dir / "merged.yaml").clean.mappings == {"c": {"a": "b", "x": "y"}}
    assert load_config(conf_dir / "replaced.yaml").clean.mappings == {"c": {"x": "y"}}


def test_relative_paths_in_a_file_resolve_against_its_directory(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    write(project / "schema.yaml", SCHEMA)
    write(
        project / "config.yaml",
        """
        schema: schema.yaml
        storage: {root: work}
        ingest: {path: ../raw/2026-11-28.csv}
        mlflow: {tracking_uri: "sqlite:///work/mlflow.db"}
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config("../project/config.yaml")
    assert cfg.schema_path == str(project / "schema.yaml")
    assert cfg.storage.root == str(project / "work")
    assert cfg.ingest.path == str(tmp_path / "raw" / "2026-11-28.csv")
    assert cfg.tracking_uri() == f"sqlite:///{project / 'work' / 'mlflow.db'}"
    assert cfg.effective_batch_id() == "2026-11-28"


def test_relative_path_given_with_set_resolves_against_the_working_directory(
    conf_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(conf_dir / "local.yaml", ["ingest.path=data/day_3"])
    assert cfg.ingest.path == str(tmp_path / "data" / "day_3")


def test_inherits_is_relative_to_the_file_that_says_it(conf_dir, tmp_path, monkeypatch):
    nested = conf_dir / "teams" / "fraud"
    nested.mkdir(parents=True)
    write(nested / "prod.yaml", "inherits: ../../local.yaml\nspark: {master: 'local[1]'}\n")
    monkeypatch.chdir(tmp_path.parent)
    cfg = load_config(nested / "prod.yaml")
    assert (cfg.spark.master, cfg.spark.conf["spark.sql.shuffle.partitions"]) == ("local[1]", "4")


def test_inherits_can_name_the_packaged_defaults(tmp_path, monkeypatch):
    write(tmp_path / "schema.yaml", SCHEMA)
    write(
        tmp_path / "mine.yaml",
        "inherits: ml-engine:defaults\nschema: schema.yaml\nstorage: {root: store}\n",
    )
    monkeypatch.chdir("/")
    cfg = load_config(tmp_path / "mine.yaml")
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "8"
    assert cfg.outliers.refit == "auto"
    assert (cfg.clean.case, cfg.clean.mappings, cfg.clean.missing, cfg.features.log) == (
        {},
        {},
        {},
        [],
    )


def test_packaged_defaults_name_no_column_of_any_dataset(sample_schema_path):
    from ml_engine.config import packaged_config
    from ml_engine.schemas import load_schema

    text = packaged_config("defaults").read_text()
    for column in load_schema(sample_schema_path).names:
        assert column not in text
    data = yaml.safe_load(text)
    assert sorted(data) == ["delta", "ingest", "mlflow", "outliers", "spark"]


def test_unknown_key_suggests_the_closest_key(conf_dir):
    write(conf_dir / "bad.yaml", "inherits: base.yaml\nclean: {dedupe: exact}\n")
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "bad.yaml")
    assert str(err.value) == (
        f"{conf_dir / 'bad.yaml'}: clean.dedupe: unknown key 'dedupe'; did you mean 'dedup'?"
    )


def test_unknown_key_without_a_close_match_lists_the_known_keys(conf_dir):
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "local.yaml", ["delta.zzz=1"])
    assert str(err.value) == "--set delta.zzz: unknown key 'zzz'; known keys: backend"


def test_every_problem_is_one_line_naming_its_source(conf_dir):
    write(conf_dir / "bad.yaml", "inherits: base.yaml\nclean: {dedup: sometimes}\n")
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "bad.yaml", ["sample_data.rows=many"])
    assert sorted(str(err.value).splitlines()) == [
        "--set sample_data.rows: expected a whole number, got 'many'",
        f"{conf_dir / 'bad.yaml'}: clean.dedup: 'sometimes' is not allowed; use "
        "'latest_by_key', 'exact' or 'none'",
    ]


def test_batch_id_defaults_to_last_component_of_ingest_path(conf_dir):
    assert load_config(conf_dir / "local.yaml").effective_batch_id() == "batch_7"


@pytest.mark.parametrize(
    ("path", "batch"),
    [
        ("/data/raw/2026-11-28.csv.gz", "2026-11-28"),
        ("/data/raw/x.json.bz2", "x"),
        ("/data/raw/day_3/", "day_3"),
        ("/data/raw/part.parquet", "part"),
    ],
)
def test_batch_id_from_a_path_ignores_format_and_compression_suffixes(path, batch):
    from ml_engine.config import batch_id_from_path

    assert batch_id_from_path(path) == batch


def test_batch_id_is_not_derived_from_a_glob(conf_dir):
    cfg = load_config(conf_dir / "local.yaml", ["ingest.path=/data/raw/*.csv"])
    with pytest.raises(ConfigError, match=r"ingest.path /data/raw/\*.csv is a glob"):
        cfg.effective_batch_id()
    assert (
        load_config(
            conf_dir / "local.yaml", ["ingest.path=/data/raw/*.csv", "batch_id=b1"]
        ).effective_batch_id()
        == "b1"
    )


def test_table_paths_live_under_storage_root(conf_dir):
    cfg = load_config(conf_dir / "local.yaml")
    assert cfg.storage.table_path("bronze") == str(conf_dir / "store" / "tables" / "bronze")


def test_tracking_store_defaults_to_a_sqlite_file_under_the_storage_root(conf_dir, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config(conf_dir / "local.yaml")
    assert cfg.tracking_uri() == f"sqlite:///{conf_dir / 'store' / 'mlflow.db'}"
    assert cfg.artifact_location() == (conf_dir / "store" / "mlartifacts").as_uri()


def test_environment_variable_is_substituted(conf_dir):
    write(conf_dir / "env.yaml", "inherits: base.yaml\nmlflow: {tracking_uri: '${TRACK_URI}'}\n")
    cfg = load_config(conf_dir / "env.yaml", env={"TRACK_URI": "http://127.0.0.1:5000"})
    assert cfg.mlflow.tracking_uri == "http://127.0.0.1:5000"


def test_missing_environment_variable_names_file_and_key(conf_dir):
    write(conf_dir / "env.yaml", "inherits: base.yaml\nmlflow: {tracking_uri: '${TRACK_URI}'}\n")
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "env.yaml", env={})
    assert (
        f"{conf_dir / 'env.yaml'}: mlflow.tracking_uri: environment variable TRACK_URI is not set"
        in str(err.value)
    )


def test_missing_required_value_is_named(tmp_path):
    write(tmp_path / "schema.yaml", SCHEMA)
    write(tmp_path / "c.yaml", f"schema: {tmp_path / 'schema.yaml'}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert str(err.value) == f"{tmp_path / 'c.yaml'}: storage: required key is missing; set it"


def test_column_the_schema_lacks_names_file_key_and_schema(conf_dir):
    write(
        conf_dir / "bad.yaml",
        "inherits: base.yaml\nclean: {missing: {amount: {strategy: median}}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "bad.yaml")
    msg = str(err.value)
    assert (
        f"{conf_dir / 'bad.yaml'}: clean.missing.amount: column 'amount' is not in schema 't'"
        in msg
    )


def test_missing_schema_file_is_a_config_error(conf_dir):
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "local.yaml", ["schema=/nope/schema.yaml"])
    assert str(err.value) == "--set schema: schema file /nope/schema.yaml not found"


def test_inherits_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "inherits: b.yaml\n")
    write(tmp_path / "b.yaml", "inherits: a.yaml\n")
    with pytest.raises(ConfigError, match="'inherits' makes a cycle"):
        load_config(tmp_path / "a.yaml")


def test_unknown_packaged_config_is_named(tmp_path):
    write(tmp_path / "a.yaml", "inherits: ml-engine:defualts\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "a.yaml")
    assert str(err.value) == (
        f"{tmp_path / 'a.yaml'}: inherits: ml-engine:defualts: no packaged config of that "
        "name; use one of ml-engine:defaults, ml-engine:sample"
    )


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_malformed_override_is_rejected():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        parse_override("just_a_key")


def test_dumped_effective_config_loads_back_identically(conf_dir):
    cfg = load_config(conf_dir / "local.yaml", ["batch_id=b1"])
    dump_config(cfg, conf_dir / "effective.yaml")
    again = load_config(conf_dir / "effective.yaml")
    assert again.to_dict() == cfg.to_dict()


def test_dumped_config_keeps_placeholders_never_secrets_and_is_owner_only(conf_dir):
    sentinel = "s3cr3t-sentinel-7f1e"
    write(
        conf_dir / "env.yaml",
        "inherits: base.yaml\nmlflow: {tracking_uri: 'http://user:${TOKEN}@127.0.0.1:5000'}\n",
    )
    cfg = load_config(conf_dir / "env.yaml", env={"TOKEN": sentinel})
    assert cfg.mlflow.tracking_uri == f"http://user:{sentinel}@127.0.0.1:5000"
    out = conf_dir / "effective.yaml"
    dump_config(cfg, out)
    text = out.read_text()
    assert sentinel not in text
    assert "tracking_uri: http://user:${TOKEN}@127.0.0.1:5000" in text
    assert out.stat().st_mode & 0o777 == 0o600
    assert load_config(out, env={"TOKEN": sentinel}).to_dict() == cfg.to_dict()


def test_project_config_files_are_valid(project_root):
    for path in (project_root / "conf" / "local.yaml", "ml-engine:sample"):
        cfg = load_config(path, ["storage.root=/tmp/x"])
        assert cfg.table_schema.name == "transactions"
    local = load_config(project_root / "conf" / "local.yaml")
    assert local.storage.root == str(project_root / "work")
    cluster = load_config(
        project_root / "conf" / "cluster.yaml",
        env={
            "ML_ENGINE_STORAGE_ROOT": "s3a://bucket/ml",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
            "ML_ENGINE_RAW_PATH": "s3a://bucket/raw/2026-11-28",
        },
    )
    assert cluster.storage.table_path("silver") == "s3a://bucket/ml/tables/silver"
    assert cluster.effective_batch_id() == "2026-11-28"


STORE = "storage.root=/tmp/ml-engine-config-test"


def test_gate_thresholds_take_one_class_metric_of_a_multiclass_label():
    from ml_engine.training.job import gate_decision

    cfg = load_config(
        "ml-engine:sample", [STORE, "train.gate_thresholds={recall_high: 0.8, f1: 0.5}"]
    )
    metrics = {"f1": 0.7, "recall_high": 0.75, "recall_low": 0.9, "auc_roc_high": 0.9}
    decision = gate_decision(cfg, "f1", metrics, None, None)
    assert (decision.promote, decision.reason) == (False, "recall_high 0.7500 < threshold 0.8")
    assert gate_decision(cfg, "f1", {**metrics, "recall_high": 0.8}, None, None).promote

    typo = load_config("ml-engine:sample", [STORE, "train.gate_thresholds={recall_hgh: 0.8}"])
    decision = gate_decision(typo, "f1", metrics, None, None)
    assert decision.reason == (
        "recall_hgh: the model has no class 'hgh' (its recall_<class> metrics: recall_high, "
        "recall_low)"
    )
    with pytest.raises(ConfigError) as err:
        load_config("ml-engine:sample", [STORE, "train.gate_thresholds={recal_high: 0.8}"])
    assert str(err.value) == (  # named where it was set, not the section's file
        "--set train.gate_thresholds: unknown metric(s) ['recal_high']; use ['accuracy', "
        "'auc_pr', 'auc_roc', 'f1', 'log_loss', 'mae', 'r2', 'rmse'], or one class's "
        "f1/precision/recall/auc_roc as <metric>_<class> (recall_high) for a multiclass label"
    )


def test_the_gate_against_a_champion_says_by_how_much_the_new_version_differs():
    from ml_engine.training.job import gate_decision

    cfg = load_config(
        "ml-engine:sample",
        [STORE, "train.gate_thresholds={auc_roc: 0.7}", "train.gate_max_loss=0.02"],
    )
    versus = "auc_roc 0.8500 vs champion v1 {:.4f} on the new test set: "
    met = "auc_roc 0.8500 meets 0.7; "
    cases = [
        (0.8455, True, "better by 0.0045"),
        (0.85, True, "equal"),
        (0.86, True, "worse by 0.01, within train.gate_max_loss 0.02"),
        (0.9, False, "worse by 0.05, more than train.gate_max_loss 0.02"),
    ]
    for champion, promote, margin in cases:
        decision = gate_decision(cfg, "auc_roc", {"auc_roc": 0.85}, champion, 1)
        expected = (met if promote else "") + versus.format(champion) + margin
        assert (decision.promote, decision.reason) == (promote, expected)


def test_a_gate_threshold_of_the_other_task_is_refused_naming_key_task_and_metrics(conf_dir):
    write(
        conf_dir / "reg.yaml",
        "inherits: base.yaml\ntrain: {task: regression, gate_thresholds: {auc_roc: 0.7, r2: 0.5}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "reg.yaml")
    assert str(err.value) == (
        f"{conf_dir / 'reg.yaml'}: train.gate_thresholds.auc_roc: auc_roc is not a regression "
        "metric (train.task: regression); use one of ['mae', 'r2', 'rmse']"
    )
    # With task auto the task is only known once train reads the label.
    auto = load_config(conf_dir / "reg.yaml", ["train.task=auto"])
    assert auto.train.gate_thresholds == {"auc_roc": 0.7, "r2": 0.5}


def test_a_classification_gate_takes_one_class_metrics_but_not_regression_ones(conf_dir):
    write(
        conf_dir / "cls.yaml",
        "inherits: base.yaml\n"
        "train: {task: classification, gate_thresholds: {recall_high: 0.8, f1: 0.5}}\n",
    )
    cfg = load_config(conf_dir / "cls.yaml")
    assert cfg.train.gate_thresholds == {"recall_high": 0.8, "f1": 0.5}
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "cls.yaml", ["train.gate_thresholds.rmse=3"])
    assert str(err.value) == (
        "--set train.gate_thresholds.rmse: rmse is not a classification metric (train.task: "
        "classification); use one of ['accuracy', 'auc_pr', 'auc_roc', 'f1', 'log_loss'], or one "
        "class's f1/precision/recall/auc_roc as <metric>_<class> (recall_high) for a multiclass "
        "label"
    )


@pytest.mark.parametrize(
    ("task", "metric", "accepted"),
    [
        ("regression", "auc_roc", "['mae', 'r2', 'rmse']"),
        ("classification", "r2", "['accuracy', 'auc_pr', 'auc_roc', 'f1', 'log_loss']"),
    ],
    ids=["regression", "classification"],
)
def test_a_tuning_metric_of_the_other_task_is_refused(conf_dir, task, metric, accepted):
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "local.yaml", [f"train.task={task}", f"train.metric={metric}"])
    assert str(err.value) == (
        f"--set train.metric: {metric} is not a {task} metric (train.task: {task}); use one of "
        f"{accepted}"
    )


def test_each_metric_of_the_other_task_is_one_line(conf_dir):
    write(
        conf_dir / "reg.yaml",
        "inherits: base.yaml\n"
        "train: {task: regression, metric: f1, gate_thresholds: {recall_high: 0.8, rmse: 9}}\n",
    )
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "reg.yaml", ["train.gate_thresholds.log_loss=0.3"])
    assert str(err.value).splitlines() == [
        f"{conf_dir / 'reg.yaml'}: train.metric: f1 is not a regression metric (train.task: "
        "regression); use one of ['mae', 'r2', 'rmse']",
        "--set train.gate_thresholds.log_loss: log_loss is not a regression metric (train.task: "
        "regression); use one of ['mae', 'r2', 'rmse']",
        f"{conf_dir / 'reg.yaml'}: train.gate_thresholds.recall_high: recall_high is not a "
        "regression metric (train.task: regression); use one of ['mae', 'r2', 'rmse']",
    ]
