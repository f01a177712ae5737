"""Config: layering, overrides, environment secrets and errors that name file and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

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


def test_set_overrides_win_and_keep_yaml_types(conf_dir):
    cfg = load_config(
        conf_dir / "local.yaml",
        ["spark.conf.spark.sql.shuffle.partitions=2", "sample_data.rows=500", "batch_id=b9"],
    )
    assert cfg.spark.conf == {
        "spark.sql.shuffle.partitions": "2",
        "spark.sql.adaptive.enabled": "true",
    }
    assert cfg.sample_data.rows == 500
    assert cfg.effective_batch_id() == "b9"


def test_batch_id_defaults_to_last_component_of_ingest_path(conf_dir):
    assert load_config(conf_dir / "local.yaml").effective_batch_id() == "batch_7"


def test_table_paths_live_under_storage_root(conf_dir):
    cfg = load_config(conf_dir / "local.yaml")
    assert cfg.storage.table_path("bronze") == str(conf_dir / "store" / "tables" / "bronze")


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


def test_unknown_key_names_file_and_key_path(conf_dir):
    write(conf_dir / "bad.yaml", "inherits: base.yaml\nclean: {dedupe: exact}\n")
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "bad.yaml")
    assert f"{conf_dir / 'bad.yaml'}: clean.dedupe: Extra inputs are not permitted" in str(
        err.value
    )


def test_wrong_type_names_file_and_key_path(conf_dir):
    with pytest.raises(ConfigError) as err:
        load_config(conf_dir / "local.yaml", ["sample_data.rows=many"])
    assert "--set sample_data.rows: sample_data.rows: Input should be a valid integer" in str(
        err.value
    )


def test_missing_required_value_is_named(tmp_path):
    write(tmp_path / "schema.yaml", SCHEMA)
    write(tmp_path / "c.yaml", f"schema: {tmp_path / 'schema.yaml'}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "c.yaml")
    assert "storage: Field required" in str(err.value)


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
    assert "--set schema: schema: schema file /nope/schema.yaml not found" in str(err.value)


def test_inherits_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "inherits: b.yaml\n")
    write(tmp_path / "b.yaml", "inherits: a.yaml\n")
    with pytest.raises(ConfigError, match="'inherits' makes a cycle"):
        load_config(tmp_path / "a.yaml")


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


def test_project_config_files_are_valid(project_root):
    for name in ("local.yaml", "base.yaml"):
        cfg = load_config(project_root / "conf" / name)
        assert cfg.table_schema.name == "transactions"
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
