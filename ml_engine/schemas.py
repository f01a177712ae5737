"""Input schemas: files in ``schemas/`` that say what each input column is.

A schema file (YAML or JSON) looks like::

    name: transactions
    columns:
      - name: customer_id
        type: string
        nullable: false
        role: key
        constraints: {pattern: "C[0-9]{6}"}
      - name: amount
        type: double
        role: numeric_feature
        constraints: {min: 0, max: 50000}

Types: ``string``, ``int``, ``long``, ``double``, ``float``, ``boolean``, ``date``,
``timestamp``, ``decimal(p,s)``. Roles: ``record_id`` (one record), ``key`` (entity key),
``event_time``, ``label``, ``numeric_feature``, ``categorical_feature`` or none. A column may
hold several roles where that makes sense, e.g. ``role: [record_id, key]`` when each record is
its own entity (one row per customer); combinations that cannot be meant (a label that is also
a feature, an event time that is also an id, a feature both numeric and categorical, an id
that is also a feature or the label) are refused. ``record_id``, ``key``, ``event_time`` and
``label`` are each held by at most one column. Constraints: ``min``, ``max``, ``allowed``
(list of values), ``pattern`` (Java regex matching the whole value).
A name holds no ``.``, backtick, blank or ``,;{}()=`` (Spark reads ``a.b`` as field ``b`` of
``a``; Delta tables refuse the others): a JSON key or Parquet column named so is loaded under
another name with ``input_name``, e.g.
``{name: reading_temp, input_name: "reading.temp", type: double}``. A list of keys reads a
field of nested JSON objects or Parquet structs:
``{name: user_age, input_name: [user, age], type: int}`` reads 31 from
``{"user": {"age": 31}}``.
Loading never needs a Spark session.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql import types as T

ROLE_RECORD_ID = "record_id"
ROLE_KEY = "key"
ROLE_EVENT_TIME = "event_time"
# The load time ingest adds to every row: the event time of a schema without one.
ARRIVAL_TIME = "ingested_at"
BATCH_COLUMN = "batch_id"
SOURCE_FILE_COLUMN = "source_file"
# What ingest adds to every row of a batch; carried by bronze, silver and quarantine.
META_COLUMNS = (BATCH_COLUMN, SOURCE_FILE_COLUMN, ARRIVAL_TIME)
ROLE_LABEL = "label"
ROLE_NUMERIC = "numeric_feature"
ROLE_CATEGORICAL = "categorical_feature"
ROLES = (ROLE_RECORD_ID, ROLE_KEY, ROLE_EVENT_TIME, ROLE_LABEL, ROLE_NUMERIC, ROLE_CATEGORICAL)
# Roles that at most one column of a schema holds.
SINGLE_COLUMN_ROLES = (ROLE_RECORD_ID, ROLE_KEY, ROLE_EVENT_TIME, ROLE_LABEL)

_LEAK = "it would leak the label into the features"
_LABEL_NOT_ID = "the label is the value to predict, not what identifies or times a record"
_TIME_NOT_ID = "the event time says when a record happened, not which record or entity it is"
_UNIQUE_NOT_FEATURE = "a value unique to each record has nothing a model can learn from"
# Pairs of roles that one column cannot hold together, and why.
_ROLE_CONFLICTS: dict[frozenset[str], str] = {
    frozenset({ROLE_LABEL, ROLE_NUMERIC}): _LEAK,
    frozenset({ROLE_LABEL, ROLE_CATEGORICAL}): _LEAK,
    frozenset({ROLE_LABEL, ROLE_RECORD_ID}): _LABEL_NOT_ID,
    frozenset({ROLE_LABEL, ROLE_KEY}): _LABEL_NOT_ID,
    frozenset({ROLE_LABEL, ROLE_EVENT_TIME}): _LABEL_NOT_ID,
    frozenset({ROLE_EVENT_TIME, ROLE_RECORD_ID}): _TIME_NOT_ID,
    frozenset({ROLE_EVENT_TIME, ROLE_KEY}): _TIME_NOT_ID,
    frozenset({ROLE_NUMERIC, ROLE_CATEGORICAL}): (
        "a feature is encoded either as a number or as categories; keep the role its values fit"
    ),
    frozenset({ROLE_RECORD_ID, ROLE_NUMERIC}): _UNIQUE_NOT_FEATURE,
    frozenset({ROLE_RECORD_ID, ROLE_CATEGORICAL}): _UNIQUE_NOT_FEATURE,
}

_SIMPLE_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "int": T.IntegerType(),
    "integer": T.IntegerType(),
    "long": T.LongType(),
    "bigint": T.LongType(),
    "double": T.DoubleType(),
    "float": T.FloatType(),
    "boolean": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}
_DECIMAL_RE = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_CONSTRAINT_KEYS = {"min", "max", "allowed", "pattern"}
_COLUMN_KEYS = {
    "name", "type", "nullable", "role", "constraints", "description", "format", "input_name"
}  # fmt: skip
# What a number written as text may carry around it, left out when it is read with
# ``ingest.csv.strip_signs``: a currency sign or code before or after it ($1,234.50, -$5,
# 12,50 €, CHF 1'234.50) or a percent sign after it (12.5% is 12.5).
CURRENCY_SIGNS = "$€£¥₹"
CURRENCY_CODES = ("USD", "EUR", "GBP", "CHF", "JPY", "CNY", "INR", "CAD", "AUD")
# The blanks around a number and between its thousands (``ingest.csv.thousands: " "``): the
# no-break spaces that French and other exports write too.
_BLANKS = " \u00a0\u202f"


# Timestamp formats of numbers: seconds or milliseconds since 1970-01-01 00:00 UTC.
EPOCH_UNITS = {"epoch_seconds": 1, "epoch_millis": 1000}
# The seconds of 0001-01-01 and 9999-12-31 23:59:59 UTC: a number outside is no time Spark has.
_EPOCH_RANGE = (-62_135_596_800, 253_402_300_799)


def epoch_timestamp(value: Column, fmt: str) -> Column:
    """The timestamp of a number (or its text) of seconds or milliseconds since the epoch
    (``fmt``: a key of :data:`EPOCH_UNITS`); null for anything else or out of range."""
    per_second = EPOCH_UNITS[fmt]
    number = value.cast("string").try_cast("double")
    lo, hi = (bound * per_second for bound in _EPOCH_RANGE)
    micros = (number * F.lit(1_000_000 // per_second)).try_cast("long")
    return F.when(number.between(lo, hi), F.timestamp_micros(micros))


@dataclass(frozen=True)
class NumberText:
    """How numbers are written as text: the decimal separator, the thousands separator
    (``None``: ``.`` with a decimal comma, none with a decimal point;  ``""``: none) and
    whether currency and percent signs around them are left out (``signs``)."""

    decimal: str = "."
    thousands: str | None = None
    signs: bool = False

    @property
    def plain_only(self) -> bool:
        """Numbers as Spark casts them: a decimal point, no grouping, no signs."""
        return self.decimal == "." and not self.grouping and not self.signs

    @property
    def grouping(self) -> str:
        """The thousands separator in effect, ``""`` for none."""
        if self.thousands is None:
            return "." if self.decimal == "," else ""
        return self.thousands

    @property
    def pattern(self) -> str:
        """A Java and a Python regex that such a number, signs included, fully matches."""
        point = re.escape(self.decimal)
        digits = r"\d+"
        if self.grouping:
            group = f"[{_BLANKS}]" if self.grouping == " " else re.escape(self.grouping)
            digits = rf"(?:\d{{1,3}}(?:{group}\d{{3}})+|\d+)"
        number = rf"[+-]?{digits}(?:{point}\d*)?(?:[eE][+-]?\d+)?"
        if not self.signs:
            return rf"^\s*{number}\s*$"
        sign = f"(?:[{CURRENCY_SIGNS}]|{'|'.join(CURRENCY_CODES)})"
        return rf"^\s*[+-]?(?:{sign}[{_BLANKS}]?)?{number}(?:[{_BLANKS}]?(?:{sign}|%))?\s*$"

    @property
    def _dropped(self) -> str:
        """A regex of what is left out of such a number before it is cast: grouping, blanks
        and, with ``signs``, currency and percent signs."""
        group = re.escape(self.grouping) if self.grouping else ""
        if not self.signs:
            return f"[{_BLANKS}{group}]"
        return f"{'|'.join(CURRENCY_CODES)}|[{CURRENCY_SIGNS}%{_BLANKS}{group}]"

    def plain(self, text: str) -> str | None:
        """``text`` as Spark casts it to a number (``$1,234.50`` -> ``1234.50``), or ``None``
        when it is no number written this way."""
        if not re.fullmatch(self.pattern, text):
            return None
        return re.sub(self._dropped, "", text).strip().replace(self.decimal, ".")

    def read(self, text: Column, target: T.DataType) -> Column:
        """``text`` cast to the number type ``target``: null for text that is no number written
        this way. With a decimal point a plain number (``1.5``, ``NaN``) casts as Spark casts
        it and only the rest is matched against :attr:`pattern`; numbers written as Spark
        casts them (:attr:`plain_only`) are only cast, as the regular expressions of the
        others cost time even on rows they do not run on (a wide select's code outgrows what
        the JVM compiles)."""
        if self.plain_only:
            return text.try_cast(target)
        bare = F.regexp_replace(text, self._dropped, "")
        to_point = F.translate(bare, ",", ".") if self.decimal == "," else bare
        written = F.when(text.rlike(self.pattern), to_point)
        if self.decimal == ",":
            return written.try_cast(target)
        return F.coalesce(text.try_cast(target), written.try_cast(target))


def grouped_by_commas(value: str) -> bool:
    """Whether a number's commas can only be grouping ones: two of them, or a point after."""
    return value.count(",") > 1 or "." in value.partition(",")[2]


# Numbers as Spark writes them: a decimal point, no grouping, no signs.
PLAIN_NUMBERS = NumberText()

# What a column name holds none of: Spark's column references read a dot as a nested field
# (and backticks as quoting), and Delta tables without column mapping (delta-spark's writes)
# refuse blanks and ,;{}()= in names.
UNUSABLE_NAME_CHARACTERS = (".", "`", " ", ",", ";", "{", "}", "(", ")", "\n", "\t", "=")


class SchemaError(ValueError):
    """A schema file is malformed; the message names the file and column."""


@dataclass(frozen=True)
class Constraints:
    """Value constraints of one column (None where not declared)."""

    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    pattern: str | None = None


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column.

    ``roles`` holds the column's roles in the order the file lists them (empty: no role).
    """

    name: str
    type: str
    spark_type: T.DataType
    nullable: bool = True
    roles: tuple[str, ...] = ()
    constraints: Constraints = field(default_factory=Constraints)
    format: str | None = None
    description: str | None = None
    # The column's name in JSON or Parquet input when the tables name it otherwise, or the
    # path of keys to it in nested JSON objects or Parquet structs (``("user", "age")``).
    input_name: str | tuple[str, ...] | None = None

    @property
    def input_path(self) -> tuple[str, ...]:
        """The keys that lead to the column's value in the input: one for a top-level key or
        column, more for a field of a nested object or struct."""
        if isinstance(self.input_name, tuple):
            return self.input_name
        return (self.input_name or self.name,)

    @property
    def nested(self) -> bool:
        """Whether the column is read from a field of a nested object or struct."""
        return len(self.input_path) > 1

    @property
    def read_as(self) -> str:
        """The column's name in the input files (its path's keys joined by ``.`` when it is
        read from a nested field, as messages show it)."""
        return ".".join(self.input_path)

    @property
    def role(self) -> str | None:
        """The first role, or None; a column may hold more (see :meth:`has_role`)."""
        return self.roles[0] if self.roles else None

    def has_role(self, role: str) -> bool:
        """Whether ``role`` is among the column's roles."""
        return role in self.roles

    @property
    def is_numeric(self) -> bool:
        return isinstance(self.spark_type, T.NumericType)

    @property
    def is_numeric_or_temporal(self) -> bool:
        return self.is_numeric or isinstance(self.spark_type, (T.DateType, T.TimestampType))


@dataclass(frozen=True)
class TableSchema:
    """A loaded schema: ordered columns, their constraints and roles."""

    name: str
    columns: tuple[ColumnSpec, ...]
    source: str = "<inline>"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def struct(self) -> T.StructType:
        """The Spark ``StructType`` of the typed table."""
        return T.StructType([T.StructField(c.name, c.spark_type, c.nullable) for c in self.columns])

    def column(self, name: str) -> ColumnSpec:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"column '{name}' is not in schema '{self.name}' ({self.source})")

    def with_role(self, role: str) -> list[ColumnSpec]:
        """The columns that have ``role`` among their roles, in schema order."""
        return [c for c in self.columns if c.has_role(role)]

    def _single(self, role: str) -> str | None:
        cols = self.with_role(role)
        return cols[0].name if cols else None

    @property
    def record_id(self) -> str | None:
        """The column that identifies one record (re-sent duplicates share it), if declared."""
        return self._single(ROLE_RECORD_ID)

    @property
    def key(self) -> str | None:
        """The entity key column, if the schema declares one."""
        return self._single(ROLE_KEY)

    @property
    def event_time(self) -> str | None:
        return self._single(ROLE_EVENT_TIME)

    @property
    def time_column(self) -> str:
        """The column jobs take as each row's event time: the ``event_time`` column, else
        :data:`ARRIVAL_TIME` (when ingest loaded the row), which bronze, silver and features
        carry. Window aggregates and point-in-time joins then go by arrival."""
        return self.event_time or ARRIVAL_TIME

    @property
    def label(self) -> str | None:
        return self._single(ROLE_LABEL)

    @property
    def numeric_features(self) -> list[str]:
        return [c.name for c in self.with_role(ROLE_NUMERIC)]

    @property
    def categorical_features(self) -> list[str]:
        return [c.name for c in self.with_role(ROLE_CATEGORICAL)]


def parse_type(name: str) -> T.DataType:
    """Maps a schema type name to a Spark type.

    Raises:
        ValueError: for an unknown type name.
    """
    key = name.strip().lower()
    if key in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[key]
    m = _DECIMAL_RE.match(key)
    if m:
        return T.DecimalType(int(m.group(1)), int(m.group(2)))
    raise ValueError(
        f"unknown type '{name}'; use one of {sorted(set(_SIMPLE_TYPES))} or decimal(p,s)"
    )


def _roles(raw: Any, at: str) -> tuple[str, ...]:
    """The roles of one column from its ``role`` value: absent, a role name or a list of them.

    Raises:
        SchemaError: an unknown role, a role listed twice, an empty list, or two roles that
            one column cannot hold together (the message says why).
    """
    if raw is None:
        return ()
    names = raw if isinstance(raw, list) else [raw]
    if not names:
        raise SchemaError(f"{at}: 'role' is an empty list; give one or more roles or leave it out")
    roles: list[str] = []
    for role in names:
        if not isinstance(role, str) or role not in ROLES:
            raise SchemaError(f"{at}: unknown role '{role}'; use one of {list(ROLES)}")
        if role in roles:
            raise SchemaError(f"{at}: role '{role}' is listed twice")
        for earlier in roles:
            why = _ROLE_CONFLICTS.get(frozenset({earlier, role}))
            if why:
                raise SchemaError(f"{at}: roles {earlier} and {role} cannot be combined: {why}")
        roles.append(role)
    return tuple(roles)


def _column(raw: Any, index: int, where: str) -> ColumnSpec:
    if not isinstance(raw, dict):
        raise SchemaError(f"{where}: columns[{index}] must be a mapping, got {raw!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise SchemaError(f"{where}: columns[{index}] has no 'name'")
    at = f"{where}: column '{name}'"
    input_name = raw.get("input_name")
    if isinstance(input_name, list) and len(input_name) == 1:
        input_name = input_name[0]
    if isinstance(input_name, list):
        if not all(isinstance(k, str) and k for k in input_name):
            raise SchemaError(
                f"{at}: 'input_name' as a list is the path of keys to a nested field, e.g. "
                f'[user, age] for {{"user": {{"age": 31}}}}; got {input_name!r}'
            )
        input_name = tuple(input_name)
    elif input_name is not None and (not isinstance(input_name, str) or not input_name):
        raise SchemaError(
            f"{at}: 'input_name' must be the column's name in the input files, or the list of "
            f"keys to a nested field ([user, age])"
        )
    unusable = unusable_name(name)
    if unusable:
        raise SchemaError(
            f"{at}: {unusable}; name it {csv_name(name)!r} and, if the input files name it "
            f"{name!r}, add input_name: {json.dumps(input_name or name)}"
        )
    unknown = set(raw) - _COLUMN_KEYS
    if unknown:
        misplaced = [k for k in raw if k in unknown & _CONSTRAINT_KEYS]
        hint = (
            f"; {', '.join(misplaced)} belong{'s' if len(misplaced) == 1 else ''} under "
            "'constraints': "
            f"constraints: {{{', '.join(f'{k}: {json.dumps(raw[k])}' for k in misplaced)}}}"
            if misplaced
            else ""
        )
        raise SchemaError(
            f"{at}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_COLUMN_KEYS)}{hint}"
        )
    if "type" not in raw:
        raise SchemaError(f"{at}: missing 'type'")
    try:
        spark_type = parse_type(str(raw["type"]))
    except ValueError as exc:
        raise SchemaError(f"{at}: {exc}") from None
    nullable = raw.get("nullable", True)
    if not isinstance(nullable, bool):
        raise SchemaError(f"{at}: 'nullable' must be true or false, got {nullable!r}")
    roles = _roles(raw.get("role"), at)
    rc = raw.get("constraints") or {}
    if not isinstance(rc, dict):
        raise SchemaError(f"{at}: 'constraints' must be a mapping")
    unknown = set(rc) - _CONSTRAINT_KEYS
    if unknown:
        raise SchemaError(
            f"{at}: unknown constraint(s) {sorted(unknown)}; allowed: {sorted(_CONSTRAINT_KEYS)}"
        )
    for bound in ("min", "max"):
        if bound in rc and not isinstance(rc[bound], (int, float)):
            raise SchemaError(f"{at}: constraint '{bound}' must be a number, got {rc[bound]!r}")
    if ("min" in rc or "max" in rc) and not isinstance(
        spark_type, (T.NumericType, T.DateType, T.TimestampType)
    ):
        raise SchemaError(f"{at}: min/max constraints need a numeric type, not {raw['type']}")
    allowed = rc.get("allowed")
    if allowed is not None and not isinstance(allowed, list):
        raise SchemaError(f"{at}: constraint 'allowed' must be a list")
    _check_allowed(allowed or [], spark_type, str(raw["type"]), at)
    pattern = rc.get("pattern")
    if pattern is not None:
        if not isinstance(spark_type, T.StringType):
            raise SchemaError(f"{at}: a pattern constraint needs type string, not {raw['type']}")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SchemaError(f"{at}: pattern {pattern!r} is not a valid regex: {exc}") from None
    fmt = raw.get("format")
    if fmt in EPOCH_UNITS and not isinstance(spark_type, T.TimestampType):
        raise SchemaError(f"{at}: format {fmt} (a number since 1970) needs type timestamp")
    if "min" in rc and "max" in rc and rc["min"] > rc["max"]:
        raise SchemaError(f"{at}: min {rc['min']} is greater than max {rc['max']}")
    return ColumnSpec(
        name=name,
        type=str(raw["type"]).strip().lower(),
        spark_type=spark_type,
        nullable=nullable,
        roles=roles,
        constraints=Constraints(
            min=rc.get("min"),
            max=rc.get("max"),
            allowed=tuple(allowed) if allowed is not None else None,
            pattern=pattern,
        ),
        format=raw.get("format"),
        description=raw.get("description"),
        input_name=input_name if input_name != name else None,
    )


def unusable_name(name: str) -> str | None:
    """Why ``name`` cannot name a column of the tables; None when it can."""
    odd = [ch for ch in UNUSABLE_NAME_CHARACTERS if ch in name]
    if not odd:
        return None
    return (
        f"a column name cannot hold {' or '.join(repr(ch) for ch in odd)} (Spark reads 'a.b' "
        f"as field b of column a; Delta tables refuse blanks and ,;{{}}()= in names)"
    )


def article(word: str) -> str:
    """``an`` before a vowel, else ``a``."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def _check_allowed(values: list, spark_type: T.DataType, type_name: str, at: str) -> None:
    """Each allowed value has the column's kind: YAML reads yes/no/on/off unquoted as true and
    false, and 01 as 1, so a text column's values must be quoted text."""
    if isinstance(spark_type, T.StringType):
        wrong = [v for v in values if not isinstance(v, str)]
        if wrong:
            how = (
                "YAML reads unquoted yes/no/on/off/true/false as booleans"
                if any(isinstance(v, bool) for v in wrong)
                else "YAML reads unquoted numbers as numbers"
            )
            raise SchemaError(
                f"{at}: constraint 'allowed' of {article(type_name)} {type_name} column holds "
                f"{wrong}, not text ({how}); quote each value as it is written in the data, "
                'e.g. allowed: ["yes", "no"]'
            )
    elif isinstance(spark_type, T.NumericType):
        whole = isinstance(spark_type, T.IntegralType)
        kinds = int if whole else (int, float)
        wrong = [v for v in values if isinstance(v, bool) or not isinstance(v, kinds)]
        if wrong:
            raise SchemaError(
                f"{at}: constraint 'allowed' of {article(type_name)} {type_name} column holds "
                f"{wrong}, which are not {'whole numbers' if whole else 'numbers'}; list values "
                "of the column's type or change its type"
            )
    elif isinstance(spark_type, T.BooleanType):
        wrong = [v for v in values if not isinstance(v, bool)]
        if wrong:
            raise SchemaError(
                f"{at}: constraint 'allowed' of a boolean column holds {wrong}; use true/false"
            )


def schema_from_dict(data: Any, source: str = "<inline>") -> TableSchema:
    """Builds a schema from parsed file content.

    Raises:
        SchemaError: naming ``source`` and the column for any malformed part.
    """
    if not isinstance(data, dict):
        raise SchemaError(f"{source}: a schema must be a mapping with 'name' and 'columns'")
    cols = data.get("columns")
    if not isinstance(cols, list) or not cols:
        raise SchemaError(f"{source}: 'columns' must be a non-empty list")
    columns = tuple(_column(raw, i, source) for i, raw in enumerate(cols))
    seen: set[str] = set()
    for c in columns:
        if c.name.lower() in seen:
            raise SchemaError(f"{source}: column '{c.name}' is declared twice")
        seen.add(c.name.lower())
    read: dict[tuple[str, ...], str] = {}
    for c in columns:
        path = tuple(k.lower() for k in c.input_path)
        other = read.setdefault(path, c.name)
        if other != c.name:
            raise SchemaError(
                f"{source}: columns '{other}' and '{c.name}' are both read from input column "
                f"'{c.read_as}'; give each its own input_name"
            )
    for c in columns:
        path = tuple(k.lower() for k in c.input_path)
        inner = next(
            (n for p, n in read.items() if len(p) > len(path) and p[: len(path)] == path), None
        )
        if inner is not None:
            raise SchemaError(
                f"{source}: column '{c.name}' reads '{c.read_as}' whole while column '{inner}' "
                f"reads a field inside it; read its fields as columns (input_name: "
                f"{json.dumps([*c.input_path, '<field>'])}), or it whole as JSON text, not both"
            )
    for role in SINGLE_COLUMN_ROLES:
        having = [c.name for c in columns if c.has_role(role)]
        if len(having) > 1:
            raise SchemaError(
                f"{source}: role '{role}' is given to several columns {having}; only one may have it"
            )
    et = [c for c in columns if c.has_role(ROLE_EVENT_TIME)]
    if et and not isinstance(et[0].spark_type, (T.TimestampType, T.DateType)):
        raise SchemaError(
            f"{source}: column '{et[0].name}': role event_time needs type timestamp or date"
        )
    return TableSchema(
        name=str(data.get("name") or Path(source).stem), columns=columns, source=source
    )


def load_schema(path: str | Path) -> TableSchema:
    """Reads a ``.yaml``/``.yml``/``.json`` schema file.

    Raises:
        FileNotFoundError: the file does not exist.
        SchemaError: the file is not valid YAML/JSON or declares something malformed.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"schema file {p} not found")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise SchemaError(
            f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}"
        ) from None
    return schema_from_dict(data, str(p))


def csv_column_names(
    header: str, delimiter: str, quote: str = '"'
) -> tuple[list[str], list[tuple[str, str]]]:
    """Column names from a CSV header line, as ``ml-engine init`` writes them into a schema:
    each field stripped, runs of characters other than letters, digits and ``_`` made one
    ``_``; blank names become ``column_<position>`` and repeated ones ``<name>_<position>``.

    Returns:
        The names and the ``(header text, new name)`` pairs that were renamed.
    """
    line = header.lstrip("\ufeff").rstrip("\r\n")
    reader = (
        csv.reader([line], delimiter=delimiter, quotechar=quote)
        if quote
        else csv.reader([line], delimiter=delimiter, quoting=csv.QUOTE_NONE)
    )
    return column_names(next(reader, []))


def column_names(fields: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The column names of CSV header fields, as :func:`csv_column_names` gives them."""
    names: list[str] = []
    renamed: list[tuple[str, str]] = []
    seen: set[str] = set()
    for i, raw in enumerate(fields, start=1):
        name = csv_name(raw)
        if not name:
            name = f"column_{i}"
        if name.lower() in seen:
            name = f"{name}_{i}"
        seen.add(name.lower())
        names.append(name)
        if name != raw:
            renamed.append((raw, name))
    return names, renamed


def csv_name(text: str) -> str:
    """A CSV header field as a column name: stripped, each run of characters other than
    letters, digits and ``_`` made one ``_`` (``"Rooms Count"`` -> ``Rooms_Count``)."""
    return re.sub(r"\W+", "_", text.strip()).strip("_")
