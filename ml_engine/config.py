"""Typed, validated configuration.

A config is a stack of YAML files plus ``--set key=value`` overrides:

* a file may name the file it builds on with ``inherits:``: a path relative to the file that
  says it, or ``ml-engine:defaults`` (the engine's packaged, dataset-agnostic defaults) or
  ``ml-engine:sample`` (the config of the sample transactions of ``ml-engine demo``); the chain
  is read base first, each later file overriding keys of the earlier ones (mappings merge key
  by key, everything else is replaced);
* ``key: null`` in a later file removes the inherited value (the key falls back to the engine's
  default: empty for mappings and lists such as ``clean.case``); ``key: !replace {...}``
  replaces an inherited mapping instead of merging into it;
* ``--set a.b.c=value`` overrides one key last; the value is converted by the type of the
  field it sets (``--set batch_id=2026-11-28`` is the string ``2026-11-28``, ``--set
  sample_data.rows=500`` the number 500, ``--set features.log=[a, b]`` a list;
  ``--set key=null`` resets the key to its default);
* a relative path inside a config file resolves against that file's directory; a relative
  path given with ``--set`` against the working directory;
* ``${NAME}`` or ``${NAME:-default}`` anywhere in a string value is replaced by the
  environment variable NAME; secrets belong there, never in files. The effective config
  written by :func:`dump_config` keeps the placeholders, never the values.

Every error names the file (or ``--set``) that set the offending key and its dotted key path,
one line per problem, and is raised before any Spark session exists.

Example::

    cfg = load_config("conf/local.yaml", overrides=["batch_id=2026-11-28"])
    cfg.storage.table_path("bronze")
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pyspark.sql import types as T

from ml_engine.schemas import (
    META_COLUMNS,
    ROLE_CATEGORICAL,
    ROLE_NUMERIC,
    NumberText,
    TableSchema,
    csv_name,
    load_schema,
    parse_type,
    unusable_name,
)

TABLE_NAMES = (
    "bronze",
    "quarantine",
    "silver",
    "dq_metrics",
    "fill_values",
    "outlier_stats",
    "features",
    "training_set",
    "predictions",
    "drift_metrics",
    # The run log: which run completed which batch of which table (ml_engine.catalog).
    "job_runs",
)


class ConfigError(ValueError):
    """A config file, override or reference is invalid; the message says where and why, one
    line per problem."""


class PreflightError(ConfigError):
    """A run cannot succeed, as seen before Spark starts (a missing input, a role the schema
    lacks, an unreachable tracking server); one line per problem."""


class StrictModel(BaseModel):
    """Base for every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def schema_errors(self, schema: TableSchema, path: str) -> list[tuple[str, str]]:
        """Checks this section against the input schema.

        Args:
            schema: the loaded input schema.
            path: dotted key path of this section (``"clean"``).

        Returns:
            ``(key path, message)`` pairs, empty when the section fits the schema.
        """
        return []


def _missing_columns(
    schema: TableSchema, path: str, columns: Iterable[str], extra: Iterable[str] = ()
) -> list[tuple[str, str]]:
    """Errors for each referenced column that is neither in the schema nor in ``extra``."""
    known = set(schema.names) | set(extra)
    return [
        (f"{path}", f"column '{c}' is not in schema '{schema.name}' ({schema.source})")
        for c in columns
        if c not in known
    ]


# --------------------------------------------------------------------------- foundation


class StorageConfig(StrictModel):
    """Where tables live: ``<root>/tables/<name>`` unless ``tables`` maps a name to a path."""

    root: str
    tables: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_tables(self) -> StorageConfig:
        unknown = sorted(set(self.tables) - set(TABLE_NAMES))
        if unknown:
            raise ValueError(f"unknown table name(s) {unknown}; known: {list(TABLE_NAMES)}")
        return self

    def table_path(self, name: str) -> str:
        """Absolute path (or URI) of table ``name``."""
        if name in self.tables:
            return self.tables[name]
        return (
            str(Path(self.root) / "tables" / name)
            if "://" not in self.root
            else (f"{self.root.rstrip('/')}/tables/{name}")
        )

    def path(self, *parts: str) -> str:
        """A path below the storage root, for models, reports and other non-table outputs."""
        if "://" in self.root:
            return "/".join([self.root.rstrip("/"), *parts])
        return str(Path(self.root, *parts))


class DeltaConfig(StrictModel):
    """Which Delta implementation handles the transaction log (see ``ml_engine.tables``)."""

    backend: Literal["auto", "spark", "rs"] = "auto"


class SparkConfig(StrictModel):
    """Spark settings, kept apart from job parameters.

    ``master`` applies only when the job is not launched by spark-submit (which sets its own).
    ``conf`` entries are applied unless spark-submit already set the same key.
    """

    master: str = "local[*]"
    app_name: str = "ml-engine"
    conf: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _stringify_conf(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("conf"), dict):
            data = dict(data)
            data["conf"] = {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in data["conf"].items()
            }
        return data


class MlflowConfig(StrictModel):
    """MLflow tracking: a server URI or ``sqlite:///path`` file store; secrets via ``${ENV}``.

    ``tracking_uri`` defaults to the ``MLFLOW_TRACKING_URI`` environment variable, else
    ``sqlite:///<storage root>/mlflow.db``; ``artifact_location`` (where a new experiment
    keeps run artifacts) to ``<storage root>/mlartifacts`` with a sqlite store, else the
    server's default.
    """

    tracking_uri: str | None = None
    artifact_location: str | None = None
    experiment: str = "ml-engine"
    registered_model: str = "ml-engine-model"


# Charsets Spark's CSV and JSON readers accept (unless spark.sql.legacy.javaCharsets is set).
SPARK_CHARSETS = ("utf-8", "utf-16", "utf-16be", "utf-16le", "utf-32", "us-ascii", "iso-8859-1")


class CsvOptions(StrictModel):
    """How ``ingest`` reads CSV.

    Attributes:
        header: each file starts with one header line. Fields are taken by position, except
            in a file whose header names every schema column in another order or beside
            undeclared columns: it is read by its header (undeclared columns left out).
        delimiter: the field separator (Spark's ``sep``).
        encoding: one of :data:`SPARK_CHARSETS`.
        quote: the character that quotes a field (``""`` turns quoting off).
        escape: the character that escapes a quote inside a quoted field. The default, equal
            to ``quote``, is RFC 4180: a quote inside a quoted field is doubled
            (``"gro""cery"`` is ``gro"cery``). Set ``"\\\\"`` for files written as
            ``"gro\\"cery"``.
        multiline: a quoted field may hold line breaks (RFC 4180), so one record can span
            several physical lines (Spark's ``multiLine``). Spark then reads each file in one
            task: a batch of few large files is parsed by few cores (on one 1M-line file and
            2 cores, about as long as the line reader, which splits the file in two tasks;
            a single file of many GB takes one core's time). ``false`` splits files into
            parallel tasks but reads every physical line as a record: a quoted line break
            cuts the record in two fragments, and a fragment can even have the right number
            of fields and load as a wrong row. The default is ``true``: correct records
            first; set ``false`` for large single files known to hold no quoted line
            breaks. UTF-16 and UTF-32 files are only read correctly with ``true``.
        decimal: the decimal separator of numbers in CSV files. With ``","`` a number is
            written ``1234,5`` or, with ``.`` grouping thousands, ``1.234,5``; a value of a
            numeric column written otherwise (``1.5``) does not parse and its row goes to
            quarantine.
        thousands: the character that groups thousands in numbers: ``","`` reads
            ``1,234,567.5``, ``" "`` reads ``1 234,5`` (blanks or no-break spaces), ``"'"``
            reads ``1'234.5``; ``""`` for none. Unset, it is ``.`` with a decimal comma and
            none with a decimal point. A number need not be grouped (``1234.5`` reads too),
            but a group of other than three digits (``1,23.5``) does not parse.
        strip_signs: leave out a currency sign or code before or after a number (``$5``,
            ``-$5``, ``5 €``, ``CHF 5``: one of ``$€£¥₹`` or USD, EUR, GBP, CHF, JPY, CNY,
            INR, CAD, AUD) and a percent sign after it (``12.5%`` reads as 12.5). Off by
            default: numbers written as Spark casts them are read at the cost of a cast.
            ``decimal``, ``thousands`` and ``strip_signs`` also apply to numbers written as
            text in JSON and Parquet input, and to ``clean.coerce``.
    """

    header: bool = True
    delimiter: str = Field(default=",", min_length=1)
    encoding: str = "utf-8"
    quote: str = Field(default='"', max_length=1)
    escape: str = Field(default='"', max_length=1)
    multiline: bool = True
    decimal: Literal[".", ","] = "."
    thousands: Literal[",", ".", " ", "'", ""] | None = None
    strip_signs: bool = False

    @property
    def numbers(self) -> NumberText:
        """How numbers are written in the files (separators, signs)."""
        return NumberText(self.decimal, self.thousands, self.strip_signs)

    @model_validator(mode="after")
    def _separators_differ(self) -> CsvOptions:
        if self.thousands == self.decimal:
            raise ValueError(
                f"thousands {self.thousands!r} is also the decimal separator; a number has "
                f"one of each: set thousands to another character or to '' for none"
            )
        return self

    @model_validator(mode="after")
    def _known_encoding(self) -> CsvOptions:
        if self.encoding.lower() not in SPARK_CHARSETS:
            raise ValueError(
                f"encoding {self.encoding!r} is not one Spark reads; use one of "
                f"{list(SPARK_CHARSETS)} (latin-1 is iso-8859-1)"
            )
        if not self.multiline and self.encoding.lower().startswith(("utf-16", "utf-32")):
            raise ValueError(
                f"encoding {self.encoding!r} needs multiline: true (the line reader splits "
                "files on the byte of '\\n', which is half of a character in this encoding); "
                "set multiline: true or convert the files to utf-8"
            )
        return self


class IngestConfig(StrictModel):
    """Raw input to ``bronze`` and ``quarantine``.

    ``path`` is a file, a directory or a glob of files of one ``format``.
    """

    path: str | None = None
    format: Literal["csv", "json", "parquet"] = "csv"
    csv: CsvOptions = Field(default_factory=CsvOptions)
    timestamp_format: str = "yyyy-MM-dd HH:mm:ss"
    date_format: str = "yyyy-MM-dd"
    # More rejected rows than this share of the batch: bronze is not written, the job fails.
    max_rejected_fraction: float = Field(default=0.1, ge=0, le=1)


class SampleDataConfig(StrictModel):
    """The deterministic sample data generator (``ml-engine generate-sample-data``)."""

    rows: int = Field(default=20_000, ge=10)
    current_rows: int | None = Field(default=None, ge=10)
    seed: int = 42
    files: int = Field(default=2, ge=1)


# --------------------------------------------------------------------------- clean


class CleanRule(StrictModel):
    """One data-quality rule on ``silver`` candidates.

    ``type``: ``range`` (``min``/``max``, inclusive; on date/timestamp columns the bounds are
    epoch seconds), ``allowed`` (``values``), ``pattern`` (``pattern``, a Java regex that must
    match the whole value) or ``expression`` (``expr``, a SQL boolean over columns that must
    hold). A null value (or an expression that evaluates to null) is not a violation: nulls are
    the business of ``clean.missing``. ``action``: ``warn`` counts violations, ``drop`` sends
    the row to quarantine with the rule as reason, ``fail`` stops the job before anything is
    written. Names are unique; the prefix ``schema:`` is reserved for the rules made from the
    schema's constraints (``schema:<column>:range|allowed|pattern``).
    """

    name: str = Field(min_length=1)
    type: Literal["range", "allowed", "pattern", "expression"]
    column: str | None = None
    min: float | None = None
    max: float | None = None
    values: list[Any] | None = None
    pattern: str | None = None
    expr: str | None = None
    action: Literal["warn", "drop", "fail"] = "drop"

    @model_validator(mode="after")
    def _fields_for_type(self) -> CleanRule:
        need = {
            "range": ("column",),
            "allowed": ("column", "values"),
            "pattern": ("column", "pattern"),
            "expression": ("expr",),
        }[self.type]
        missing = [k for k in need if getattr(self, k) is None]
        if missing:
            raise ValueError(f"rule '{self.name}' of type {self.type} needs {missing}")
        if self.type == "range" and self.min is None and self.max is None:
            raise ValueError(f"rule '{self.name}' of type range needs min and/or max")
        if self.type == "range" and self.min is not None and self.max is not None:
            if self.min > self.max:
                raise ValueError(
                    f"rule '{self.name}': min {self.min} is greater than max {self.max}"
                )
        if self.type == "pattern":
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(
                    f"rule '{self.name}': pattern {self.pattern!r} is not a valid regex: {exc}"
                ) from None
        return self


class MissingValuePolicy(StrictModel):
    """What to do with nulls of one column.

    ``drop``: the row goes to quarantine; ``mean`` / ``median`` (numeric columns; rounded
    half-up for integral types; the median interpolates between the two middle values, see
    ``ml_engine.quantiles``) / ``mode``
    (the most frequent value; ties go to the smallest value) are learned from the rows that
    reach ``silver``; ``constant`` fills ``value``.
    """

    strategy: Literal["drop", "mean", "median", "mode", "constant"]
    value: Any = None

    @model_validator(mode="after")
    def _value_for_constant(self) -> MissingValuePolicy:
        if self.strategy == "constant" and self.value is None:
            raise ValueError("strategy constant needs a value")
        if self.strategy != "constant" and self.value is not None:
            raise ValueError(f"value is only used by strategy constant, not {self.strategy}")
        return self


class CleanConfig(StrictModel):
    """``bronze`` -> ``silver``: dedup, standardisation, missing values, rules, metrics.

    ``dedup``: ``latest_by_key`` keeps, per record id (the schema's ``record_id`` column, else
    its ``key``), the row with the latest event time (ties: latest ``ingested_at``, then the
    greatest ``source_file``), within the batch and across the batches of silver; ``exact``
    removes rows equal in every schema column; ``none``.
    ``trim`` strips string columns (a blank string becomes null); ``case`` and ``mappings``
    (raw spelling -> canonical spelling, applied after trim and case) apply to string columns.
    ``coerce`` casts columns to another type (a schema type name); a value that does not cast
    becomes null and is counted. ``quantiles`` are reported per numeric column in
    ``dq_metrics``. ``impute_from`` names the batch whose learned fill values (``mean``,
    ``median``, ``mode``) every other batch gets: the training batch, so that a batch to score
    is filled as the model's training data was, not with its own statistics; that batch must
    be cleaned first. Unset, each batch learns its own.
    """

    dedup: Literal["latest_by_key", "exact", "none"] = "latest_by_key"
    trim: bool = True
    case: dict[str, Literal["lower", "upper"]] = Field(default_factory=dict)
    mappings: dict[str, dict[str, str]] = Field(default_factory=dict)
    coerce: dict[str, str] = Field(default_factory=dict)
    missing: dict[str, MissingValuePolicy] = Field(default_factory=dict)
    impute_from: str | None = None
    rules: list[CleanRule] = Field(default_factory=list)
    # Constraints declared in the schema file become rules with this action.
    schema_constraints_action: Literal["warn", "drop", "fail", "ignore"] = "drop"
    quantiles: list[float] = Field(default_factory=lambda: [0.05, 0.25, 0.5, 0.75, 0.95])
    fail_sample_size: int = Field(default=5, ge=1)

    @model_validator(mode="after")
    def _rules_and_quantiles(self) -> CleanConfig:
        names = [r.name for r in self.rules]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(
                f"rule name(s) {repeated} are used more than once; names must be unique"
            )
        reserved = [n for n in names if n.startswith("schema:")]
        if reserved:
            raise ValueError(
                f"rule name(s) {reserved}: the prefix 'schema:' is reserved for schema constraints"
            )
        bad = [q for q in self.quantiles if not 0 <= q <= 1]
        if bad:
            raise ValueError(f"quantiles {bad} are outside [0, 1]")
        if len(set(self.quantiles)) != len(self.quantiles):
            raise ValueError(f"quantiles {self.quantiles} repeat a value")
        return self

    def column_type(self, schema: TableSchema, column: str) -> T.DataType:
        """The Spark type ``column`` has after coercion (its schema type unless coerced).

        Raises:
            KeyError: the column is not in the schema.
        """
        if column in self.coerce:
            return parse_type(self.coerce[column])
        return schema.column(column).spark_type

    def silver_schema(self, schema: TableSchema) -> TableSchema:
        """``schema`` with the types of silver: each column ``coerce`` casts has its new type
        (a coerce to an unknown type, which the clean check names, leaves the column as is)."""
        columns = []
        for c in schema.columns:
            if c.name in self.coerce:
                try:
                    target = self.column_type(schema, c.name)
                    c = dataclasses.replace(c, type=self.coerce[c.name], spark_type=target)
                except ValueError:
                    pass
            columns.append(c)
        return dataclasses.replace(schema, columns=tuple(columns))

    def schema_errors(self, schema: TableSchema, path: str) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []
        for key, cols in (
            ("case", self.case),
            ("mappings", self.mappings),
            ("coerce", self.coerce),
            ("missing", self.missing),
        ):
            for c in cols:
                miss = _missing_columns(schema, f"{path}.{key}.{c}", [c])
                errors += miss
                if miss or key not in ("case", "mappings"):
                    continue
                if schema.column(c).type != "string":
                    errors.append(
                        (
                            f"{path}.{key}.{c}",
                            f"{key} only applies to string columns, '{c}' "
                            f"has type {schema.column(c).type}",
                        )
                    )
        for c, target in self.coerce.items():
            try:
                parse_type(target)
            except ValueError as exc:
                errors.append((f"{path}.coerce.{c}", str(exc)))

        def ctype(c: str) -> T.DataType | None:
            """The column's type after coercion; None when an error above already covers it."""
            try:
                return self.column_type(schema, c)
            except (KeyError, ValueError):
                return None

        def numeric(c: str) -> bool:
            return isinstance(ctype(c), T.NumericType)

        if self.dedup == "latest_by_key" and "dedup" in self.model_fields_set:
            if schema.record_id is None and schema.key is None:
                errors.append(
                    (
                        f"{path}.dedup",
                        f"latest_by_key needs a column with role record_id or key "
                        f"in schema '{schema.name}' ({schema.source}); declare one or use exact "
                        f"or none",
                    )
                )
        for i, rule in enumerate(self.rules):
            rpath = f"{path}.rules.{i}"
            if rule.column is None:
                continue
            missing = _missing_columns(schema, f"{rpath}.column", [rule.column])
            if missing:
                errors += missing
                continue
            dtype = ctype(rule.column)
            if dtype is None:
                continue
            tname = dtype.simpleString()
            if rule.type == "range" and not isinstance(
                dtype, (T.NumericType, T.DateType, T.TimestampType)
            ):
                errors.append(
                    (
                        f"{rpath}.column",
                        f"rule '{rule.name}' is a range rule but column "
                        f"'{rule.column}' has type {tname}; use a numeric column",
                    )
                )
            if rule.type == "pattern" and not isinstance(dtype, T.StringType):
                errors.append(
                    (
                        f"{rpath}.column",
                        f"rule '{rule.name}' is a pattern rule but column "
                        f"'{rule.column}' has type {tname}; patterns apply to string columns",
                    )
                )
            if rule.type == "allowed" and numeric(rule.column):
                bad = [
                    v
                    for v in rule.values or []
                    if isinstance(v, bool) or not isinstance(v, (int, float))
                ]
                if bad:
                    errors.append(
                        (
                            f"{rpath}.values",
                            f"rule '{rule.name}': column '{rule.column}' has "
                            f"type {tname} but values {bad} are not numbers",
                        )
                    )
        for c, policy in self.missing.items():
            if ctype(c) is None:
                continue
            tname = ctype(c).simpleString()
            if policy.strategy in ("mean", "median") and not numeric(c):
                errors.append(
                    (
                        f"{path}.missing.{c}.strategy",
                        f"{policy.strategy} imputation needs "
                        f"a numeric column, '{c}' has type {tname}",
                    )
                )
            if (
                policy.strategy == "constant"
                and numeric(c)
                and (isinstance(policy.value, bool) or not isinstance(policy.value, (int, float)))
            ):
                errors.append(
                    (
                        f"{path}.missing.{c}.value",
                        f"column '{c}' has type {tname} but the "
                        f"constant {policy.value!r} is not a number",
                    )
                )
        return errors


# --------------------------------------------------------------------------- outliers


class DetectorConfig(StrictModel):
    """One outlier detector (see ``ml_engine.outliers``).

    ``method``: ``iqr`` (a value is an outlier outside ``Q1 - k*IQR`` .. ``Q3 + k*IQR``),
    ``mad`` (robust z ``0.6745 * (x - median) / MAD`` beyond ``threshold``), ``zscore``
    (``(x - mean) / std`` beyond ``threshold``) or ``mahalanobis`` (distance of the
    standardised row from the mean beyond ``threshold``; ``sqrt(chi2.ppf(0.999, n_columns))``
    is a principled choice). ``columns`` defaults to the schema's numeric features.
    """

    method: Literal["iqr", "mad", "zscore", "mahalanobis"]
    columns: list[str] | None = None
    # iqr: fences at Q1 - k*IQR and Q3 + k*IQR.
    k: float = Field(default=1.5, gt=0)
    # mad (robust z), zscore and mahalanobis: a row is an outlier above this score.
    threshold: float = Field(default=3.5, gt=0)

    @model_validator(mode="after")
    def _columns_listed_once(self) -> DetectorConfig:
        if self.columns is not None:
            if not self.columns:
                raise ValueError("columns is empty; list numeric columns or leave it out")
            twice = sorted({c for c in self.columns if self.columns.count(c) > 1})
            if twice:
                raise ValueError(f"columns lists {twice} more than once")
        return self


class OutliersConfig(StrictModel):
    """The outlier detector: fitted on a silver batch by ``detect_outliers``, applied by
    ``build_features`` (flags, capped values or outliers left out; ``quarantine`` for drop)."""

    # [] detects no outliers (data without numeric columns): the outlier columns stay null.
    detectors: list[DetectorConfig] = Field(
        default_factory=lambda: [DetectorConfig(method="iqr", k=3.0)]
    )
    policy: Literal["flag", "cap", "drop"] = "flag"
    # auto: fit on the first batch (no detector saved yet) and reuse the saved detector for
    # every later batch; always: fit on this batch and save; never: the saved one or fail.
    refit: Literal["auto", "always", "never"] = "auto"
    # Where the fitted detectors are saved (default <storage root>/models/outliers).
    model_path: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _refit_from_bool(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("refit"), bool):
            data = {**data, "refit": "always" if data["refit"] else "never"}
        return data

    def schema_errors(self, schema: TableSchema, path: str) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []
        for i, det in enumerate(self.detectors):
            p = f"{path}.detectors.{i}.columns"
            if det.columns is None and not schema.numeric_features:
                errors.append(
                    (
                        p,
                        f"not set, and schema '{schema.name}' ({schema.source}) has "
                        f"no numeric_feature columns to default to; list the columns, or set "
                        f"outliers.detectors: [] to detect no outliers",
                    )
                )
            for c in det.columns or []:
                miss = _missing_columns(schema, p, [c])
                errors += miss
                if not miss and not schema.column(c).is_numeric:
                    errors.append(
                        (
                            p,
                            f"column '{c}' has type {schema.column(c).type}; "
                            f"outlier detectors need numeric columns",
                        )
                    )
        return errors


# --------------------------------------------------------------------------- features


class WindowAggConfig(StrictModel):
    """Per-entity aggregates over the last ``days`` days as of each event.

    For an event of entity ``k`` at time ``t`` the window holds the events of ``k`` with event
    time in ``(t - days, t]``: the current event (and any other event of ``k`` at the same
    instant) is included, an event exactly ``days`` days earlier is not. ``columns`` are
    numeric schema columns or names of ``features.expressions``; every column gets every
    aggregate for every ``days``, named ``<column>_<agg>_<days>d``. ``count`` counts the
    non-null values of the column, so ``mean = sum / count``.
    """

    columns: list[str] = Field(default_factory=list)
    days: list[int] = Field(default_factory=lambda: [7, 30])
    aggs: list[Literal["count", "sum", "mean", "max", "min"]] = Field(
        default_factory=lambda: ["count", "sum", "mean", "max"]
    )

    @model_validator(mode="after")
    def _positive_unique(self) -> WindowAggConfig:
        if any(d < 1 for d in self.days):
            raise ValueError(f"days {self.days}: every window must be at least 1 day")
        if len(set(self.days)) != len(self.days) or len(set(self.aggs)) != len(self.aggs):
            raise ValueError("days and aggs must not repeat a value")
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"columns {self.columns} repeat a column")
        return self


class UnivariateConfig(StrictModel):
    """MLlib's ``UnivariateFeatureSelector``: the test follows from the two types.

    continuous features + categorical label: ANOVA F-test; categorical + categorical:
    chi-squared; continuous + continuous: F-value of a linear regression. ``threshold`` means
    what Spark's ``selectionThreshold`` means for ``selection_mode``: the number of features
    (numTopFeatures), a fraction of them (percentile) or the p-value / error-rate bound
    (fpr, fdr, fwe). Unset: Spark's default (50, 0.1, 0.05).
    """

    feature_type: Literal["categorical", "continuous"] = "continuous"
    label_type: Literal["categorical", "continuous"] = "categorical"
    selection_mode: Literal["numTopFeatures", "percentile", "fpr", "fdr", "fwe"] = "numTopFeatures"
    threshold: float | None = None

    @model_validator(mode="after")
    def _threshold_fits_mode(self) -> UnivariateConfig:
        t = self.threshold
        if t is None:
            return self
        if self.selection_mode == "numTopFeatures" and (t < 1 or t != int(t)):
            raise ValueError(f"threshold {t}: numTopFeatures needs a whole number >= 1")
        if self.selection_mode != "numTopFeatures" and not 0 <= t <= 1:
            raise ValueError(f"threshold {t}: {self.selection_mode} needs a value in [0, 1]")
        return self


class SelectionConfig(StrictModel):
    """Optional feature selection with MLlib's selectors (see ``ml_engine.features.select_features``).

    ``variance_threshold``: drop features whose sample variance is not above it (0 drops
    constant columns). ``univariate``: then keep the features a univariate test selects.
    ``columns``: the candidate (numeric) columns of the training set; default every numeric
    feature column.
    """

    variance_threshold: float | None = Field(default=None, ge=0)
    univariate: UnivariateConfig | None = None
    columns: list[str] | None = None

    @property
    def enabled(self) -> bool:
        return self.variance_threshold is not None or self.univariate is not None


class FeaturesConfig(StrictModel):
    """``silver`` -> ``features`` keyed by entity + event time (see ``ml_engine.features``).

    Output names: ``expressions`` and ``ratios`` use their keys; ``log`` gives ``log_<col>``;
    ``buckets`` ``<col>_bucket``; ``date_parts`` ``<col>_<part>``; ``windows``
    ``<col>_<agg>_<days>d``. ``log_negative``: ``signed`` computes ``sign(x) * log1p(|x|)``
    (equal to ``log1p(x)`` for x >= 0), ``null`` gives null for negative values. ``buckets``
    maps a column to increasing split points: bucket ``i`` is ``[s_i, s_i+1)``, the last one
    also includes its upper split, values outside (and NaN) give null; use ``-.inf``/``.inf``
    for open ends. ``passthrough``: silver columns copied unchanged (default: the schema's
    numeric and categorical features). ``start``/``end`` (ISO date or timestamp, start
    inclusive, end exclusive) select the events to (re)build by event time instead of the
    run's batch. ``rebuild`` rebuilds the feature rows of every batch and replaces the whole
    table, its columns included: for changed definitions (a one-off, given with ``--set``).
    """

    expressions: dict[str, str] = Field(default_factory=dict)
    log: list[str] = Field(default_factory=list)
    log_negative: Literal["signed", "null"] = "signed"
    ratios: dict[str, list[str]] = Field(default_factory=dict)
    buckets: dict[str, list[float]] = Field(default_factory=dict)
    date_parts: dict[str, list[Literal["year", "month", "day", "dayofweek", "hour"]]] = Field(
        default_factory=dict
    )
    windows: WindowAggConfig = Field(default_factory=WindowAggConfig)
    passthrough: list[str] | None = None
    # Re-running a date range replaces the rows of that range.
    start: str | None = None
    end: str | None = None
    rebuild: bool = False
    selection: SelectionConfig = Field(default_factory=SelectionConfig)

    @property
    def by_batch(self) -> bool:
        """The run builds the rows of its batch (no ``start``/``end``, no ``rebuild``)."""
        return self.start is None and self.end is None and not self.rebuild

    @model_validator(mode="after")
    def _well_formed(self) -> FeaturesConfig:
        if self.rebuild and (self.start is not None or self.end is not None):
            raise ValueError(
                "rebuild rebuilds the features of every batch; leave start and end unset"
            )
        for key, names in (("expressions", self.expressions), ("ratios", self.ratios)):
            for name in names:
                unusable = unusable_name(name)
                if unusable:
                    raise ValueError(
                        f"{key}: feature {name!r}: {unusable}; name it e.g. {csv_name(name)!r}"
                    )
        for name, pair in self.ratios.items():
            if len(pair) != 2:
                raise ValueError(f"ratios.{name}: give [numerator, denominator], got {pair}")
        for col, splits in self.buckets.items():
            if len(splits) < 2 or any(a >= b for a, b in zip(splits[:-1], splits[1:], strict=True)):
                raise ValueError(
                    f"buckets.{col}: splits {splits} must be at least 2 strictly increasing numbers"
                )
        bounds = {}
        for key in ("start", "end"):
            value = getattr(self, key)
            if value is not None:
                try:
                    bounds[key] = datetime.fromisoformat(value)
                except ValueError:
                    raise ValueError(
                        f"{key}: {value!r} is not an ISO date or timestamp (2026-01-31 or "
                        f"2026-01-31 12:00:00)"
                    ) from None
        if len(bounds) == 2 and bounds["start"] >= bounds["end"]:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    def output_names(self) -> list[str]:
        """Names of the engineered columns, in output order."""
        names = list(self.expressions)
        names += [f"log_{c}" for c in self.log]
        names += list(self.ratios)
        names += [f"{c}_bucket" for c in self.buckets]
        names += [f"{c}_{p}" for c, parts in self.date_parts.items() for p in parts]
        names += [
            f"{c}_{agg}_{d}d"
            for c in self.windows.columns
            for d in self.windows.days
            for agg in self.windows.aggs
        ]
        return names

    def schema_errors(self, schema: TableSchema, path: str) -> list[tuple[str, str]]:
        errors: list[tuple[str, str]] = []

        def numeric(p: str, cols: Iterable[str], what: str) -> None:
            for c in cols:
                miss = _missing_columns(schema, p, [c])
                errors.extend(miss)
                if not miss and not schema.column(c).is_numeric:
                    errors.append(
                        (
                            p,
                            f"column '{c}' has type {schema.column(c).type}; {what} needs a "
                            f"numeric column",
                        )
                    )

        numeric(f"{path}.log", self.log, "log")
        for name, pair in self.ratios.items():
            numeric(f"{path}.ratios.{name}", pair, "a ratio")
        for c in self.buckets:
            numeric(f"{path}.buckets.{c}", [c], "bucketing")
        for c in self.date_parts:
            p = f"{path}.date_parts.{c}"
            miss = _missing_columns(schema, p, [c])
            errors += miss
            if not miss and schema.column(c).type not in ("timestamp", "date"):
                errors.append(
                    (
                        p,
                        f"column '{c}' has type {schema.column(c).type}; date parts need a "
                        f"timestamp or date column",
                    )
                )
        numeric(
            f"{path}.windows.columns",
            [c for c in self.windows.columns if c not in self.expressions],
            "a window aggregate",
        )
        if self.windows.columns and schema.key is None:
            errors.append(
                (
                    f"{path}.windows.columns",
                    f"window aggregates need a column with role key in schema '{schema.name}' "
                    f"({schema.source})",
                )
            )
        errors += _missing_columns(schema, f"{path}.passthrough", self.passthrough or [])
        taken = {c for c in schema.names} | set(META_COLUMNS)
        seen: set[str] = set()
        for name in self.output_names():
            if name in taken or name in seen:
                errors.append(
                    (
                        path,
                        f"engineered column '{name}' clashes with an input column or another "
                        f"engineered column; rename it",
                    )
                )
            seen.add(name)
        return errors


class TrainingSetConfig(StrictModel):
    """Label events + ``features`` -> ``training_set``, point-in-time correct.

    Labels come from ``labels_path`` (a Delta table) or, by default, from ``silver``. The
    column names default to the schema's roles: ``label_id`` record_id, ``key`` key,
    ``label_time`` event_time, ``label`` label. ``feature_columns``: the feature table columns
    to join (default: all except ids, times, label and batch_id).
    """

    labels_path: str | None = None
    key: str | None = None
    label_time: str | None = None
    label: str | None = None
    label_id: str | None = None
    feature_columns: list[str] | None = None

    def schema_errors(self, schema: TableSchema, path: str) -> list[tuple[str, str]]:
        if self.labels_path is not None:
            # A separate label table is not described by the schema; checked when read.
            return []
        errors: list[tuple[str, str]] = []
        for key in ("key", "label_time", "label", "label_id"):
            value = getattr(self, key)
            if value is not None:
                errors += _missing_columns(schema, f"{path}.{key}", [value])
        return errors


# --------------------------------------------------------------------------- train, score, drift

# Metric names of the training job, and whether a larger value is better.
CLASSIFICATION_METRICS = {
    "auc_roc": True,
    "auc_pr": True,
    "accuracy": True,
    "f1": True,
    "log_loss": False,
}
REGRESSION_METRICS = {"rmse": False, "mae": False, "r2": True}
METRIC_HIGHER_IS_BETTER = {**CLASSIFICATION_METRICS, **REGRESSION_METRICS}
# Metrics of one class (multiclass tasks), named <metric>_<class>: recall_high.
PER_CLASS_METRICS = ("f1", "precision", "recall", "auc_roc")
# How messages listing the metrics a gate takes name the per-class ones.
PER_CLASS_HINT = (
    f", or one class's {'/'.join(PER_CLASS_METRICS)} as <metric>_<class> (recall_high) for a "
    "multiclass label"
)
_PER_CLASS = re.compile(rf"^({'|'.join(PER_CLASS_METRICS)})_(.+)$")


def higher_is_better(metric: str) -> bool | None:
    """Whether a larger value of ``metric`` is better; None for a name that is no metric."""
    if metric in METRIC_HIGHER_IS_BETTER:
        return METRIC_HIGHER_IS_BETTER[metric]
    return True if per_class_metric(metric) else None


def per_class_metric(metric: str) -> tuple[str, str] | None:
    """``(metric, class)`` of a per-class metric name such as ``recall_high``, else None (no
    name of :data:`METRIC_HIGHER_IS_BETTER` has this form)."""
    found = _PER_CLASS.match(metric)
    return (found.group(1), found.group(2)) if found else None


ESTIMATORS = ("auto", "logistic_regression", "linear_regression", "random_forest", "gbt", "xgboost")


class SplitConfig(StrictModel):
    """How the training set is split into train and held-out test rows.

    ``random``: a row is a test row when a hash of its record id (else of all its columns) and
    ``seed`` falls in the ``test_fraction`` share; the split depends only on the rows, never on
    partitioning, so it is the same on every run and cluster. ``time``: rows with a label time
    at or after ``boundary`` are the test rows; without ``boundary``, it is the label time
    below which ``1 - test_fraction`` of the rows fall (logged on the run).
    """

    method: Literal["random", "time"] = "random"
    test_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 42
    boundary: str | None = None

    @model_validator(mode="after")
    def _boundary_is_a_time(self) -> SplitConfig:
        if self.boundary is not None:
            if self.method != "time":
                raise ValueError("boundary is only used by method time")
            try:
                datetime.fromisoformat(self.boundary)
            except ValueError:
                raise ValueError(
                    f"boundary {self.boundary!r} is not an ISO date or timestamp (2026-01-31)"
                ) from None
        return self


class TuningConfig(StrictModel):
    """Hyperparameter search over ``train.grid``.

    ``method``: ``cross_validation`` (``folds`` folds, assigned by a hash of the row so they are
    the same on every run), ``train_validation_split`` (``train_ratio`` of the training rows
    fit, the rest validate) or ``none`` (fit once with ``train.params``; the default when
    ``train.grid`` is empty). ``parallelism``: how many grid points Spark fits at once.
    """

    method: Literal["auto", "cross_validation", "train_validation_split", "none"] = "auto"
    folds: int = Field(default=3, ge=2)
    train_ratio: float = Field(default=0.75, gt=0, lt=1)
    parallelism: int = Field(default=1, ge=1)


class TrainConfig(StrictModel):
    """``training_set`` -> an MLlib ``PipelineModel`` tracked and registered in MLflow.

    ``task``: ``auto`` is classification for a string, boolean or integral label and regression
    for a floating-point or decimal label. ``estimator``: ``auto`` is logistic regression
    (classification) or linear regression; ``random_forest``, ``gbt`` and ``xgboost`` serve
    both tasks. ``params`` are fixed estimator parameters and ``grid`` the values to search,
    both by Spark's (or XGBoost's) parameter names. ``numeric_features`` /
    ``categorical_features`` default to the training set's numeric / string columns other than
    ids, times, label and versions. ``impute``: the statistic that fills nulls left in numeric
    features. ``scaling``: ``standard`` or ``minmax`` after assembly. ``outlier_features``: add
    the saved outlier detector (``detect_outliers``) as a stage, its flag and score becoming
    features. ``max_categories``: the most frequent categories of each categorical feature that
    get their own one-hot slot; the others, nulls and categories never seen in training share
    one "unknown" slot. ``class_weight: balanced`` weighs each class by ``n / (classes *
    n_class)`` of
    the training split. ``metric`` is the tuning and gate metric (default ``auc_roc`` for binary,
    ``f1`` for multiclass, ``rmse`` for regression). ``gate``: ``enforce`` moves the aliases,
    ``dry_run`` only reports the decision. ``gate_thresholds``: metric -> bound a new version
    must reach on its test set (at least the bound where larger is better, at most for
    ``log_loss``, ``rmse``, ``mae``). ``gate_max_loss``: how much worse than the current
    champion on the gate metric (both scored on the new test set) the new version may be and
    still replace it. When ``task`` is set, a ``metric`` or ``gate_thresholds`` metric of the
    other task (``auc_roc`` for regression) is refused as the config is loaded.
    ``partitions``: how many partitions the training rows are laid out in before the fit
    (default: one per 100,000 labelled rows of the training set), the same wherever the run
    or its reproduction runs, whatever ``spark.sql.shuffle.partitions`` the session has.
    ``positive_class``: for a label of two classes, the class the binary metrics (precision,
    recall, F1, the areas) and the ``score`` output are about (default: the label's text
    alphabetically last, which is 1, true and yes for 0/1, false/true and no/yes labels).
    """

    task: Literal["auto", "classification", "regression"] = "auto"
    positive_class: str | bool | int | None = None
    estimator: Literal[ESTIMATORS] = "auto"  # type: ignore[valid-type]
    params: dict[str, Any] = Field(default_factory=dict)
    grid: dict[str, list[Any]] = Field(default_factory=dict)
    tuning: TuningConfig = Field(default_factory=TuningConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    numeric_features: list[str] | None = None
    categorical_features: list[str] | None = None
    impute: Literal["mean", "median"] = "median"
    scaling: Literal["none", "standard", "minmax"] = "none"
    outlier_features: bool = False
    class_weight: Literal["none", "balanced"] = "none"
    max_categories: int = Field(default=50, ge=2)
    metric: str | None = None
    gate: Literal["enforce", "dry_run"] = "enforce"
    gate_thresholds: dict[str, float] = Field(default_factory=dict)
    gate_max_loss: float = Field(default=0.0, ge=0)
    seed: int = 42
    partitions: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _grid_and_metric(self) -> TrainConfig:
        empty = sorted(k for k, v in self.grid.items() if not v)
        if empty:
            raise ValueError(f"grid values of {empty} are empty lists; give at least one value")
        unknown = sorted(m for m in self.gate_thresholds if higher_is_better(m) is None)
        if unknown:
            raise ValueError(
                f"gate_thresholds: unknown metric(s) {unknown}; use "
                f"{sorted(METRIC_HIGHER_IS_BETTER)}{PER_CLASS_HINT}"
            )
        if self.metric is not None and self.metric not in METRIC_HIGHER_IS_BETTER:
            raise ValueError(
                f"metric {self.metric!r} is unknown; use one of {sorted(METRIC_HIGHER_IS_BETTER)}"
            )
        if self.tuning.method in ("cross_validation", "train_validation_split") and not self.grid:
            raise ValueError(f"tuning.method {self.tuning.method} needs a grid to search")
        if self.task == "regression" and self.positive_class is not None:
            raise ValueError(
                "positive_class names a class of a classification label; remove it for "
                "task regression"
            )
        return self

    @property
    def positive_class_text(self) -> str | None:
        """``positive_class`` as the label indexer names classes (``true``, ``1``, ``yes``)."""
        if isinstance(self.positive_class, bool):
            return str(self.positive_class).lower()
        return None if self.positive_class is None else str(self.positive_class)

    def task_metric_errors(self, task: str, why: str) -> list[tuple[str, str]]:
        """Errors for ``metric`` and each ``gate_thresholds`` metric that a model of ``task``
        does not report: a regression model has no ``auc_roc``, so a threshold on it would
        keep every version challenger, and a tuning metric of the other task fails the fit.

        Args:
            task: ``classification`` or ``regression``.
            why: how the task is known, put in the message (``train.task: regression``).

        Returns:
            ``(key path below train, message)`` pairs (``gate_thresholds.auc_roc``), empty
            when every metric belongs to ``task``.
        """
        classification = task == "classification"
        task_metrics = CLASSIFICATION_METRICS if classification else REGRESSION_METRICS

        def error(key: str, name: str, hint: str = "") -> tuple[str, str]:
            use = f"{sorted(task_metrics)}{hint}"
            return key, f"{name} is not a {task} metric ({why}); use one of {use}"

        errors = []
        if self.metric is not None and self.metric not in task_metrics:
            errors.append(error("metric", self.metric))
        for name in sorted(self.gate_thresholds):
            if name not in task_metrics and not (classification and per_class_metric(name)):
                hint = PER_CLASS_HINT if classification else ""
                errors.append(error(f"gate_thresholds.{name}", name, hint))
        return errors

    @property
    def tuning_method(self) -> str:
        """The effective tuning method (``auto``: cross validation when a grid is given)."""
        if self.tuning.method == "auto":
            return "cross_validation" if self.grid else "none"
        return self.tuning.method


class ScoreConfig(StrictModel):
    """The model that ``score`` applies to the batch's feature rows.

    ``model_version`` (a registry version number) wins over ``model_alias`` (default
    ``champion``).
    """

    model_alias: str = "champion"
    model_version: int | None = Field(default=None, ge=1)


class DriftThresholds(StrictModel):
    """Per-metric thresholds of the drift report.

    A numeric feature drifts when its PSI reaches ``psi_drift``, or when the KS test's p-value
    is below ``p_value`` and the Wasserstein distance (in reference standard deviations)
    reaches ``distance``; a categorical feature when its PSI reaches ``psi_drift``, or the
    chi-square p-value is below ``p_value`` and the Jensen-Shannon distance reaches
    ``distance``. PSI at ``psi_warn`` or more, or a p-value alone, is a warning. Either kind
    drifts when its share of null values moved by ``null_share`` or more (0.1: ten points).
    """

    psi_warn: float = Field(default=0.1, ge=0)
    psi_drift: float = Field(default=0.25, ge=0)
    p_value: float = Field(default=0.05, gt=0, lt=1)
    distance: float = Field(default=0.1, ge=0)
    null_share: float = Field(default=0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _warn_below_drift(self) -> DriftThresholds:
        if self.psi_warn > self.psi_drift:
            raise ValueError(f"psi_warn {self.psi_warn} is above psi_drift {self.psi_drift}")
        return self


class DriftReferenceConfig(StrictModel):
    """The reference a batch is compared with: default the model's training set at the Delta
    version recorded on its MLflow run; or ``table`` (a Delta table path) at ``version``."""

    table: str | None = None
    version: int | None = Field(default=None, ge=0)


class DriftConfig(StrictModel):
    """The drift report of ``drift_report`` (see ``ml_engine.drift``).

    ``bins``: reference-quantile bins of numeric features for PSI. ``drift_share``: the dataset
    drifts when at least this share of the compared columns (features and model outputs) drift. ``fail_on_drift``: exit with code 5 when
    the dataset drifts, so a scheduler can branch on it. ``history``: batches shown in the
    report's trend lines. ``report_dir``: default ``<storage root>/reports``.
    """

    bins: int = Field(default=10, ge=2, le=100)
    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
    drift_share: float = Field(default=0.5, gt=0, le=1)
    fail_on_drift: bool = False
    features: list[str] | None = None
    reference: DriftReferenceConfig = Field(default_factory=DriftReferenceConfig)
    history: int = Field(default=20, ge=1)
    report_dir: str | None = None
    model_alias: str | None = None


class VacuumConfig(StrictModel):
    """What the ``vacuum`` job deletes (see ``ml_engine.vacuum``).

    ``retain_hours``: files replaced or removed this long ago (and files a write left
    uncommitted, counted from when they were written) are deleted; Delta time travel to
    versions older than that stops working unless the job keeps them. Keep it longer than the
    longest job runs: a write still running loses its files otherwise. ``keep_model_inputs``:
    keep the table versions every registered version of ``mlflow.registered_model`` was
    trained from, so ``ml-engine reproduce`` can rebuild its training set. ``compact``: first
    merge the small files of each table partition (each batch of a batch table) into as few
    as Delta's target file size allows, a commit that changes no row; the files it replaces
    are deleted by a vacuum ``retain_hours`` later.
    """

    retain_hours: int = Field(default=168, ge=0)
    keep_model_inputs: bool = True
    compact: bool = True


# --------------------------------------------------------------------------- the whole config


class Config(StrictModel):
    """The whole, validated configuration of one run."""

    schema_path: str = Field(alias="schema")
    # The batch every job of this run works on. Re-running a job for the same batch replaces
    # that batch's rows instead of adding them again. Default: last component of ingest.path.
    batch_id: str | None = None
    storage: StorageConfig
    delta: DeltaConfig = Field(default_factory=DeltaConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    mlflow: MlflowConfig = Field(default_factory=MlflowConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    sample_data: SampleDataConfig = Field(default_factory=SampleDataConfig)
    clean: CleanConfig = Field(default_factory=CleanConfig)
    outliers: OutliersConfig = Field(default_factory=OutliersConfig)
    features: FeaturesConfig = Field(default_factory=FeaturesConfig)
    training_set: TrainingSetConfig = Field(default_factory=TrainingSetConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    vacuum: VacuumConfig = Field(default_factory=VacuumConfig)

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)

    # Set by load_config; not part of the file format.
    _schema: TableSchema | None = None
    # The merged file data, paths resolved, ${VAR} placeholders unresolved (for dump_config).
    _raw: dict | None = None

    @property
    def table_schema(self) -> TableSchema:
        """The loaded input schema named by ``schema``."""
        if self._schema is None:
            self._schema = load_schema(self.schema_path)
        return self._schema

    def effective_batch_id(self) -> str:
        """``batch_id``, or the name of ``ingest.path`` without format and compression suffixes.

        ``raw/current`` -> ``current``; ``raw/2026-11-28.csv.gz`` -> ``2026-11-28``.

        Raises:
            ConfigError: neither is set, or ``ingest.path`` is a glob (two different globs of
                one directory would name the same batch): set ``batch_id``.
        """
        if self.batch_id:
            return self.batch_id
        if not self.ingest.path:
            raise ConfigError(
                "batch_id: not set, and there is no ingest.path to derive it from; "
                "set batch_id (for example --set batch_id=2026-11-28)"
            )
        return batch_id_from_path(self.ingest.path)

    def tracking_uri(self) -> str:
        """The MLflow tracking URI: config, else ``MLFLOW_TRACKING_URI``, else a sqlite file
        under the storage root."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{self.storage.path('mlflow.db')}"

    def sqlite_store(self) -> Path | None:
        """The file of a ``sqlite:///`` tracking store (None for a tracking server)."""
        uri = self.tracking_uri()
        return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None

    def artifact_location(self) -> str | None:
        """Where a new MLflow experiment keeps artifacts (None: the tracking server decides)."""
        if self.mlflow.artifact_location:
            return self.mlflow.artifact_location
        if self.tracking_uri().startswith("sqlite:") and "://" not in self.storage.root:
            return Path(self.storage.path("mlartifacts")).as_uri()
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as it would be written to a YAML file (secrets resolved: never write
        this to disk; :func:`dump_config` writes the placeholders)."""
        return self.model_dump(mode="json", by_alias=True)


_GLOB_CHARS = set("*?[")
_SUFFIXES = re.compile(r"(\.(csv|tsv|txt|json|jsonl|ndjson|parquet))?(\.(gz|bz2|zst|xz|snappy))?$")


def batch_id_from_path(path: str) -> str:
    """The batch id a raw input path names: its last component without suffixes.

    Raises:
        ConfigError: the path is a glob.
    """
    if _GLOB_CHARS & set(path):
        raise ConfigError(
            f"batch_id: ingest.path {path} is a glob, which names no batch; set batch_id "
            f"explicitly (for example --set batch_id=2026-11-28)"
        )
    name = Path(path.rstrip("/")).name
    return _SUFFIXES.sub("", name) or name


SECTIONS_CHECKED_AGAINST_SCHEMA = ("clean", "outliers", "features", "training_set")

# --------------------------------------------------------------------------- loading

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

# `inherits: ml-engine:<name>` names a config shipped inside the package.
PACKAGED_PREFIX = "ml-engine:"
PACKAGED_CONFIGS = ("defaults", "sample")

# Keys whose values are paths (``*``: every key of that mapping). Relative values resolve
# against the directory of the file that set them (``--set``: the working directory).
PATH_KEYS = (
    "schema",
    "storage.root",
    "storage.tables.*",
    "ingest.path",
    "outliers.model_path",
    "training_set.labels_path",
    "mlflow.tracking_uri",
    "mlflow.artifact_location",
    "drift.report_dir",
    "drift.reference.table",
)


def packaged_config(name: str) -> Path:
    """The file of a packaged config (``defaults`` or ``sample``).

    Raises:
        ConfigError: no packaged config has that name.
    """
    if name not in PACKAGED_CONFIGS:
        raise ConfigError(
            f"{PACKAGED_PREFIX}{name}: no packaged config of that name; use one of "
            f"{', '.join(PACKAGED_PREFIX + n for n in PACKAGED_CONFIGS)}"
        )
    from ml_engine.package_files import package_dir

    return package_dir() / "resources" / "conf" / f"{name}.yaml"


class _Replace(dict):
    """A mapping tagged ``!replace``: it replaces the inherited mapping instead of merging."""


class _Loader(yaml.SafeLoader):
    """YAML as users mean it: ``2026-11-28`` stays a string (no implicit dates)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor(
    "!replace", lambda loader, node: _Replace(loader.construct_mapping(node, deep=True))
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def _plain(value: Any) -> Any:
    """``value`` with every ``_Replace`` turned into a plain dict (for validation and dumps)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# Environment variables whose values are secrets by their name: never printed.
_SECRET_NAME = re.compile(
    r"TOKEN|SECRET|PASSWORD|PASSWD|PASS\b|CREDENTIAL|AUTH|API_?KEY|KEY$", re.I
)
_SECRETS: set[str] = set()


def redact_secrets(text: str) -> str:
    """``text`` with the secrets a loaded config took from the environment replaced by
    ``***``, and the password of any ``scheme://user:password@host`` URI too.

    A secret is the value of a ``${VAR}`` whose name says so (``TOKEN``, ``SECRET``,
    ``PASSWORD``, ``KEY``, ``CREDENTIAL``, ``AUTH``...).
    """
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return re.sub(r"(//[^:/@\s]+:)[^@/\s]+@", r"\1***@", text)


def _substitute_env(value: Any, where: str, env: dict[str, str]) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                if _SECRET_NAME.search(name) and len(env[name]) >= 4:
                    _SECRETS.add(env[name])
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{where}: environment variable {name} is not set; export it "
                f"or write ${{{name}:-default}}"
            )

        return _ENV_RE.sub(repl, value)
    return value


def _walk(data: Any, prefix: str = ""):
    """Yields (dotted key path, value) for every leaf of nested dicts and lists."""
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _walk(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _walk(v, f"{prefix}.{i}" if prefix else str(i))
    else:
        yield prefix, data


def _forget(provenance: dict[str, str], path: str) -> None:
    for key in [k for k in provenance if k == path or k.startswith(path + ".")]:
        del provenance[key]


def _merge(
    base: dict, top: dict, origin: str, provenance: dict[str, str], prefix: str = ""
) -> dict:
    """Deep-merges ``top`` into ``base``.

    Mappings merge key by key (unless tagged ``!replace``), anything else replaces, and
    ``None`` removes the key (it falls back to the engine's default).
    """
    out = dict(base)
    for k, v in top.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if v is None:
            out.pop(k, None)
            _forget(provenance, path)
            provenance[path] = origin
        elif isinstance(v, dict) and not isinstance(v, _Replace) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, origin, provenance, path)
        else:
            _forget(provenance, path)
            out[k] = _plain(v)
            for leaf, _ in _walk(out[k], path):
                provenance[leaf] = origin
            provenance[path] = origin
    return out


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = _yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, not {type(data).__name__}"
        )
    return data


def _parent_file(path: Path, parent: Any) -> Path:
    if not isinstance(parent, str) or not parent.strip():
        raise ConfigError(
            f"{path}: inherits: must be a file name or {PACKAGED_PREFIX}defaults, got {parent!r}"
        )
    if parent.startswith(PACKAGED_PREFIX):
        try:
            return packaged_config(parent[len(PACKAGED_PREFIX) :])
        except ConfigError as exc:
            raise ConfigError(f"{path}: inherits: {exc}") from None
    target = Path(parent).expanduser()
    return target if target.is_absolute() else path.parent / target


def _file_chain(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict]]:
    path = path.resolve()
    if path in seen:
        raise ConfigError(
            f"{path}: 'inherits' makes a cycle: {' -> '.join(map(str, seen + (path,)))}"
        )
    data = _read_yaml(path)
    parent = data.pop("inherits", None)
    chain: list[tuple[Path, dict]] = []
    if parent is not None:
        parent_path = _parent_file(path, parent)
        if not parent_path.is_file():
            raise ConfigError(
                f"{path}: inherits: {parent_path} not found (a relative name is read from the "
                f"directory of {path.name}; {PACKAGED_PREFIX}defaults names the engine's defaults)"
            )
        chain = _file_chain(parent_path, seen + (path,))
    return chain + [(path, data)]


# Mappings whose own keys contain dots (Spark settings): the rest of the path is one key.
_LITERAL_KEY_MAPS = ("spark.conf.",)


def _split_key(dotted: str) -> list[str]:
    for prefix in _LITERAL_KEY_MAPS:
        if dotted.startswith(prefix) and len(dotted) > len(prefix):
            return prefix.rstrip(".").split(".") + [dotted[len(prefix) :]]
    return dotted.split(".")


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = _split_key(dotted)
    node: Any = data
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
            continue
        if part not in node or not isinstance(node[part], (dict, list)):
            node[part] = {}
        node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    elif value is None:
        node.pop(last, None)
    else:
        node[last] = value


def _unwrap(annotation: Any) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]``; the annotation itself otherwise."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _field_annotation(parts: Sequence[str]) -> Any:
    """The type annotation of the config field at ``parts`` (None when there is no such key)."""
    annotation: Any = Config
    for part in parts:
        annotation = _unwrap(annotation)
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields = {**annotation.model_fields}
            fields.update({f.alias: f for f in annotation.model_fields.values() if f.alias})
            if part not in fields:
                return None
            annotation = fields[part].annotation
        elif origin is dict:
            annotation = typing.get_args(annotation)[1]
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    return _unwrap(annotation)


def _is_text(annotation: Any) -> bool:
    if annotation is str:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return all(isinstance(a, str) for a in typing.get_args(annotation))
    return False


def parse_override(text: str) -> tuple[str, Any]:
    """Splits ``a.b=value`` and converts the value by the type of the field it sets.

    A text field (``batch_id``, ``ingest.path``, ``spark.conf.*``, a choice such as
    ``train.gate``) takes the text as typed; other fields parse it as YAML without implicit
    dates (``500``, ``true``, ``[a, b]``, ``{k: v}``). ``null`` resets the key to its default.

    Raises:
        ConfigError: when there is no ``=`` or the key is empty.
    """
    if "=" not in text:
        raise ConfigError(f"--set {text}: expected key.path=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text}: the key path is empty")
    if raw.strip() in ("null", "~"):
        return key, None
    if _is_text(_field_annotation(_split_key(key))):
        return key, raw
    try:
        value = _yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def _origin_of(loc: str, provenance: dict[str, str]) -> str:
    """The file or ``--set`` that set ``loc`` (or its nearest parent); for a key nobody set,
    the config file the run was given (``provenance[""]``), else ``defaults``."""
    parts = loc.split(".")
    while parts:
        key = ".".join(parts)
        if key in provenance:
            return provenance[key]
        parts.pop()
    return provenance.get("", "defaults")


def _where(loc: str, provenance: dict[str, str]) -> str:
    """``source: key`` for an error line (``--set key`` alone when the key was set there)."""
    origin = _origin_of(loc, provenance)
    if origin == f"--set {loc}":
        return origin
    if origin == "defaults":
        return loc or "<top>"
    return f"{origin}: {loc or '<top>'}"


def _base_dir(origin: str) -> Path:
    """The directory a relative path set by ``origin`` resolves against."""
    if origin.startswith("--set") or origin == "defaults" or not Path(origin).is_file():
        return Path.cwd()
    return Path(origin).parent


def _resolve_path(value: str, base: Path) -> str:
    """``value`` made absolute against ``base`` (URIs other than relative sqlite unchanged)."""
    if value.startswith("sqlite:///"):
        rest = value[len("sqlite:///") :]
        if rest.startswith("/") or rest.startswith(":memory:") or not rest:
            return value
        return f"sqlite:///{(base / rest).resolve()}"
    if "://" in value or value.startswith(("file:", "sqlite:")) or "${" in value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _path_entries(data: dict) -> list[tuple[str, dict, str]]:
    """(dotted key, containing mapping, key in it) for every path key present in ``data``."""
    found = []
    for pattern in PATH_KEYS:
        parts = pattern.split(".")
        nodes: list[tuple[str, Any]] = [("", data)]
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            nxt = []
            for prefix, node in nodes:
                if not isinstance(node, dict):
                    continue
                keys = list(node) if part == "*" else [part] if part in node else []
                for k in keys:
                    dotted = f"{prefix}.{k}" if prefix else str(k)
                    if last:
                        found.append((dotted, node, k))
                    else:
                        nxt.append((dotted, node[k]))
            nodes = nxt
    return found


def _resolve_paths(data: dict, provenance: dict[str, str]) -> None:
    """Makes every relative path value absolute, in place (see :data:`PATH_KEYS`)."""
    for dotted, node, key in _path_entries(data):
        if isinstance(node[key], str) and node[key]:
            node[key] = _resolve_path(node[key], _base_dir(_origin_of(dotted, provenance)))


_PLAIN_MESSAGES = {
    "missing": "required key is missing; set it",
    "string_type": "expected text",
    "int_parsing": "expected a whole number",
    "int_type": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "dict_type": "expected a mapping (key: value)",
    "list_type": "expected a list",
    "model_type": "expected a mapping of keys",
}


def _keys_at(loc: Sequence[Any]) -> list[str]:
    """The key names allowed in the mapping at ``loc`` (for "did you mean")."""
    annotation = _field_annotation([str(p) for p in loc])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or name for name, f in annotation.model_fields.items()]
    return []


def _located(err: dict) -> tuple[str, str]:
    """The dotted key of a validation error and its message; a section's check that names one
    of the section's keys first (``gate_thresholds: unknown metric``) is located at that key,
    so the error names the file or ``--set`` that set it."""
    loc, message = ".".join(str(p) for p in err["loc"]), _plain_error(err)
    key, sep, rest = message.partition(": ")
    if err["type"] == "value_error" and sep and key in _keys_at(err["loc"]):
        return f"{loc}.{key}" if loc else key, rest
    return loc, message


def _plain_error(err: dict) -> str:
    """One validation error in plain words."""
    kind, loc, value = err["type"], err["loc"], err.get("input")
    if kind == "extra_forbidden":
        allowed = _keys_at(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
        return f"unknown key '{loc[-1]}'; {hint}"
    if kind == "literal_error":
        return f"{value!r} is not allowed; use {err['ctx']['expected']}"
    if kind in ("value_error", "assertion_error"):
        return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _PLAIN_MESSAGES:
        got = "" if kind == "missing" else f", got {value!r}"
        return _PLAIN_MESSAGES[kind] + got
    return f"{err['msg']} (got {value!r})"


def build_config(
    data: dict,
    provenance: dict[str, str] | None = None,
    check_schema: bool = True,
    env: dict[str, str] | None = None,
) -> Config:
    """Validates already-merged config data.

    Args:
        data: nested dict, as read from YAML (paths relative to the working directory unless
            ``provenance`` says which file set them).
        provenance: dotted key path -> file (or ``--set key``) that set it, used to resolve
            relative paths and to name the source in errors.
        check_schema: load the schema file and check column references against it.
        env: environment for ``${VAR}`` substitution (default ``os.environ``).

    Raises:
        ConfigError: one line per problem, each with its source and key path.
    """
    provenance = provenance or {}
    env = dict(os.environ) if env is None else env
    raw = _plain(data)
    _resolve_paths(raw, provenance)

    def substitute(node: Any, path: str) -> Any:
        if isinstance(node, dict):
            return {k: substitute(v, f"{path}.{k}" if path else str(k)) for k, v in node.items()}
        if isinstance(node, list):
            return [substitute(v, f"{path}.{i}") for i, v in enumerate(node)]
        return _substitute_env(node, _where(path, provenance), env)

    substituted = substitute(raw, "")
    # A path that came from the environment may itself be relative.
    _resolve_paths(substituted, provenance)
    try:
        cfg = Config.model_validate(substituted)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc, message = _located(err)
            lines.append(f"{_where(loc, provenance)}: {message}")
        raise ConfigError("\n".join(lines)) from None
    cfg._raw = raw

    problems = _task_metric_problems(cfg.train)
    if check_schema:
        try:
            schema = load_schema(cfg.schema_path)
        except FileNotFoundError as exc:
            raise ConfigError(f"{_where('schema', provenance)}: {exc}") from None
        cfg._schema = schema
        # The jobs after clean read silver, whose coerced columns have their new types.
        silver = cfg.clean.silver_schema(schema)
        for section in SECTIONS_CHECKED_AGAINST_SCHEMA:
            checked = schema if section in ("clean", "training_set") else silver
            problems += getattr(cfg, section).schema_errors(checked, section)
    if problems:
        raise ConfigError("\n".join(f"{_where(p, provenance)}: {msg}" for p, msg in problems))
    return cfg


def _task_metric_problems(train: TrainConfig) -> list[tuple[str, str]]:
    """``train.metric`` and ``train.gate_thresholds`` metrics of the other task when
    ``train.task`` names the task (with ``auto`` the train job checks them once it has read
    the label's type); ``(key path, message)`` pairs."""
    if train.task == "auto":
        return []
    why = f"train.task: {train.task}"
    return [(f"train.{key}", msg) for key, msg in train.task_metric_errors(train.task, why)]


def merge_files(
    path: str | os.PathLike[str], overrides: Sequence[str] = ()
) -> tuple[dict, dict[str, str]]:
    """The merged, unvalidated config data of ``path``'s chain and ``overrides``.

    Returns:
        ``(data, provenance)``: nested data, and dotted key path -> the file or ``--set`` that
        set it.

    Raises:
        ConfigError: a missing or malformed file, a bad ``inherits`` or ``--set``.
    """
    merged: dict = {}
    text = str(path)
    start = (
        packaged_config(text[len(PACKAGED_PREFIX) :])
        if text.startswith(PACKAGED_PREFIX)
        else Path(path)
    )
    provenance: dict[str, str] = {"": str(start.resolve())}
    for file, data in _file_chain(start):
        merged = _merge(merged, data, str(file), provenance)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(merged, key, value)
        origin = f"--set {key}"
        _forget(provenance, key)
        provenance[key] = origin
        for leaf, _ in _walk(value, key):
            provenance[leaf] = origin
    return merged, provenance


def load_config(
    path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    check_schema: bool = True,
    env: dict[str, str] | None = None,
) -> Config:
    """Loads, layers and validates a config file (see the module docstring).

    Args:
        path: the environment's config file, e.g. ``conf/local.yaml``, or a packaged config
            (``ml-engine:sample``).
        overrides: ``key.path=value`` strings applied last.
        check_schema: also check column references against the schema file.
        env: environment for ``${VAR}`` substitution (default ``os.environ``).

    Raises:
        ConfigError: a missing or malformed file, an unknown key, a wrong type, a missing
            required value, an unset environment variable, a metric of the other task than
            ``train.task`` or a column the schema lacks; one line per problem.
    """
    merged, provenance = merge_files(path, overrides)
    return build_config(merged, provenance, check_schema=check_schema, env=env)


def dump_config(cfg: Config, path: str | os.PathLike[str]) -> None:
    """Writes the effective config as YAML that ``load_config`` reads back.

    ``${VAR}`` placeholders are written as they were given, never their values, and the file
    is readable by its owner only.
    """
    data = cfg._raw if cfg._raw is not None else cfg.to_dict()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(
            "# The effective config of this run (every layer merged; ${VAR} placeholders kept).\n"
        )
        yaml.safe_dump(data, out, sort_keys=False)
    os.chmod(target, 0o600)


def numeric_features(schema: TableSchema) -> list[str]:
    """Names of the schema's numeric feature columns, in schema order."""
    return [c.name for c in schema.columns if c.has_role(ROLE_NUMERIC)]


def categorical_features(schema: TableSchema) -> list[str]:
    """Names of the schema's categorical feature columns, in schema order."""
    return [c.name for c in schema.columns if c.has_role(ROLE_CATEGORICAL)]
