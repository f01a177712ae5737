"""The clean job: ``bronze`` -> ``silver`` with quarantine and data-quality metrics.

The work is a chain of pure transformations, each a native Spark expression over all columns
at once (no Python UDFs, no per-column jobs):

1. :func:`standardise` - trim strings (blank -> null), upper/lower case, canonical spellings;
2. :func:`with_coerced_types` - optional casts, failures become null and are recorded;
3. :func:`deduplicate` - ``latest_by_key``, ``exact`` or ``none``, remembering how many input
   rows each surviving row stands for (so ``rows_in`` needs no extra count); only the keys
   (or row hashes) are shuffled to find duplicates, and for ``latest_by_key`` only the keys,
   order columns and row ids of the duplicates to rank them (whole rows never move);
   with ``latest_by_key``, :func:`drop_superseded` then keeps a record once across batches
   (the batch's keys and order columns meet those of silver's other batches);
4. :func:`with_violations` - every rule (config rules + schema constraints) and the
   missing-value ``drop`` policy evaluated per row: whether the row leaves ``silver`` (its
   quarantine reason is built later, on the rejected rows only);
5. :func:`summarise` - two aggregations for all columns (compiled counts, means and moments;
   deterministic sampled quantiles for the profile and medians, HLL sketches for distinct
   counts), plus one grouped
   aggregation for all modes; they also give the silver profile for ``dq_metrics``;
6. :func:`impute` - fills nulls with the learned values, or with those another batch learned
   (``clean.impute_from``, read from the ``fill_values`` table: :func:`fills_learned_on`).

:func:`run_clean` is the job: it reads the batch from ``bronze``, persists the result of steps
1-4 once, decides (``fail`` rules) before writing anything, then writes ``silver``, its
``quarantine`` rows (stage ``clean``), its ``dq_metrics`` rows and, when it fills nulls, its
``fill_values`` rows (per imputed column: strategy, value, the batch it was learned from).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ml_engine.config import CleanConfig, CleanRule, Config, MissingValuePolicy
from ml_engine.quality.metrics import (
    DEFAULT_QUANTILES,
    ColumnProfile,
    metric_rows,
    with_run_info,
)
from ml_engine.quality.quarantine import quarantine_rows, reasons
from ml_engine.quality.schema_change import added_note, columns_to_add
from ml_engine.results import JobError, JobResult
from ml_engine.schemas import PLAIN_NUMBERS, NumberText, TableSchema, parse_type
from ml_engine.session import describe
from ml_engine.tables.base import (
    BATCH_COLUMN,
    INGESTED_AT_COLUMN,
    META_COLUMNS,
    SOURCE_FILE_COLUMN,
    BatchNotFoundError,
    DeltaTables,
    TableNotFoundError,
)

STAGE = "clean"
# After the event time, what orders two copies of a record: the later ingested, then the
# greater file name, is the later copy.
COPY_ORDER = (INGESTED_AT_COLUMN, SOURCE_FILE_COLUMN)

# Helper columns added by the pipeline; none of them reaches silver.
COPIES = "_dq_copies"  # input rows a deduplicated row stands for (itself + removed duplicates)
COERCE_FAILED = "_dq_coerce_failed"  # array<string>: columns whose value did not cast
VIOLATIONS = "_dq_violations"  # array<string>: names of the rules the row violates
REJECTED = "_dq_rejected"  # boolean: the row goes to quarantine, not to silver
REASON = "_dq_reason"  # quarantine reason (with_violations(names=True)); null for kept rows


# --------------------------------------------------------------------------- standardisation


WHITESPACE = " \t\n\x0b\f\r"


def standardise(
    df: DataFrame,
    trim: bool = True,
    case: Mapping[str, str] | None = None,
    mappings: Mapping[str, Mapping[str, str]] | None = None,
    exclude: Sequence[str] = META_COLUMNS,
) -> DataFrame:
    """Trims string columns, sets their case and maps spellings to canonical ones.

    Per string column, in this order: leading/trailing whitespace removed and a blank value
    made null (``trim``); ``lower``/``upper`` case (``case``); a value equal to a key of
    ``mappings[column]`` replaced by the key's value (keys are trimmed and cased like the
    column, so ``{Mobile: app}`` works with ``lower``).

    Args:
        df: any DataFrame.
        trim: strip string columns.
        case: column -> ``"lower"`` or ``"upper"``.
        mappings: column -> {spelling: canonical spelling}.
        exclude: string columns left untouched (the table's metadata columns).

    Returns:
        ``df`` with the same columns and types.

    Raises:
        ValueError: ``case``/``mappings`` name a column that is not a string column of ``df``.
    """
    case = dict(case or {})
    mappings = {k: dict(v) for k, v in (mappings or {}).items()}
    strings = {f.name for f in df.schema.fields if isinstance(f.dataType, T.StringType)} - set(
        exclude
    )
    bad = sorted((set(case) | set(mappings)) - strings)
    if bad:
        raise ValueError(f"standardise: {bad} are not string columns of the input {df.columns}")

    def fix(name: str) -> Column:
        c = F.col(name)
        if name not in strings:
            return c
        if trim:
            # Java's \s (what a regex would strip) is exactly these six characters;
            # trim with a character set is several times faster than a regex.
            c = F.trim(c, F.lit(WHITESPACE))
            c = F.when(c == "", F.lit(None).cast("string")).otherwise(c)
        how = case.get(name)
        if how == "lower":
            c = F.lower(c)
        elif how == "upper":
            c = F.upper(c)
        if mappings.get(name):
            table: dict[str, str] = {}
            for raw, canonical in mappings[name].items():
                k = raw.strip() if trim else raw
                k = k.lower() if how == "lower" else k.upper() if how == "upper" else k
                table[k] = canonical
            lookup = F.create_map(*[F.lit(x) for kv in sorted(table.items()) for x in kv])
            c = F.coalesce(F.try_element_at(lookup, c), c)
        return c

    return df.select(*[fix(n).alias(n) for n in df.columns])


def with_coerced_types(
    df: DataFrame, coerce: Mapping[str, str], numbers: NumberText = PLAIN_NUMBERS
) -> DataFrame:
    """Casts columns to new types; a value that does not cast becomes null.

    Args:
        df: input rows.
        coerce: column -> schema type name (``double``, ``int``, ``timestamp``, ``decimal(p,s)``...).
        numbers: how text cast to a number is written (``ingest.csv.decimal``,
            ``thousands``, ``strip_signs``): with a decimal comma ``1.234,5`` casts to 1234.5
            and ``1.5`` does not cast; with thousands ``,`` and signs left out,
            ``$1,234.50`` casts to 1234.5.

    Returns:
        ``df`` with the columns cast plus ``COERCE_FAILED``: array of the names of the columns
        whose non-null value failed to cast in that row (empty when none).

    Raises:
        ValueError: an unknown type name or a column ``df`` lacks.
    """
    missing = sorted(set(coerce) - set(df.columns))
    if missing:
        raise ValueError(f"coerce: columns {missing} are not in the input {df.columns}")
    targets = {c: parse_type(t) for c, t in coerce.items()}
    text = {f.name for f in df.schema.fields if isinstance(f.dataType, T.StringType)}

    def cast(c: str) -> Column:
        if c in text and isinstance(targets[c], T.NumericType):
            return numbers.read(F.col(c), targets[c])
        return F.col(c).try_cast(targets[c])

    cols = [cast(n).alias(n) if n in targets else F.col(n) for n in df.columns]
    failed = [F.when(F.col(c).isNotNull() & cast(c).isNull(), F.lit(c)) for c in sorted(targets)]
    flags = reasons(failed)
    return df.select(*cols, flags.alias(COERCE_FAILED))


# --------------------------------------------------------------------------- dedup


def dedup_key(schema: TableSchema) -> str | None:
    """The column ``latest_by_key`` deduplicates on: the record id, else the entity key."""
    return schema.record_id or schema.key


def deduplicate(
    df: DataFrame,
    mode: str,
    columns: Sequence[str],
    key: str | None = None,
    event_time: str | None = None,
) -> DataFrame:
    """Removes duplicate rows, deterministically, without shuffling whole rows for
    ``latest_by_key``.

    ``latest_by_key``: per ``key`` the row with the latest ``event_time`` survives; ties go to
    the latest ``ingested_at``, then the greatest ``source_file``, then the smallest 64-bit
    hash (``xxhash64``) of the remaining columns, so the result never depends on partitioning
    or input order. Rows with a null key are all kept. ``exact``: rows equal in all
    ``columns`` collapse to one (the latest ingested copy). ``none``: nothing removed.

    How: one aggregation over a narrow probe (the key, or a 64-bit hash of ``columns`` for
    ``exact``) finds the probe values that occur more than once (one Spark job). When there
    are at most :data:`BROADCAST_MAX_REPEATED` of them, they are broadcast: rows with any other
    probe value pass through without a shuffle. The rows of repeated values are ranked by a
    window: for ``latest_by_key`` only their keys, order columns and row ids move, and the
    winners' ids (broadcast) pick the whole rows where they are; for ``exact``, whose groups
    are whole rows, those rows move. Above the limit every row is ranked that way and the
    winners are joined back by a shuffle.

    Args:
        df: input rows (``ingested_at``/``source_file`` are used for ties when present).
        mode: ``latest_by_key``, ``exact`` or ``none``.
        columns: the data columns (``exact`` compares them; the rest break ties).
        key: the record id column (``latest_by_key``).
        event_time: the event time column (``latest_by_key``; optional).

    Returns:
        The surviving rows with ``COPIES`` (long): how many input rows each stands for, so
        ``sum(COPIES)`` is the input row count and ``sum(COPIES) - count`` the duplicates
        removed.

    Raises:
        ValueError: unknown mode, or ``latest_by_key`` without a key column in ``df``.
    """
    if mode == "none":
        return df.withColumn(COPIES, F.lit(1).cast("long"))
    meta_order = [F.col(c).desc_nulls_last() for c in COPY_ORDER if c in df.columns]
    if mode == "latest_by_key":
        if key is None or key not in df.columns:
            raise ValueError(
                f"dedup latest_by_key needs a record id or key column; got {key!r} "
                f"(input columns {df.columns}); declare role record_id or key in the schema "
                "or set clean.dedup to exact or none"
            )
        # The order's columns, narrow: the last tie-break is a hash of the other columns.
        rest = [c for c in columns if c not in (key, event_time)]
        carried = [c for c in (event_time, *COPY_ORDER) if c is not None and c in df.columns]
        narrow = [F.col(c) for c in carried]
        narrow.append(F.xxhash64(*[F.col(c) for c in rest] or [F.lit(0)]).alias(_TIE))
        order = [F.col(event_time).desc_nulls_last()] if event_time else []
        order += meta_order
        order.append(F.col(_TIE).asc())
        return _keep_first(df, [key], order, F.col(key), narrow)
    if mode == "exact":
        return _keep_first(df, list(columns), meta_order or [F.lit(1)], F.xxhash64(*columns))
    raise ValueError(f"unknown dedup mode {mode!r}; use latest_by_key, exact or none")


# Repeated probe values (keys) broadcast to the tasks; above this, every row is ranked.
BROADCAST_MAX_REPEATED = 1_000_000
_PROBE = "_dq_probe"
_ROW = "_dq_row"  # a row's id: its position in the scan of the input
_TIE = "_dq_tie"  # latest_by_key's last tie-break: a hash of the columns not ordered by


def _keep_first(
    df: DataFrame,
    group: list[str],
    order: list[Column],
    probe: Column,
    narrow: list[Column] | None = None,
) -> DataFrame:
    """The first row (by ``order``) of each group of rows equal in ``group``, with ``COPIES``.

    Rows whose ``probe`` is null are never merged (a null key). Equal ``group`` values must
    give equal probes; equal probes may hide different groups (a hash), which the window sorts
    out. With ``narrow`` (the columns ``order`` sorts by, as named columns of ``df``), the
    window ranks only ``group``, those columns and a row id, and the winners' ids (broadcast
    up to :data:`BROADCAST_MAX_REPEATED`) pick the whole rows; without it, whole rows are
    ranked. The row id is the row's position in the scan (``monotonically_increasing_id``),
    assigned before any filter, so both reads of the input agree on it.
    """
    probed = df.select("*", probe.alias(_PROBE))
    repeated = (
        probed.where(F.col(_PROBE).isNotNull())
        .groupBy(_PROBE)
        .count()
        .where(F.col("count") > 1)
        .select(_PROBE)
    )
    n_repeated = repeated.count()
    once = F.lit(1).cast("long").alias(COPIES)
    if n_repeated == 0:
        return probed.select(*df.columns, once)
    ided = probed if narrow is None else probed.withColumn(_ROW, F.monotonically_increasing_id())
    few = n_repeated <= BROADCAST_MAX_REPEATED
    single, multi = None, ided
    if few:
        small = F.broadcast(repeated)
        single = probed.join(small, _PROBE, "left_anti").select(*df.columns, once)
        multi = ided.join(small, _PROBE, "left_semi")
    if narrow is None:
        kept = _rank_first(multi, group, order, df.columns)
    else:
        keys = multi.select(*group, _PROBE, _ROW, *narrow)
        winners = _rank_first(keys, group, order, [_ROW])
        kept = multi.join(F.broadcast(winners) if few else winners, _ROW).select(
            *df.columns, COPIES
        )
    return kept if single is None else single.unionByName(kept)


def _rank_first(
    probed: DataFrame, group: list[str], order: list[Column], columns: list[str]
) -> DataFrame:
    """The window that keeps the first row of each group (rows with a null probe all stay)."""
    part = Window.partitionBy(*group)
    ranked = probed.select(
        "*",
        F.row_number().over(part.orderBy(*order)).alias("_dq_rank"),
        F.count(F.lit(1)).over(part).alias("_dq_group"),
    )
    unmerged = F.col(_PROBE).isNull()
    return ranked.where(unmerged | (F.col("_dq_rank") == 1)).select(
        *columns,
        F.when(unmerged, F.lit(1)).otherwise(F.col("_dq_group")).cast("long").alias(COPIES),
    )


@dataclass(frozen=True)
class CrossBatch:
    """The batch's deduplicated rows seen against the other batches of silver.

    ``rows``: the rows without those of which another batch holds a later copy;
    ``superseded``: input rows dropped that way (with the in-batch duplicates they stood for);
    ``taken_over``: rows of other batches that later copies in this batch replace.
    """

    rows: DataFrame
    superseded: int = 0
    taken_over: int = 0


def _recency(event_time: str | None) -> Column:
    """The order ``latest_by_key`` keeps a record's copies by, as one comparable struct:
    event time, then ``ingested_at``, then ``source_file`` (a null below every value), then
    ``batch_id``, so two batches never tie."""
    parts: list[Column] = []
    for c in (event_time, *COPY_ORDER):
        if c is not None:
            parts += [F.col(c).isNotNull(), F.col(c)]
    return F.struct(*parts, F.col(BATCH_COLUMN))


def drop_superseded(
    deduped: DataFrame, elsewhere: DataFrame, key: str, event_time: str | None
) -> CrossBatch:
    """Keeps a record once across batches: the latest copy (``latest_by_key``) wins.

    Only narrow columns move: the batch's non-null keys with their order columns meet the
    same columns of ``elsewhere`` in one grouped aggregation (one Spark job that also
    counts); the keys whose latest copy is in another batch then leave ``deduped`` by a
    broadcast anti-join, or a shuffled one above :data:`BROADCAST_MAX_REPEATED` keys.

    Args:
        deduped: the batch's rows after in-batch deduplication (with ``COPIES``, ``batch_id``
            and the order columns present in it).
        elsewhere: the rows of the other batches of silver (``key``, order columns,
            ``batch_id``).
        key: the dedup key column.
        event_time: the event time column, if any.
    """
    order = [c for c in (event_time, *COPY_ORDER) if c is not None]
    missing = [c for c in (key, BATCH_COLUMN, *order) if c not in elsewhere.columns]
    if missing:
        raise ValueError(f"silver lacks columns {missing} to compare batches by")
    mine = deduped.where(F.col(key).isNotNull()).select(
        key, _recency(event_time).alias("_r"), F.col(COPIES), F.lit(True).alias("_mine")
    )
    theirs = elsewhere.join(mine.select(key), key, "left_semi").select(
        key, _recency(event_time).alias("_r"), F.lit(0).cast("long").alias(COPIES),
        F.lit(False).alias("_mine"),
    )  # fmt: skip
    shared = (
        mine.unionByName(theirs)
        .groupBy(key)
        .agg(
            F.max_by("_mine", "_r").alias("_wins"),
            F.sum(COPIES).alias("_copies"),
            F.count_if(~F.col("_mine")).alias("_theirs"),
        )
        .where(F.col("_theirs") > 0)
    )
    counts = shared.agg(
        F.coalesce(F.sum(F.when(~F.col("_wins"), F.col("_copies"))), F.lit(0)).alias("lost"),
        F.count_if(~F.col("_wins")).alias("keys"),
        F.coalesce(F.sum(F.when(F.col("_wins"), F.col("_theirs"))), F.lit(0)).alias("taken"),
    ).first()
    if not counts["keys"]:
        return CrossBatch(deduped, 0, int(counts["taken"]))
    losers = shared.where(~F.col("_wins")).select(F.col(key).alias("_loser"))
    if counts["keys"] <= BROADCAST_MAX_REPEATED:
        losers = F.broadcast(losers)
    rows = deduped.join(losers, F.col(key) == F.col("_loser"), "left_anti")
    return CrossBatch(rows, int(counts["lost"]), int(counts["taken"]))


# --------------------------------------------------------------------------- rules


def schema_rules(schema: TableSchema, action: str) -> list[CleanRule]:
    """The schema's declared constraints as rules ``schema:<column>:range|allowed|pattern``.

    Args:
        schema: the input schema.
        action: ``warn``, ``drop`` or ``fail`` for all of them; ``ignore`` gives no rules.
    """
    if action == "ignore":
        return []
    rules: list[CleanRule] = []
    for col in schema.columns:
        k = col.constraints
        if k.min is not None or k.max is not None:
            rules.append(
                CleanRule(
                    name=f"schema:{col.name}:range",
                    type="range",
                    column=col.name,
                    min=k.min,
                    max=k.max,
                    action=action,
                )
            )
        if k.allowed is not None:
            rules.append(
                CleanRule(
                    name=f"schema:{col.name}:allowed",
                    type="allowed",
                    column=col.name,
                    values=list(k.allowed),
                    action=action,
                )
            )
        if k.pattern is not None:
            rules.append(
                CleanRule(
                    name=f"schema:{col.name}:pattern",
                    type="pattern",
                    column=col.name,
                    pattern=k.pattern,
                    action=action,
                )
            )
    return rules


def clean_rules(clean: CleanConfig, schema: TableSchema) -> list[CleanRule]:
    """The config's rules followed by the schema constraints' rules."""
    return list(clean.rules) + schema_rules(schema, clean.schema_constraints_action)


def _bound(x: float | None, default: str) -> str:
    return default if x is None else f"{x:g}"


def _numeric_value(c: Column, dtype: T.DataType) -> Column:
    """Numbers as they are; dates and timestamps as epoch seconds (for range rules)."""
    if isinstance(dtype, (T.DateType, T.TimestampType)):
        return F.unix_micros(c.cast("timestamp")) / F.lit(1_000_000)
    return c


def rule_violation(rule: CleanRule, dtype: T.DataType | None = None) -> Column:
    """A boolean column: true when the row violates ``rule``, never null.

    A null value (or an expression that evaluates to null) is not a violation.

    Args:
        rule: the rule.
        dtype: the type of ``rule.column`` (needed for range rules on dates/timestamps).
    """
    if rule.type == "expression":
        bad = ~F.coalesce(F.expr(rule.expr).cast("boolean"), F.lit(True))
        return bad
    c = F.col(rule.column)
    if rule.type == "range":
        v = _numeric_value(c, dtype or T.DoubleType())
        conds = []
        if rule.min is not None:
            conds.append(v < F.lit(rule.min))
        if rule.max is not None:
            conds.append(v > F.lit(rule.max))
        bad = conds[0] if len(conds) == 1 else conds[0] | conds[1]
    elif rule.type == "allowed":
        bad = ~c.isin([F.lit(v) for v in rule.values])
    else:  # pattern: a Java regex that must match the whole value
        bad = ~c.rlike(f"^(?:{rule.pattern})$")
    return F.coalesce(bad, F.lit(False))


def rule_reason(rule: CleanRule) -> Column:
    """The quarantine reason for a row that violates ``rule``: rule, column and value."""
    if rule.type == "expression":
        return F.lit(f"rule {rule.name}: expression {rule.expr} does not hold")
    value = F.col(rule.column).cast("string")
    if rule.type == "range":
        what = f"outside range [{_bound(rule.min, '-inf')}, {_bound(rule.max, 'inf')}]"
    elif rule.type == "allowed":
        what = "not in allowed values [" + ", ".join(str(v) for v in rule.values) + "]"
    else:
        what = f"does not match pattern {rule.pattern}"
    return F.concat(
        F.lit(f"rule {rule.name}: column {rule.column} value "), value, F.lit(f" {what}")
    )


def violated_names(rules: Sequence[CleanRule], types: Mapping[str, T.DataType]) -> Column:
    """The array of the names of the ``rules`` a row violates (empty when none).

    Args:
        rules: the rules.
        types: column -> type of the frame (for range rules on dates and timestamps).
    """
    named = [F.when(rule_violation(r, types.get(r.column)), F.lit(r.name)) for r in rules]
    return reasons(named)


def missing_reason(column: str) -> str:
    """The quarantine reason for a null in a column whose missing-value policy is ``drop``."""
    return f"column {column}: null, missing-value policy drop"


def with_violations(
    df: DataFrame,
    rules: Sequence[CleanRule],
    missing: Mapping[str, MissingValuePolicy],
    names: bool = False,
) -> DataFrame:
    """Evaluates every rule and the ``drop`` missing-value policies on every row.

    Args:
        df: rows to check.
        rules: rules in order (config rules, then schema rules).
        missing: column -> policy; ``drop`` columns reject rows with a null there.
        names: also add ``VIOLATIONS`` and ``REASON``, for looking at rows; the job needs
            neither (:func:`summarise` counts violations with the rules themselves, and
            :func:`rejected_rows` builds the reasons of the rejected rows only).

    Returns:
        ``df`` plus ``REJECTED`` (boolean: a ``drop`` rule or ``drop`` policy rejects the
        row, which then goes to quarantine instead of silver) and, with ``names``,
        ``VIOLATIONS`` (array of the names of the rules the row violates, any action) and
        ``REASON`` (:func:`rejection_reason` on rejected rows, null on kept ones).

    Raises:
        ValueError: an expression rule that is not a valid boolean SQL expression over the
            columns of ``df``, or a rule on a column ``df`` lacks.
    """
    types = {f.name: f.dataType for f in df.schema.fields}
    for rule in rules:
        if rule.column is not None and rule.column not in types:
            raise ValueError(f"rule '{rule.name}': column '{rule.column}' is not in {df.columns}")
        if rule.type == "expression":
            try:
                dtype = df.select(F.expr(rule.expr)).schema.fields[0].dataType
            except Exception as exc:  # parse and analysis errors of the user's SQL
                raise ValueError(
                    f"rule '{rule.name}': expression {rule.expr!r} is not valid SQL over "
                    f"columns {df.columns}: {str(exc).splitlines()[0]}"
                ) from None
            if not isinstance(dtype, T.BooleanType):
                raise ValueError(
                    f"rule '{rule.name}': expression {rule.expr!r} has type "
                    f"{dtype.simpleString()}; it must be a boolean that holds for good rows"
                )
    drops = _drop_checks(rules, missing, types)
    rejected = functools.reduce(operator.or_, [v for v, _ in drops]) if drops else F.lit(False)
    extra = [rejected.alias(REJECTED)]
    if names:
        extra.insert(0, violated_names(rules, types).alias(VIOLATIONS))
        extra.append(F.when(rejected, rejection_reason(rules, missing, types)).alias(REASON))
    return df.select("*", *extra)


def _drop_checks(
    rules: Sequence[CleanRule],
    missing: Mapping[str, MissingValuePolicy],
    types: Mapping[str, T.DataType],
) -> list[tuple[Column, Column]]:
    """``(violated, reason text)`` of every ``drop`` rule and ``drop`` missing-value policy."""
    drops = [
        (rule_violation(r, types.get(r.column)), rule_reason(r))
        for r in rules
        if r.action == "drop"
    ]
    drops += [
        (F.col(c).isNull(), F.lit(missing_reason(c)))
        for c, p in missing.items()
        if p.strategy == "drop"
    ]
    return drops


def rejection_reason(
    rules: Sequence[CleanRule],
    missing: Mapping[str, MissingValuePolicy],
    types: Mapping[str, T.DataType],
) -> Column:
    """The quarantine reason of a rejected row: the ``"; "``-joined reasons of the ``drop``
    rules and ``drop`` policies it violates (empty text on a kept row).

    Evaluate it on the rejected rows only (:func:`rejected_rows`): built in the pass over
    every row, the text of 51 rules cost 3x the rest of clean's row pass at 1M rows.
    """
    drops = _drop_checks(rules, missing, types)
    if not drops:
        return F.lit(None).cast("string")
    return F.concat_ws("; ", *[F.when(v, r) for v, r in drops])


def filter_kept(flagged: DataFrame) -> DataFrame:
    """The rows of :func:`with_violations` output that go on to silver."""
    return flagged.where(~F.col(REJECTED))


def filter_rejected(flagged: DataFrame) -> DataFrame:
    """The rows of :func:`with_violations` output that go to quarantine."""
    return flagged.where(F.col(REJECTED))


# --------------------------------------------------------------------------- summary + imputation


@dataclass(frozen=True)
class CleanSummary:
    """Small results of the clean pipeline, from one aggregation (plus one for modes).

    ``fill_values``: column -> value the nulls of ``silver`` get (None when nothing could be
    learned, e.g. the column has no value at all); typed like the column (int, float, Decimal,
    str, bool), except modes of date/timestamp columns, which are ISO strings.
    """

    rows_in: int
    rows_deduplicated: int
    rows_quarantined: int
    superseded: int = 0  # of rows_in: dropped for a later copy in another batch
    taken_over: int = 0  # rows of other batches replaced by this batch's later copies
    violations: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    coercion_failures: dict[str, int] = field(default_factory=dict)
    missing_dropped: dict[str, int] = field(default_factory=dict)
    nulls_imputed: dict[str, int] = field(default_factory=dict)
    fill_values: dict[str, Any] = field(default_factory=dict)
    profile: list[tuple[str, str, Any]] = field(default_factory=list)

    @property
    def duplicates_removed(self) -> int:
        return self.rows_in - self.rows_deduplicated

    @property
    def rows_out(self) -> int:
        return self.rows_deduplicated - self.rows_quarantined

    def metric_values(self) -> list[tuple[str | None, str, float | None]]:
        """``(column, metric, value)`` rows for ``dq_metrics`` (column None: table level)."""
        rows: list[tuple[str | None, str, float | None]] = [
            (None, "rows_in", self.rows_in),
            (None, "rows_out", self.rows_out),
            (None, "duplicates_removed", self.duplicates_removed),
            (None, "duplicates_in_other_batches", self.superseded),
            (None, "replaced_in_other_batches", self.taken_over),
            (None, "rows_quarantined", self.rows_quarantined),
            (None, "warnings", self.warnings),
        ]
        rows += [(name, "violations", n) for name, n in self.violations.items()]
        rows += [(c, "coercion_failures", n) for c, n in self.coercion_failures.items()]
        rows += [(c, "missing_dropped", n) for c, n in self.missing_dropped.items()]
        rows += [(c, "nulls_imputed", n) for c, n in self.nulls_imputed.items()]
        return [(c, m, None if v is None else float(v)) for c, m, v in rows]


def _typed_value(x: float | None, dtype: T.DataType) -> Any:
    """A statistic computed as a double, as a Python value of the column's type."""
    if x is None:
        return None
    if isinstance(dtype, T.IntegralType):
        return int(Decimal(repr(x)).quantize(Decimal(1), ROUND_HALF_UP))
    if isinstance(dtype, T.DecimalType):
        return Decimal(repr(x)).quantize(Decimal(1).scaleb(-dtype.scale), ROUND_HALF_UP)
    return float(x)


def _typed_stat(stat: Column, dtype: T.DataType) -> Column:
    if isinstance(dtype, T.IntegralType):
        return F.round(stat, 0).cast(dtype)
    return stat.cast(dtype)


def mode_values(df: DataFrame, columns: Sequence[str]) -> dict[str, Any]:
    """The most frequent non-null value of each column, in one grouped aggregation.

    The columns are stacked to ``(column, value)`` pairs and counted by one ``groupBy``; ties
    go to the smallest value (numerically for numeric columns, else as text).

    Args:
        df: rows to learn from.
        columns: the columns (any type).

    Returns:
        column -> value (Python scalar typed like the column; date/timestamp columns as ISO
        strings); a column with no value is absent.
    """
    if not columns:
        return {}
    types = {f.name: f.dataType for f in df.schema.fields}
    pairs = df.select(
        F.inline(
            F.array(
                *[
                    F.struct(
                        F.lit(i).alias("i"),
                        F.col(c).cast("string").alias("v"),
                        (
                            F.col(c).cast("double")
                            if isinstance(types[c], T.NumericType)
                            else F.lit(None).cast("double")
                        ).alias("n"),
                    )
                    for i, c in enumerate(columns)
                ]
            )
        )
    ).where(F.col("v").isNotNull())
    counts = pairs.groupBy("i", "v", "n").agg(F.count(F.lit(1)).alias("cnt"))
    best = counts.groupBy("i").agg(
        F.min_by("v", F.struct((-F.col("cnt")).alias("c"), "n", "v")).alias("v")
    )
    out: dict[str, Any] = {}
    for row in best.collect():  # one row per mode column
        c = columns[row["i"]]
        out[c] = _from_string(row["v"], types[c])
    return out


def _from_string(text: str, dtype: T.DataType) -> Any:
    if isinstance(dtype, T.IntegralType):
        return int(text)
    if isinstance(dtype, (T.DoubleType, T.FloatType)):
        return float(text)
    if isinstance(dtype, T.DecimalType):
        return Decimal(text)
    if isinstance(dtype, T.BooleanType):
        return text == "true"
    return text


def summarise(
    flagged: DataFrame,
    rules: Sequence[CleanRule],
    missing: Mapping[str, MissingValuePolicy],
    coerced: Sequence[str] = (),
    profile_columns: Sequence[str] = (),
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> CleanSummary:
    """Counts, imputation statistics and the silver profile of a flagged frame in two passes.

    Pass one, Spark's compiled declarative aggregates: rows, duplicates, rule violations,
    coercion failures, nulls, means (imputation) and the profile's null counts, min, max,
    mean and stddev, and value counts. Pass two: the exact quantiles of each numeric profiled
    or median-imputed column's deterministic sample (the profile's quantiles and the
    median used to impute; :mod:`ml_engine.quantiles`) and one HLL sketch per profiled
    column. Modes of all ``mode`` columns come from one grouped
    aggregation (:func:`mode_values`). Two passes rather than one because Spark cannot
    compile an aggregation that mixes sketches with declarative aggregates, and such an
    aggregation ran at less than half the speed of the two (see
    :class:`~ml_engine.quality.metrics.ColumnProfile`); call this on a cached frame.

    Imputation statistics and the profile describe the rows that go to silver (``REJECTED``
    false) as they are before imputation: ``null_count`` counts the nulls that imputation
    then fills, and imputed values do not move the quantiles. Rule violations and
    missing-value drops are counted over all deduplicated rows.

    Args:
        flagged: output of :func:`with_violations` (with ``COPIES`` and, when ``coerced`` is
            given, ``COERCE_FAILED``).
        rules: the rules ``flagged`` was checked against.
        missing: column -> missing-value policy.
        coerced: the columns :func:`with_coerced_types` cast.
        profile_columns: the columns to profile (``CleanSummary.profile``).
        quantiles: the profile's quantiles.

    Returns:
        The :class:`CleanSummary`.
    """
    types = {f.name: f.dataType for f in flagged.schema.fields}
    kept = ~F.col(REJECTED)
    policies = sorted(missing.items())
    medians = [c for c, p in policies if p.strategy == "median"]
    sketched = list(dict.fromkeys([*profile_columns, *medians]))
    profile = ColumnProfile(
        types, sketched, quantiles, keep=kept, extra_quantiles=[0.5] if medians else []
    )
    aggs: list[Column] = [
        F.coalesce(F.sum(COPIES), F.lit(0)).cast("long").alias("rows_in"),
        F.count(F.lit(1)).alias("rows_dedup"),
        F.count_if(~kept).alias("rows_rejected"),
    ]
    aggs += [
        F.count_if(rule_violation(r, types.get(r.column))).alias(f"v{i}")
        for i, r in enumerate(rules)
    ]
    aggs += [
        F.count_if(F.array_contains(COERCE_FAILED, c)).alias(f"c{i}") for i, c in enumerate(coerced)
    ]
    for j, (c, p) in enumerate(policies):
        if p.strategy == "drop":
            aggs.append(F.count_if(F.col(c).isNull()).alias(f"m{j}"))
            continue
        aggs.append(F.count_if(kept & F.col(c).isNull()).alias(f"m{j}"))
        if p.strategy == "mean":
            mean = F.avg(F.when(kept, F.col(c)).cast("double"))
            aggs.append(_typed_stat(mean, types[c]).alias(f"f{j}"))
    row = flagged.agg(*aggs, *profile.moment_aggs()).first()  # counts, means, moments
    sketches = profile.sketches(flagged, row) if sketched else None
    violations = {r.name: int(row[f"v{i}"]) for i, r in enumerate(rules)}
    fills: dict[str, Any] = {}
    for j, (c, p) in enumerate(policies):
        if p.strategy == "mean":
            fills[c] = row[f"f{j}"]
        elif p.strategy == "median":
            fills[c] = _typed_value(profile.quantile(sketches, c, 0.5), types[c])
        elif p.strategy == "constant":
            fills[c] = p.value
    modes = [c for c, p in policies if p.strategy == "mode"]
    if modes:
        learned = mode_values(filter_kept(flagged), modes)
        fills.update({c: learned.get(c) for c in modes})
    reported = set(profile_columns)
    return CleanSummary(
        rows_in=int(row["rows_in"]),
        rows_deduplicated=int(row["rows_dedup"]),
        rows_quarantined=int(row["rows_rejected"]),
        violations=violations,
        warnings=sum(violations[r.name] for r in rules if r.action == "warn"),
        coercion_failures={c: int(row[f"c{i}"]) for i, c in enumerate(coerced)},
        missing_dropped={
            c: int(row[f"m{j}"]) for j, (c, p) in enumerate(policies) if p.strategy == "drop"
        },
        nulls_imputed={
            c: int(row[f"m{j}"]) for j, (c, p) in enumerate(policies) if p.strategy != "drop"
        },
        fill_values=fills,
        profile=[m for m in profile.metric_values(row, sketches) if m[0] in reported],
    )


def impute(df: DataFrame, fills: Mapping[str, Any]) -> DataFrame:
    """Replaces the nulls of each column in ``fills`` by its value (cast to the column's type).

    Args:
        df: rows to fill.
        fills: column -> value; None leaves the column's nulls as they are.

    Returns:
        ``df`` with the same columns and types.
    """
    types = {f.name: f.dataType for f in df.schema.fields}

    def fill(n: str) -> Column:
        if fills.get(n) is None:
            return F.col(n)
        return F.coalesce(F.col(n), F.lit(fills[n]).cast(types[n])).alias(n)

    return df.select(*[fill(n) for n in df.columns])


LEARNED = ("mean", "median", "mode")  # strategies whose fill value is learned from a batch
FILL_VALUES_SCHEMA = "column string, strategy string, value string, learned_from string"


def _fill_text(value: Any) -> str | None:
    """A fill value as text that casts back to the column's type (``impute`` casts it)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def fill_value_rows(
    spark: SparkSession,
    fills: Mapping[str, Any],
    missing: Mapping[str, MissingValuePolicy],
    learned_from: Mapping[str, str],
) -> DataFrame:
    """One ``fill_values`` row per imputed column: its strategy, its value as text (null when
    nothing could be learned) and the batch it was learned from (null for ``constant``)."""
    rows = [
        (c, p.strategy, _fill_text(fills.get(c)), learned_from.get(c))
        for c, p in sorted(missing.items())
        if p.strategy != "drop"
    ]
    return spark.createDataFrame(rows, FILL_VALUES_SCHEMA)


def fills_learned_on(
    tables: DeltaTables, path: str, batch: str, missing: Mapping[str, MissingValuePolicy]
) -> dict[str, str | None]:
    """The fill values that batch ``batch`` learned for the ``mean``/``median``/``mode``
    columns of ``missing``, as text, read from the ``fill_values`` table.

    Raises:
        JobError: the table has no rows of ``batch``, or lacks one of the columns or learned
            it with another strategy (the config changed after that batch was cleaned).
    """
    wanted = {c: p.strategy for c, p in missing.items() if p.strategy in LEARNED}
    if not wanted:
        return {}
    unset = "or unset clean.impute_from to learn from each batch"
    try:
        rows = tables.read_batch(path, batch).select("column", "strategy", "value").collect()
    except (TableNotFoundError, BatchNotFoundError):
        rows = []
    if not rows:
        raise JobError(
            f"clean: {path} holds no fill values learned from batch {batch!r}; clean batch "
            f"{batch!r} first (clean.impute_from is {batch!r}), {unset}"
        )
    stored = {r["column"]: (r["strategy"], r["value"]) for r in rows}
    stale = sorted(c for c, s in wanted.items() if stored.get(c, (None,))[0] != s)
    if stale:
        raise JobError(
            f"clean: {path} lacks fill values of column(s) {stale} learned from batch {batch!r} "
            f"with the strategy clean.missing now gives them; clean batch {batch!r} again, {unset}"
        )
    return {c: stored[c][1] for c in wanted}


def record_key(schema: TableSchema) -> Column:
    """The value that names a row in quarantine and error messages: record id, else key, else
    the JSON of the row's schema columns."""
    name = schema.record_id or schema.key
    if name is not None:
        return F.col(name).cast("string")
    return F.to_json(F.struct(*schema.names))


def fail_samples(
    flagged: DataFrame, rules: Sequence[CleanRule], key: Column, size: int
) -> dict[str, list[str]]:
    """Up to ``size`` keys (smallest first) of the rows violating each rule, in one job.

    Args:
        flagged: output of :func:`with_violations`.
        rules: the rules to sample.
        key: the column naming a row (:func:`record_key`).
        size: keys per rule.
    """
    types = {f.name: f.dataType for f in flagged.schema.fields}
    pairs = flagged.select(
        F.explode(violated_names(rules, types)).alias("rule"), key.cast("string").alias("key")
    )
    ranked = pairs.select(
        "*",
        F.row_number()
        .over(Window.partitionBy("rule").orderBy(F.col("key").asc_nulls_last()))
        .alias("rn"),
    ).where(F.col("rn") <= size)
    out: dict[str, list[str]] = {r.name: [] for r in rules}
    for row in ranked.orderBy("rule", "rn").collect():  # at most size rows per rule
        out[row["rule"]].append(row["key"])
    return out


def prepare(
    df: DataFrame,
    clean: CleanConfig,
    schema: TableSchema,
    rules: Sequence[CleanRule] | None = None,
    numbers: NumberText = PLAIN_NUMBERS,
) -> DataFrame:
    """Standardises, coerces, deduplicates and checks a batch of bronze rows.

    Args:
        df: bronze rows: the schema's columns plus ``batch_id``, ``source_file``,
            ``ingested_at``.
        clean: the ``clean`` config section.
        schema: the input schema.
        rules: the rules to check (default :func:`clean_rules`).
        numbers: how text that ``clean.coerce`` casts to a number is written.

    Returns:
        The deduplicated rows (schema columns, types after coercion, metadata columns) with
        ``COERCE_FAILED``, ``COPIES`` and ``REJECTED``; see
        :func:`summarise`, :func:`filter_kept` and :func:`filter_rejected`.

    Raises:
        ValueError: ``df`` lacks a schema column, or an expression rule is not valid SQL.
    """
    lacking = [c for c in schema.names if c not in df.columns]
    if lacking:
        raise ValueError(
            f"the input lacks schema columns {lacking} of schema '{schema.name}' "
            f"({schema.source}); it has {df.columns}"
        )
    rules = clean_rules(clean, schema) if rules is None else rules
    meta = [c for c in META_COLUMNS if c in df.columns]
    std = standardise(
        df.select(*schema.names, *meta), trim=clean.trim, case=clean.case, mappings=clean.mappings
    )
    coerced = with_coerced_types(std, clean.coerce, numbers)
    deduped = deduplicate(
        coerced, clean.dedup, schema.names, key=dedup_key(schema), event_time=schema.event_time
    )
    return with_violations(deduped, rules, clean.missing)


def silver_rows(flagged: DataFrame, fills: Mapping[str, Any], schema: TableSchema) -> DataFrame:
    """The rows that go to silver, nulls filled, with exactly the silver columns."""
    meta = [c for c in META_COLUMNS if c in flagged.columns]
    return impute(filter_kept(flagged).select(*schema.names, *meta), fills)


def rejected_rows(
    flagged: DataFrame,
    schema: TableSchema,
    rules: Sequence[CleanRule],
    missing: Mapping[str, MissingValuePolicy],
) -> DataFrame:
    """The rejected rows as quarantine rows (stage ``clean``, reason, record key, JSON row).

    Args:
        flagged: output of :func:`with_violations` over ``rules`` and ``missing``.
        schema: the input schema.
        rules: the rules ``flagged`` was checked against.
        missing: column -> missing-value policy.
    """
    types = {f.name: f.dataType for f in flagged.schema.fields}
    return quarantine_rows(
        filter_rejected(flagged),
        reason=rejection_reason(rules, missing, types),
        stage=STAGE,
        record_key=record_key(schema),
        raw_record=F.to_json(F.struct(*schema.names)),
    )


# --------------------------------------------------------------------------- the job


def against_other_batches(
    tables: DeltaTables,
    silver_path: str,
    deduped: DataFrame,
    dedup: str,
    schema: TableSchema,
    batch: str,
) -> CrossBatch:
    """:func:`drop_superseded` against the complete batches of silver other than ``batch``
    (``latest_by_key`` only; otherwise, or before silver has a complete batch, the rows as
    they are)."""
    key = dedup_key(schema)
    if dedup != "latest_by_key" or key is None or not tables.exists(silver_path):
        return CrossBatch(deduped)
    try:
        silver, _ = tables.read_complete(silver_path)
    except BatchNotFoundError:
        return CrossBatch(deduped)
    order = [c for c in (key, schema.event_time, *META_COLUMNS) if c is not None]
    elsewhere = silver.where(F.col(BATCH_COLUMN) != F.lit(batch)).select(*dict.fromkeys(order))
    return drop_superseded(deduped, elsewhere, key, schema.event_time)


def run_clean(spark: SparkSession, cfg: Config, tables: DeltaTables) -> JobResult:
    """The clean job for batch ``cfg.effective_batch_id()``: bronze -> silver + quarantine + dq_metrics.

    Reads the batch from ``bronze``, runs :func:`prepare` once (persisted), counts and learns
    imputation values (:func:`summarise`), and stops with :class:`JobError` before writing
    anything when a ``fail`` rule is violated. With ``latest_by_key``, a record that another
    complete batch of silver holds a later copy of is dropped from this batch (counted as
    ``duplicates_in_other_batches``), and the earlier copies of this batch's records leave
    their batches in the silver commit (``replaced_in_other_batches``). The job replaces the
    batch's partition of ``silver``, the batch's ``clean`` rows of ``quarantine`` (so a rerun
    leaves the same silver and quarantine as a single run) and the batch's ``clean`` rows of
    ``dq_metrics`` (per-column profile of the silver rows before imputation, rule violations
    and row counts) under a new run id, and (when it fills nulls) the batch's
    ``fill_values``; an earlier run's metrics stay readable by Delta time travel at the
    version the run log recorded for it. Columns another tool added to ``silver`` are
    written as nulls for the batch; no job of this engine adds any (outlier flags are
    ``features`` columns), so a rerun of clean erases no other job's output.

    Spark jobs: the duplicate probe (keys only), two aggregations (the first also fills the
    cache), one grouped aggregation when a column is imputed with its mode, one sample query
    when a ``fail`` rule is violated, and the writes; none of them grows with the number of
    columns or rules.

    Args:
        spark: the session.
        cfg: the validated config (``clean`` section, ``storage``, batch id).
        tables: the Delta backend.

    Returns:
        ``JobResult("clean")`` with the three table paths and rows_in, rows_out,
        duplicates_removed, rows_quarantined, warnings.

    Raises:
        JobError: no bronze table, bronze lacks a schema column, an expression rule is not
            valid SQL, dedup ``latest_by_key`` without a record id/key column, a ``fail``
            rule is violated (naming the rule and sample keys), or ``clean.impute_from`` names
            a batch whose fill values are not stored (or were learned with other strategies).
    """
    schema = cfg.table_schema
    clean = cfg.clean
    batch = cfg.effective_batch_id()
    names = ("bronze", "silver", "quarantine", "dq_metrics", "fill_values")
    paths = {n: cfg.storage.table_path(n) for n in names}
    if clean.dedup == "latest_by_key" and dedup_key(schema) is None:
        raise JobError(
            f"clean: dedup latest_by_key needs a column with role record_id or key in schema "
            f"'{schema.name}' ({schema.source}); declare one or set clean.dedup to exact or none"
        )
    if not tables.exists(paths["bronze"]):
        raise JobError(f"clean: no bronze table at {paths['bronze']}; run the ingest job first")

    # Fill values learned on another batch: read (and checked) before any work.
    source = clean.impute_from or batch
    stored = {}
    if source != batch:
        stored = fills_learned_on(tables, paths["fill_values"], source, clean.missing)
    describe(spark, f"clean {batch}: read bronze")
    bronze = tables.read_batch(paths["bronze"], batch)
    rules = clean_rules(clean, schema)
    try:
        numbers = cfg.ingest.csv.numbers
        flagged = prepare(bronze, clean, schema, rules, numbers)
    except ValueError as exc:
        raise JobError(f"clean: {paths['bronze']}: {exc}") from None
    flagged = cached = flagged.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        flagged, summary = _summarise_batch(spark, cfg, tables, flagged, rules)
        summary = dataclasses.replace(summary, fill_values={**summary.fill_values, **stored})
        _stop_on_fail_rules(spark, cfg, flagged, rules, summary, paths["bronze"])
        added = _write_outputs(spark, cfg, tables, flagged, rules, summary, paths, source)
    finally:
        cached.unpersist()
    return JobResult(
        job=STAGE,
        outputs={n: paths[n] for n in names[1:] if n != "fill_values" or imputes(clean)},
        metrics={
            "rows_in": summary.rows_in,
            "rows_out": summary.rows_out,
            "duplicates_removed": summary.duplicates_removed,
            "duplicates_in_other_batches": summary.superseded,
            "replaced_in_other_batches": summary.taken_over,
            "rows_quarantined": summary.rows_quarantined,
            "warnings": summary.warnings,
        },
        notes=added_note("silver", added),
    )


def _summarise_batch(
    spark: SparkSession,
    cfg: Config,
    tables: DeltaTables,
    flagged: DataFrame,
    rules: list[CleanRule],
) -> tuple[DataFrame, CleanSummary]:
    """The batch's rows left after the other batches of silver (:func:`against_other_batches`)
    and their :func:`summarise` counts, the superseded copies counted in."""
    clean, schema, batch = cfg.clean, cfg.table_schema, cfg.effective_batch_id()
    describe(spark, f"clean {batch}: records against the other batches of silver")
    silver_path = cfg.storage.table_path("silver")
    cross = against_other_batches(tables, silver_path, flagged, clean.dedup, schema, batch)
    describe(spark, f"clean {batch}: dedup, rules, counts and imputation statistics")
    summary = summarise(
        cross.rows,
        rules,
        clean.missing,
        coerced=sorted(clean.coerce),
        profile_columns=schema.names,
        quantiles=clean.quantiles,
    )
    summary = dataclasses.replace(
        summary,
        rows_in=summary.rows_in + cross.superseded,
        superseded=cross.superseded,
        taken_over=cross.taken_over,
    )
    return cross.rows, summary


def _stop_on_fail_rules(
    spark: SparkSession,
    cfg: Config,
    flagged: DataFrame,
    rules: list[CleanRule],
    summary: CleanSummary,
    bronze_path: str,
) -> None:
    """JobError naming every violated ``fail`` rule with sample keys, before any write."""
    batch = cfg.effective_batch_id()
    failing = [r for r in rules if r.action == "fail" and summary.violations[r.name] > 0]
    if not failing:
        return
    describe(spark, f"clean {batch}: sample keys violating fail rules")
    samples = fail_samples(
        flagged, failing, record_key(cfg.table_schema), cfg.clean.fail_sample_size
    )
    lines = [
        f"rule {r.name} (column {r.column or '-'}) failed for "
        f"{summary.violations[r.name]} row(s), e.g. keys {samples[r.name]}"
        for r in failing
    ]
    raise JobError(
        f"clean: batch {batch} of {bronze_path} violates fail rule(s): "
        + "; ".join(lines)
        + ". Nothing was written; fix the data or change the rules' action."
    )


def _write_outputs(
    spark: SparkSession,
    cfg: Config,
    tables: DeltaTables,
    flagged: DataFrame,
    rules: list[CleanRule],
    summary: CleanSummary,
    paths: Mapping[str, str],
    learned_from: str,
) -> list[str]:
    """The batch's silver rows, its ``clean`` quarantine rows (the rows ``rules`` reject,
    with the reason), its ``clean`` dq_metrics and its fill values (learned on batch
    ``learned_from``). Returns the columns the write added to silver."""
    schema, batch = cfg.table_schema, cfg.effective_batch_id()
    silver = silver_rows(flagged, summary.fill_values, schema)
    typed_by = f"the schema file {cfg.schema_path} and clean.coerce"
    added = columns_to_add(tables, paths["silver"], silver, "clean", typed_by)
    describe(spark, f"clean {batch}: write silver")
    unique = [dedup_key(schema)] if cfg.clean.dedup == "latest_by_key" else None
    # Silver's columns follow the schema file: a column added there is added to the table.
    tables.replace_batch(silver, paths["silver"], batch, unique_by=unique, add_columns=True)
    describe(spark, f"clean {batch}: write quarantine")
    tables.replace_batch(
        rejected_rows(flagged, schema, rules, cfg.clean.missing),
        paths["quarantine"],
        batch,
        within={"stage": STAGE},
    )
    metrics = with_run_info(
        metric_rows(spark, [*summary.profile, *summary.metric_values()]),
        run_id=uuid.uuid4().hex,
        batch_id=batch,
        stage=STAGE,
        computed_at=datetime.now(timezone.utc),
    )
    describe(spark, f"clean {batch}: write dq_metrics")
    # Replaced, not appended: rows a killed run appended would stay beside the rerun's
    # (the run log hides a killed run's commits, not rows it added to a later version).
    tables.replace_batch(metrics, paths["dq_metrics"], batch, within={"stage": STAGE})
    if not imputes(cfg.clean):
        return added
    learned = {c: learned_from for c, p in cfg.clean.missing.items() if p.strategy in LEARNED}
    fills = fill_value_rows(spark, summary.fill_values, cfg.clean.missing, learned)
    describe(spark, f"clean {batch}: write fill_values")
    tables.replace_batch(fills.withColumn(BATCH_COLUMN, F.lit(batch)), paths["fill_values"], batch)
    return added


def imputes(clean: CleanConfig) -> bool:
    """Whether any column's nulls are filled (a policy other than ``drop``)."""
    return any(p.strategy != "drop" for p in clean.missing.values())
