"""Deterministic sample data: card transactions with documented dirt and drift.

:func:`generate_sample_data` writes two batches of CSV text (header line first in every file)
that match ``schemas/transactions.yaml``:

* ``<out_dir>/reference/`` — the training batch, events over :data:`REFERENCE_DAYS` days
  from :data:`REFERENCE_START`;
* ``<out_dir>/current/`` — a later batch, the :data:`CURRENT_DAYS` days that follow, in which
  ``amount`` and ``channel`` drift (:data:`DRIFTED_FEATURES`); every other feature is drawn
  from the same distributions as in the reference batch;
* ``<out_dir>/MANIFEST.json`` — exactly what was injected: records and lines per batch, the
  count of every dirt kind (and its breakdown), fraud positives, the drift parameters and
  ``drifted_features``.

How rows are made. Every value is a native Spark expression of ``spark.range`` ids: a uniform
draw is ``xxhash64(id, seed, salt)`` scaled to [0, 1), one salt per column, so a value depends
only on (row number, seed) and never on partitioning or on which executor made it. Nothing is
built in the driver; any number of rows works. Per-customer attributes (``account_age_days``,
``credit_score``, ``country``) are hashes of the customer number, so a customer keeps them
across its transactions and across batches. Customers: one per :data:`ROWS_PER_CUSTOMER`
reference rows (2,500 for the default 20,000 rows), picked with a skew so that some are very
active, which makes per-customer time windows meaningful.

Distributions (reference batch):

* ``amount`` lognormal, median :data:`AMOUNT_MEDIAN`, sigma :data:`AMOUNT_SIGMA`; the current
  batch multiplies it by :data:`AMOUNT_DRIFT_FACTOR` (the median moves by that factor);
* ``distance_km`` lognormal (median :data:`DISTANCE_MEDIAN`, sigma :data:`DISTANCE_SIGMA`),
  ``num_items`` 1 + geometric (p :data:`ITEMS_P`), ``account_age_days`` exponential (mean
  :data:`ACCOUNT_AGE_MEAN_DAYS`), ``credit_score`` normal (:data:`CREDIT_MEAN`,
  :data:`CREDIT_SD`) clipped to [300, 850];
* ``channel`` per :data:`CHANNEL_P` (``reference`` / ``current``), ``merchant_category`` per
  :data:`MERCHANT_P`, ``country`` per :data:`COUNTRY_P`;
* ``is_fraud`` ~ Bernoulli(sigmoid(logit)) with ``logit = FRAUD_INTERCEPT
  + FRAUD_COEF["amount"] * ln(amount / AMOUNT_MEDIAN) + FRAUD_COEF["distance_km"] *
  ln((1 + distance_km) / 9) + FRAUD_COEF["account_age_days"] * ln((1 + account_age_days) / 500)
  + FRAUD_CHANNEL[channel]`` computed on the clean values: about 4 % positives in the
  reference batch (a little more in the current one, whose amounts are larger), and a model
  of those features can learn it.

Dirt. Each record gets at most one dirt kind, chosen by one uniform draw against the
cumulative :data:`DIRT_FRACTIONS` (so kinds never overlap and each kind's count is
Binomial(records, fraction)):

====================================  ======  ===================================================
kind                                  frac.   what the line looks like
====================================  ======  ===================================================
``wrong_field_count``                 0.004   last field dropped (11 fields) or ``,extra``
                                              appended (13 fields)
``unparsable_number``                 0.006   one of amount, distance_km, account_age_days,
                                              num_items, credit_score is one of
                                              :data:`BAD_NUMBERS` (``12.3.4``, ``abc`` ...)
``unparsable_timestamp``              0.004   event_time is one of :data:`BAD_TIMESTAMPS`
``null_credit_score``                 0.02    credit_score empty
``null_distance_km``                  0.02    distance_km empty
``null_channel``                      0.015   channel empty
``duplicate``                         0.01    the same line written twice (one extra line)
``negative_amount``                   0.003   amount negated
``credit_score_out_of_range``         0.003   credit_score 999
``amount_outlier``                    0.005   amount x U(50, 200)
``channel_spelling``                  0.02    channel in a variant spelling of
                                              :data:`CHANNEL_VARIANTS` (`` Web``, ``WEB``,
                                              ``online``, ``mobile``, ``shop`` ...)
``merchant_category_case``            0.01    merchant_category capitalised (``Grocery``)
``country_case``                      0.005   country lower case (``us``)
====================================  ======  ===================================================

The first three kinds cannot be typed (ingest quarantines them); the others load into bronze
and are for the clean job (``clean.case`` / ``clean.mappings`` / ``clean.missing``, schema
constraints, dedup) and the outlier detectors.

Files: each batch has ``files`` part files (``spark.range`` with ``files`` partitions; every
later step is narrow, so partition i is file i and keeps id order). The header line is put in
front of the first line of each partition — the row whose ``monotonically_increasing_id`` has
record number 0 in its lower 33 bits (documented Spark behaviour) — so every file starts with
exactly one header line, whatever the number of files.

Example::

    summary = generate_sample_data(spark, "work/raw", rows=20_000, seed=42)
    summary.batches["reference"].path   # 'work/raw/reference'
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from ml_engine.session import describe

# --------------------------------------------------------------------------- layout

COLUMNS = (
    "transaction_id",
    "customer_id",
    "event_time",
    "amount",
    "account_age_days",
    "num_items",
    "distance_km",
    "credit_score",
    "channel",
    "merchant_category",
    "country",
    "is_fraud",
)
HEADER = ",".join(COLUMNS)
BATCHES = ("reference", "current")
MANIFEST_NAME = "MANIFEST.json"
TIMESTAMP_FORMAT = "yyyy-MM-dd HH:mm:ss"

# --------------------------------------------------------------------------- distributions

REFERENCE_START = "2026-01-01 00:00:00"
REFERENCE_DAYS = 90
CURRENT_START = "2026-04-01 00:00:00"  # REFERENCE_START + REFERENCE_DAYS
CURRENT_DAYS = 30
ROWS_PER_CUSTOMER = 8
# Customer number = floor(customers * u ** CUSTOMER_SKEW): low numbers are the busiest.
CUSTOMER_SKEW = 1.5

AMOUNT_MEDIAN = 40.0
AMOUNT_SIGMA = 1.0
AMOUNT_DRIFT_FACTOR = 2.0
DISTANCE_MEDIAN = 8.0
DISTANCE_SIGMA = 1.2
ITEMS_P = 0.35
ACCOUNT_AGE_MEAN_DAYS = 900.0
CREDIT_MEAN = 680.0
CREDIT_SD = 70.0

CHANNEL_P = {
    "reference": {"web": 0.45, "app": 0.30, "store": 0.20, "phone": 0.05},
    "current": {"web": 0.30, "app": 0.45, "store": 0.13, "phone": 0.12},
}
MERCHANT_P = {
    "grocery": 0.30,
    "fashion": 0.20,
    "electronics": 0.15,
    "other": 0.15,
    "travel": 0.10,
    "gaming": 0.10,
}
COUNTRY_P = {"US": 0.50, "GB": 0.15, "DE": 0.12, "FR": 0.10, "CA": 0.08, "NL": 0.05}

FRAUD_INTERCEPT = -4.45
FRAUD_COEF = {"amount": 1.0, "distance_km": 0.8, "account_age_days": -0.6}
FRAUD_CHANNEL = {"web": 0.5, "app": 0.2, "store": -1.2, "phone": 0.9}

DRIFTED_FEATURES = ["amount", "channel"]

# --------------------------------------------------------------------------- dirt

DIRT_FRACTIONS: dict[str, float] = {
    "wrong_field_count": 0.004,
    "unparsable_number": 0.006,
    "unparsable_timestamp": 0.004,
    "null_credit_score": 0.02,
    "null_distance_km": 0.02,
    "null_channel": 0.015,
    "duplicate": 0.01,
    "negative_amount": 0.003,
    "credit_score_out_of_range": 0.003,
    "amount_outlier": 0.005,
    "channel_spelling": 0.02,
    "merchant_category_case": 0.01,
    "country_case": 0.005,
}
DIRT_DESCRIPTIONS: dict[str, str] = {
    "wrong_field_count": "last field dropped (11 fields) or ',extra' appended (13 fields)",
    "unparsable_number": "one numeric field replaced by a token that is not a number",
    "unparsable_timestamp": "event_time replaced by a text that is not yyyy-MM-dd HH:mm:ss",
    "null_credit_score": "credit_score empty",
    "null_distance_km": "distance_km empty",
    "null_channel": "channel empty",
    "duplicate": "the same line written twice",
    "negative_amount": "amount negated",
    "credit_score_out_of_range": "credit_score set to 999",
    "amount_outlier": "amount multiplied by a uniform factor in [50, 200)",
    "channel_spelling": "channel written in a variant spelling (see channel_variants)",
    "merchant_category_case": "merchant_category capitalised",
    "country_case": "country in lower case",
}
# Kinds whose lines cannot be typed: ingest sends them to quarantine.
MALFORMED_KINDS = ("wrong_field_count", "unparsable_number", "unparsable_timestamp")
NUMERIC_DIRT_COLUMNS = ("amount", "distance_km", "account_age_days", "num_items", "credit_score")
BAD_NUMBERS = ("12.3.4", "abc", "n/a", "1..2")
BAD_TIMESTAMPS = ("2026-13-45 10:00:00", "2026/02/03 10:00:00", "yesterday", "2026-02-30 12:00:00")
CREDIT_SCORE_OUT_OF_RANGE = 999
OUTLIER_FACTOR = (50.0, 200.0)
# Every variant becomes the canonical value with clean.trim, clean.case lower and
# clean.mappings {mobile: app, online: web, shop: store} of the packaged sample config
# (ml_engine/resources/conf/sample.yaml).
CHANNEL_VARIANTS = {
    "web": (" Web", "WEB", "online"),
    "app": ("mobile", "App"),
    "store": ("shop", "Store"),
    "phone": ("PHONE", " phone"),
}

_MASK53 = (1 << 53) - 1
_MASK33 = (1 << 33) - 1


@dataclass(frozen=True)
class BatchSummary:
    """One generated batch.

    Attributes:
        name: ``reference`` or ``current``.
        path: directory of its part files.
        records: generated records (before duplication).
        lines: data lines written (records + duplicates), header lines not counted.
        dirt: count per dirt kind (every kind of :data:`DIRT_FRACTIONS`, zeros included).
        fraud: records with ``is_fraud = 1`` (dirty records included).
    """

    name: str
    path: str
    records: int
    lines: int
    dirt: dict[str, int]
    fraud: int


@dataclass(frozen=True)
class SampleDataSummary:
    """What :func:`generate_sample_data` wrote."""

    out_dir: str
    manifest_path: str
    batches: dict[str, BatchSummary]
    drifted_features: list[str] = field(default_factory=lambda: list(DRIFTED_FEATURES))

    def lines(self) -> list[str]:
        """What was written, for the terminal: one line per batch, then the drift."""
        out = []
        for b in self.batches.values():
            dirt = ", ".join(f"{kind} {n:,}" for kind, n in b.dirt.items() if n)
            out.append(
                f"{b.name}: {b.records:,} records in {b.lines:,} lines at {b.path} "
                f"({b.fraud:,} fraud); dirty: {dirt or 'none'}"
            )
        drifted = ", ".join(self.drifted_features) or "none"
        out.append(f"drifted in current: {drifted} (what each batch holds: {self.manifest_path})")
        return out


# --------------------------------------------------------------------------- expressions


def _uniform(seed: int, salt: str, key: Column) -> Column:
    """A uniform draw in [0, 1) from (key, seed, salt): 53 bits of xxhash64."""
    h = F.xxhash64(key, F.lit(seed), F.lit(salt))
    return h.bitwiseAND(F.lit(_MASK53)).cast("double") / float(1 << 53)


def _normal(seed: int, salt: str, key: Column) -> Column:
    """A standard normal draw (Box-Muller on two uniforms)."""
    u1 = F.lit(1.0) - _uniform(seed, salt + ":1", key)  # (0, 1]
    u2 = _uniform(seed, salt + ":2", key)
    return F.sqrt(F.lit(-2.0) * F.log(u1)) * F.cos(F.lit(2 * math.pi) * u2)


def _choice(u: Column, probs: dict[str, float]) -> Column:
    """The category whose cumulative-probability interval contains ``u``."""
    items = list(probs.items())
    expr = None
    cum = 0.0
    for value, p in items[:-1]:
        cum += p
        expr = F.when(u < cum, value) if expr is None else expr.when(u < cum, value)
    last = F.lit(items[-1][0])
    return last if expr is None else expr.otherwise(last)


def _pick(u: Column, values: tuple[str, ...]) -> Column:
    """One of ``values`` with equal probability."""
    idx = F.least(F.floor(u * len(values)), F.lit(len(values) - 1)).cast("int")
    return F.element_at(F.array(*[F.lit(v) for v in values]), idx + 1)


def _fmt(value: Column, pattern: str) -> Column:
    """Formats a number (``format_string`` uses Locale.US: no grouping, '.' decimal point)."""
    return F.format_string(pattern, value)


@dataclass(frozen=True)
class _BatchSpec:
    name: str
    rows: int
    offset: int  # first transaction number
    start: str
    days: int


def _batch_records(
    spark: SparkSession, spec: _BatchSpec, seed: int, customers: int, files: int
) -> DataFrame:
    """One batch as a DataFrame of text lines plus the columns the manifest counts.

    Columns: ``line`` (the CSV line, without header), ``copies`` (1, or 2 for a duplicate),
    ``dirt`` (kind or null), ``dirt_detail`` (breakdown or null), ``is_fraud`` (int).
    Partition i holds the ids of file i, in id order.
    """
    n = F.col("n")
    ids = spark.range(spec.rows, numPartitions=files).select(
        (F.col("id") + F.lit(spec.offset)).alias("n")
    )

    cust = F.floor(F.lit(customers) * F.pow(_uniform(seed, "customer", n), CUSTOMER_SKEW))
    cust = F.least(cust, F.lit(customers - 1)).cast("long")
    seconds = F.floor(_uniform(seed, "event_time", n) * (spec.days * 86400)).cast("long")
    amount_median = AMOUNT_MEDIAN * (AMOUNT_DRIFT_FACTOR if spec.name == "current" else 1.0)
    drawn = ids.select(
        n,
        cust.alias("c"),
        F.date_format(
            F.timestamp_add("SECOND", seconds, F.lit(spec.start).cast("timestamp_ntz")),
            TIMESTAMP_FORMAT,
        ).alias("event_time"),
        F.greatest(
            F.round(
                F.exp(F.lit(math.log(amount_median)) + AMOUNT_SIGMA * _normal(seed, "amount", n)),
                2,
            ),
            F.lit(0.01),
        ).alias("amount"),
        (
            F.lit(1)
            + F.floor(F.log(F.lit(1.0) - _uniform(seed, "num_items", n)) / math.log(1.0 - ITEMS_P))
        )
        .cast("int")
        .alias("num_items"),
        F.round(
            F.exp(F.lit(math.log(DISTANCE_MEDIAN)) + DISTANCE_SIGMA * _normal(seed, "distance", n)),
            1,
        ).alias("distance_km"),
        _choice(_uniform(seed, "channel", n), CHANNEL_P[spec.name]).alias("channel"),
        _choice(_uniform(seed, "merchant", n), MERCHANT_P).alias("merchant_category"),
        _uniform(seed, "fraud", n).alias("u_fraud"),
        _uniform(seed, "dirt", n).alias("u_dirt"),
        _uniform(seed, "dirt_detail", n).alias("u_detail"),
        _uniform(seed, "dirt_value", n).alias("u_value"),
    )

    c = F.col("c")
    per_customer = drawn.select(
        "*",
        F.format_string("C%06d", c).alias("customer_id"),
        F.least(
            F.floor(F.lit(-ACCOUNT_AGE_MEAN_DAYS) * F.log(F.lit(1.0) - _uniform(seed, "age", c))),
            F.lit(36500),
        )
        .cast("int")
        .alias("account_age_days"),
        F.least(
            F.greatest(
                F.round(F.lit(CREDIT_MEAN) + CREDIT_SD * _normal(seed, "credit", c)),
                F.lit(300),
            ),
            F.lit(850),
        )
        .cast("int")
        .alias("credit_score"),
        _choice(_uniform(seed, "country", c), COUNTRY_P).alias("country"),
    )

    channel_effect = _choice_map(F.col("channel"), FRAUD_CHANNEL)
    logit = (
        F.lit(FRAUD_INTERCEPT)
        + FRAUD_COEF["amount"] * F.log(F.col("amount") / AMOUNT_MEDIAN)
        + FRAUD_COEF["distance_km"] * F.log((F.col("distance_km") + 1.0) / 9.0)
        + FRAUD_COEF["account_age_days"] * F.log((F.col("account_age_days") + 1.0) / 500.0)
        + channel_effect
    )
    labelled = per_customer.select(
        "*",
        (F.col("u_fraud") < F.lit(1.0) / (F.lit(1.0) + F.exp(-logit)))
        .cast("int")
        .alias("is_fraud"),
        _dirt_kind(F.col("u_dirt")).alias("dirt"),
    )
    return _with_lines(labelled)


def _choice_map(col: Column, mapping: dict[str, float]) -> Column:
    expr = None
    for key, value in mapping.items():
        expr = F.when(col == key, value) if expr is None else expr.when(col == key, value)
    return expr.otherwise(0.0)


def _dirt_kind(u: Column) -> Column:
    """The dirt kind of a record: cumulative DIRT_FRACTIONS intervals, null for a clean one."""
    expr = None
    cum = 0.0
    for kind, p in DIRT_FRACTIONS.items():
        cum += p
        expr = F.when(u < cum, kind) if expr is None else expr.when(u < cum, kind)
    return expr.otherwise(F.lit(None).cast("string"))


def _with_lines(df: DataFrame) -> DataFrame:
    """Turns typed clean values + dirt kind into the CSV line of each record."""
    kind = F.col("dirt")
    ud, uv = F.col("u_detail"), F.col("u_value")

    def is_(k: str) -> Column:
        return F.coalesce(kind == k, F.lit(False))

    bad_number_col = _pick(ud, NUMERIC_DIRT_COLUMNS)
    bad_number = _pick(uv, BAD_NUMBERS)

    def number(name: str, text: Column) -> Column:
        return F.when(is_("unparsable_number") & (bad_number_col == name), bad_number).otherwise(
            text
        )

    amount = (
        F.when(is_("negative_amount"), -F.col("amount"))
        .when(
            is_("amount_outlier"),
            F.round(
                F.col("amount")
                * (OUTLIER_FACTOR[0] + (OUTLIER_FACTOR[1] - OUTLIER_FACTOR[0]) * uv),
                2,
            ),
        )
        .otherwise(F.col("amount"))
    )
    credit = (
        F.when(is_("null_credit_score"), F.lit(""))
        .when(is_("credit_score_out_of_range"), F.lit(str(CREDIT_SCORE_OUT_OF_RANGE)))
        .otherwise(F.col("credit_score").cast("string"))
    )
    channel_variant = F.coalesce(
        *[
            F.when(F.col("channel") == canon, _pick(uv, variants))
            for canon, variants in CHANNEL_VARIANTS.items()
        ]
    )
    channel = (
        F.when(is_("null_channel"), F.lit(""))
        .when(is_("channel_spelling"), channel_variant)
        .otherwise(F.col("channel"))
    )
    fields = [
        F.format_string("T%09d", F.col("n")),
        F.col("customer_id"),
        F.when(is_("unparsable_timestamp"), _pick(uv, BAD_TIMESTAMPS)).otherwise(
            F.col("event_time")
        ),
        number("amount", _fmt(amount, "%.2f")),
        number("account_age_days", F.col("account_age_days").cast("string")),
        number("num_items", F.col("num_items").cast("string")),
        number(
            "distance_km",
            F.when(is_("null_distance_km"), F.lit("")).otherwise(
                _fmt(F.col("distance_km"), "%.1f")
            ),
        ),
        number("credit_score", credit),
        channel,
        F.when(is_("merchant_category_case"), F.initcap(F.col("merchant_category"))).otherwise(
            F.col("merchant_category")
        ),
        F.when(is_("country_case"), F.lower(F.col("country"))).otherwise(F.col("country")),
        F.col("is_fraud").cast("string"),
    ]
    short = ud < 0.5
    detail = (
        F.when(is_("wrong_field_count"), F.when(short, "11 fields").otherwise("13 fields"))
        .when(is_("unparsable_number"), bad_number_col)
        .when(is_("channel_spelling"), channel_variant)
        .otherwise(F.lit(None).cast("string"))
        .alias("dirt_detail")
    )
    copies = F.when(is_("duplicate"), 2).otherwise(1).alias("copies")
    lines = df.select(
        F.concat_ws(",", *fields).alias("line"), copies, kind, detail, F.col("is_fraud")
    )
    line = F.col("line")
    wrong = F.col("dirt_detail")
    return lines.select(
        F.when(
            is_("wrong_field_count") & (wrong == "11 fields"), F.regexp_replace(line, ",[^,]*$", "")
        )
        .when(is_("wrong_field_count"), F.concat(line, F.lit(",extra")))
        .otherwise(line)
        .alias("line"),
        "copies",
        "dirt",
        "dirt_detail",
        "is_fraud",
    )


def with_header_per_partition(lines: DataFrame, header: str) -> DataFrame:
    """Puts ``header`` plus a newline in front of the first line of every partition.

    ``monotonically_increasing_id`` keeps the record number within the partition in its
    lower 33 bits (documented), so record number 0 is the first line the partition's task
    writes; written with ``DataFrame.write.text`` (one file per partition), every file then
    starts with exactly one header line.

    Args:
        lines: one string column ``line``.
        header: the header line, without newline.
    """
    first = F.monotonically_increasing_id().bitwiseAND(F.lit(_MASK33)) == 0
    return lines.select(
        F.when(first, F.concat(F.lit(header + "\n"), F.col("line")))
        .otherwise(F.col("line"))
        .alias("value")
    )


def _expand_copies(records: DataFrame) -> DataFrame:
    """One row per line to write: a duplicate record's line appears twice, adjacent."""
    return records.select(
        F.col("line"), F.explode(F.array_repeat(F.lit(0), F.col("copies"))).alias("_copy")
    ).select("line")


def _join(root: str, *parts: str) -> str:
    if "://" in root:
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(root, *parts)


def _write_text_file(spark: SparkSession, path: str, text: str) -> None:
    """Writes one small driver-side file (the manifest) through Hadoop's FileSystem,
    so ``out_dir`` may be any URI Spark writes to."""
    jvm = spark.sparkContext._jvm
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    # A private instance: the no-checksum setting must not reach the session's cached file
    # system (every later local write of the session would skip its .crc files).
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    fs = jvm.org.apache.hadoop.fs.FileSystem.newInstance(hpath.toUri(), conf)
    try:
        fs.setWriteChecksum(False)
        out = fs.create(hpath, True)
        try:
            out.write(bytearray(text.encode("utf-8")))
        finally:
            out.close()
    finally:
        fs.close()


def _name_parts_csv(spark: SparkSession, directory: str) -> None:
    """Renames Spark's ``part-*.txt`` outputs to ``part-NNNNN.csv`` (what they are), through
    Hadoop's FileSystem so any URI Spark writes to works."""
    jvm = spark.sparkContext._jvm
    hdir = jvm.org.apache.hadoop.fs.Path(directory)
    fs = hdir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    parts = sorted(
        st.getPath().getName()
        for st in fs.listStatus(hdir)
        if st.getPath().getName().startswith("part-")
    )
    for name in parts:
        number = name.split("-")[1]
        fs.rename(
            jvm.org.apache.hadoop.fs.Path(hdir, name),
            jvm.org.apache.hadoop.fs.Path(hdir, f"part-{number}.csv"),
        )


def generate_sample_data(
    spark: SparkSession,
    out_dir: str,
    rows: int,
    seed: int = 42,
    current_rows: int | None = None,
    files: int = 2,
) -> SampleDataSummary:
    """Writes the reference and current batches and their MANIFEST.json (see module doc).

    Existing output under ``out_dir/reference``, ``out_dir/current`` and the manifest is
    replaced. Runs three Spark jobs: one write per batch and one aggregation for the manifest.

    Args:
        spark: the session.
        out_dir: directory (or URI) that receives ``reference/``, ``current/`` and
            ``MANIFEST.json``.
        rows: records of the reference batch (before duplicates are added).
        seed: the same seed gives byte-identical files; another seed other data.
        current_rows: records of the current batch (default ``rows // 3``: the same rate of
            transactions over 30 instead of 90 days).
        files: part files per batch (each starts with the header line).

    Returns:
        A :class:`SampleDataSummary` with paths and the counts written to the manifest.

    Raises:
        ValueError: ``files`` < 1, a batch with fewer records than ``files`` (a file would
            have no line), or more than 10^9 records in all (transaction ids have 9 digits).
    """
    if files < 1:
        raise ValueError(f"files must be at least 1, got {files}")
    current_rows = max(rows // 3, files) if current_rows is None else current_rows
    for name, n in (("rows", rows), ("current_rows", current_rows)):
        if n < files:
            raise ValueError(
                f"{name}={n} is smaller than files={files}: every file needs at least one line"
            )
    if rows + current_rows > 10**9:
        raise ValueError(
            f"rows + current_rows = {rows + current_rows} exceeds 10^9: transaction ids "
            "have 9 digits"
        )
    customers = max(1, min(rows // ROWS_PER_CUSTOMER, 999_999))
    specs = [
        _BatchSpec("reference", rows, 0, REFERENCE_START, REFERENCE_DAYS),
        _BatchSpec("current", current_rows, rows, CURRENT_START, CURRENT_DAYS),
    ]
    frames = {s.name: _batch_records(spark, s, seed, customers, files) for s in specs}
    paths = {s.name: _join(out_dir, s.name) for s in specs}

    for s in specs:
        describe(spark, f"sample data: write {s.name} batch ({s.rows} records, {files} files)")
        (
            with_header_per_partition(_expand_copies(frames[s.name]), HEADER)
            .write.mode("overwrite")
            .option("compression", "none")
            .text(paths[s.name])
        )
        _name_parts_csv(spark, paths[s.name])

    describe(spark, "sample data: count injected dirt for the manifest")
    counted = None
    for s in specs:
        part = frames[s.name].select(
            F.lit(s.name).alias("batch"), "dirt", "dirt_detail", "is_fraud", "copies"
        )
        counted = part if counted is None else counted.unionByName(part)
    agg_rows = (
        counted.groupBy("batch", "dirt", "dirt_detail")
        .agg(
            F.count(F.lit(1)).alias("records"),
            F.sum("copies").alias("lines"),
            F.sum("is_fraud").alias("fraud"),
        )
        .collect()
    )
    manifest, batches = _manifest(agg_rows, specs, paths, seed, files, customers)
    manifest_path = _join(out_dir, MANIFEST_NAME)
    _write_text_file(spark, manifest_path, json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return SampleDataSummary(out_dir=out_dir, manifest_path=manifest_path, batches=batches)


def _manifest(
    agg_rows: list[Any],
    specs: list[_BatchSpec],
    paths: dict[str, str],
    seed: int,
    files: int,
    customers: int,
) -> tuple[dict[str, Any], dict[str, BatchSummary]]:
    """The manifest document and the per-batch summaries from the (batch, kind) counts."""
    batches: dict[str, BatchSummary] = {}
    batch_docs: dict[str, Any] = {}
    for s in specs:
        mine = [r for r in agg_rows if r["batch"] == s.name]
        dirt = {k: 0 for k in DIRT_FRACTIONS}
        detail: dict[str, dict[str, int]] = {}
        for r in mine:
            if r["dirt"] is None:
                continue
            dirt[r["dirt"]] += int(r["records"])
            if r["dirt_detail"] is not None:
                d = detail.setdefault(r["dirt"], {})
                d[r["dirt_detail"]] = d.get(r["dirt_detail"], 0) + int(r["records"])
        records = sum(int(r["records"]) for r in mine)
        lines = sum(int(r["lines"]) for r in mine)
        fraud = sum(int(r["fraud"] or 0) for r in mine)
        batches[s.name] = BatchSummary(s.name, paths[s.name], records, lines, dirt, fraud)
        batch_docs[s.name] = {
            "path": s.name,
            "records": records,
            "lines": lines,
            "files": files,
            "first_transaction_id": f"T{s.offset:09d}",
            "event_time_from": s.start,
            "days": s.days,
            "fraud": fraud,
            "dirt": dirt,
            "dirt_detail": {k: dict(sorted(v.items())) for k, v in sorted(detail.items())},
            "malformed_lines": sum(dirt[k] for k in MALFORMED_KINDS),
        }
    manifest = {
        "generator": "ml_engine.sample_data",
        "schema": "schemas/transactions.yaml",
        "seed": seed,
        "header": list(COLUMNS),
        "timestamp_format": TIMESTAMP_FORMAT,
        "customers": customers,
        "batches": batch_docs,
        "dirt_fractions": DIRT_FRACTIONS,
        "dirt_descriptions": DIRT_DESCRIPTIONS,
        "malformed_kinds": list(MALFORMED_KINDS),
        "bad_numbers": list(BAD_NUMBERS),
        "bad_timestamps": list(BAD_TIMESTAMPS),
        "channel_variants": {k: list(v) for k, v in CHANNEL_VARIANTS.items()},
        "drifted_features": list(DRIFTED_FEATURES),
        "drift": {
            "amount": {
                "how": "lognormal median multiplied",
                "median_factor": AMOUNT_DRIFT_FACTOR,
                "reference_median": AMOUNT_MEDIAN,
                "current_median": AMOUNT_MEDIAN * AMOUNT_DRIFT_FACTOR,
                "sigma": AMOUNT_SIGMA,
            },
            "channel": {
                "how": "category probabilities changed",
                "reference": CHANNEL_P["reference"],
                "current": CHANNEL_P["current"],
            },
        },
        "fraud_model": {
            "intercept": FRAUD_INTERCEPT,
            "coefficients": FRAUD_COEF,
            "channel_effect": FRAUD_CHANNEL,
        },
    }
    return manifest, batches
