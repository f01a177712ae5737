"""Dataset profiles for drift: every column of a DataFrame summarised in ONE Spark aggregation.

A :class:`DatasetProfile` is small, JSON-serialisable and self-sufficient: the drift statistics
(:mod:`ml_engine.drift.stats`) are computed from two profiles on the driver, so a reference
profile is computed once per model version, stored, and never needs its data again.

Numeric columns (:class:`NumericProfile`), values cast to double:

* ``count``: values that are neither null nor NaN; ``null_count``; ``nan_count``. NaN is not a
  value: it is left out of the sketch, the moments and the bin shares (Spark's KLL aggregate
  ignores it). ``+inf``/``-inf`` are values: they are in the sketch (so in the outer bins, the
  KS statistic and the Wasserstein distance, which is then infinite unless both sides hold the
  same share of them), but ``mean`` and ``std`` are taken over the finite values only.
* ``mean``, ``std`` (sample standard deviation, ``n - 1``; None for fewer than two finite
  values, and both None in a profile made with ``moments=False``), ``min``, ``max`` (exact,
  from the sketch).
* ``sketch``: a KLL quantile sketch (``kll_sketch_agg_double``, Apache DataSketches format, read
  with ``datasketches.kll_doubles_sketch``). With the default ``k = 4096`` it holds every value
  (exact) while the column has at most 4096 values; beyond, any rank it answers is within about
  0.07 % (one rank) / 0.1 % (all ranks at once, as a CDF) of the truth with 99 % confidence, and
  it weighs about 75 KB at a million rows. Spark compacts sketches at random, so two profiles of
  the same large data can differ within that error; a stored profile does not change.
* ``edges``/``fractions``: quantile bins. ``edges`` are the sketch's inverted-CDF quantiles at
  ``1/b, 2/b, ..., (b-1)/b`` (the smallest value ``v`` with ``P(X <= v) >= q``, numpy's
  ``method="inverted_cdf"``), duplicates removed and edges at or above the maximum dropped, so
  ties (a column with few distinct values) give fewer bins, never empty ones. Bins are closed on
  the right: ``(-inf, e_1], (e_1, e_2], ..., (e_m, +inf)``, the outer bins open-ended; a column
  with a single value has one bin. ``fractions`` are the shares of the column's values per bin
  (they sum to 1). A current batch is compared on the REFERENCE's edges, its shares read from
  its own sketch (:func:`bin_fractions`).

Categorical columns (:class:`CategoricalProfile`), values cast to string: ``count`` (non-null),
``null_count`` and ``counts`` (category -> count) from Spark's ``approx_top_k`` (a frequent-items
sketch), most frequent first, at most ``top_k`` categories. Counts are exact while the column has
fewer distinct values than ``max_items_tracked`` (default 10 000); beyond that the sketch lists
only the categories it can prove frequent, with estimated counts (error up to about
``2 * rows / max_items_tracked``), possibly none for a flat high-cardinality column. What is not
listed is ``other_count``; ``complete`` says that the listed counts account for every value.

Example::

    reference = profile_dataframe(training_df, ["amount"], ["country"],
                                  source={"table": path, "delta_version": 12})
    text = reference.to_json()                  # store it
    current = profile_dataframe(batch_df, ["amount"], ["country"])
    result = compare(DatasetProfile.from_json(text), current, thresholds, drift_share=0.5)
"""

from __future__ import annotations

import base64
import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
from datasketches import kll_doubles_sketch
from pyspark.sql import Column, DataFrame, Row
from pyspark.sql import functions as F
from pyspark.sql import types as T

PROFILE_FORMAT = "ml_engine.drift.profile/1"
NUMERIC = "numeric"
CATEGORICAL = "categorical"
DEFAULT_SKETCH_K = 4096
DEFAULT_BINS = 10
DEFAULT_TOP_K = 1000
DEFAULT_MAX_ITEMS_TRACKED = 10_000
# Bounds Spark puts on the arguments of kll_sketch_agg_double and approx_top_k.
SKETCH_K_RANGE = (8, 65_535)
MAX_ITEMS_TRACKED_LIMIT = 1_000_000


def read_sketch(data: bytes) -> kll_doubles_sketch:
    """Deserialises a KLL sketch written by Spark's ``kll_sketch_agg_double``."""
    return kll_doubles_sketch.deserialize(bytes(data))


def quantile_edges(sketch: kll_doubles_sketch, bins: int) -> tuple[float, ...]:
    """Bin edges at the sketch's quantiles ``1/bins ... (bins-1)/bins``.

    Quantiles are inverted-CDF (the smallest value ``v`` with ``P(X <= v) >= q``); repeated
    edges are removed and edges at or above the sketch's maximum dropped, so that every bin of
    ``(-inf, e_1], (e_1, e_2], ..., (e_m, +inf)`` holds at least one of the sketch's values.

    Args:
        sketch: the reference column's sketch.
        bins: the number of quantile bins wanted (at least 2); ties give fewer.

    Returns:
        Strictly increasing edges; empty for an empty or single-valued sketch.

    Raises:
        ValueError: ``bins`` is below 2.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if sketch.is_empty():
        return ()
    top = sketch.get_max_value()
    qs = [sketch.get_quantile(i / bins, inclusive=True) for i in range(1, bins)]
    return tuple(float(e) for e in sorted(set(qs)) if e < top)


def bin_fractions(sketch: kll_doubles_sketch, edges: Sequence[float]) -> tuple[float, ...]:
    """Shares of the sketch's values in the bins ``(-inf, e_1], ..., (e_m, +inf)``.

    Args:
        sketch: any column's sketch (typically the current batch's).
        edges: strictly increasing edges (typically the reference's).

    Returns:
        ``len(edges) + 1`` shares summing to 1; empty for an empty sketch.
    """
    if sketch.is_empty():
        return ()
    # inclusive=True: P(X <= e), so a value equal to an edge falls in the bin the edge closes.
    cdf = sketch.get_cdf([float(e) for e in edges], inclusive=True)
    return tuple(float(f) for f in np.diff(np.concatenate([[0.0], cdf])))


@dataclass(frozen=True)
class NumericProfile:
    """Profile of one numeric column (see the module docstring for every field's meaning)."""

    count: int
    null_count: int
    nan_count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    sketch: bytes = field(repr=False)
    edges: tuple[float, ...]
    fractions: tuple[float, ...]

    kind = NUMERIC

    @functools.cached_property
    def kll(self) -> kll_doubles_sketch:
        """The deserialised KLL sketch."""
        return read_sketch(self.sketch)

    @property
    def exact(self) -> bool:
        """True when the sketch holds every value (quantiles, CDF, KS and Wasserstein exact)."""
        return not self.kll.is_estimation_mode()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (sketch as base64, non-finite floats as strings)."""
        return {
            "kind": NUMERIC,
            "count": self.count,
            "null_count": self.null_count,
            "nan_count": self.nan_count,
            "mean": _float_out(self.mean),
            "std": _float_out(self.std),
            "min": _float_out(self.min),
            "max": _float_out(self.max),
            "edges": [_float_out(e) for e in self.edges],
            "fractions": list(self.fractions),
            "sketch": base64.b64encode(self.sketch).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NumericProfile:
        """The inverse of :meth:`to_dict`."""
        return cls(
            count=int(data["count"]),
            null_count=int(data["null_count"]),
            nan_count=int(data["nan_count"]),
            mean=_float_in(data["mean"]),
            std=_float_in(data["std"]),
            min=_float_in(data["min"]),
            max=_float_in(data["max"]),
            sketch=base64.b64decode(data["sketch"]),
            edges=tuple(_float_in(e) for e in data["edges"]),
            fractions=tuple(float(f) for f in data["fractions"]),
        )


@dataclass(frozen=True)
class CategoricalProfile:
    """Profile of one categorical column (see the module docstring for every field's meaning)."""

    count: int
    null_count: int
    counts: dict[str, int]
    other_count: int
    complete: bool

    kind = CATEGORICAL

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; ``counts`` as ``[category, count]`` pairs, most frequent first."""
        return {
            "kind": CATEGORICAL,
            "count": self.count,
            "null_count": self.null_count,
            "counts": [[k, v] for k, v in self.counts.items()],
            "other_count": self.other_count,
            "complete": self.complete,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CategoricalProfile:
        """The inverse of :meth:`to_dict`."""
        return cls(
            count=int(data["count"]),
            null_count=int(data["null_count"]),
            counts={str(k): int(v) for k, v in data["counts"]},
            other_count=int(data["other_count"]),
            complete=bool(data["complete"]),
        )


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True)
class DatasetProfile:
    """Profiles of the columns of one data set (a reference or a batch).

    Attributes:
        rows: the data set's row count.
        columns: column name -> profile, in the order the columns were profiled.
        source: free-form JSON-serialisable metadata (table path, Delta version, model
            version, batch id...).
        sketch_k, top_k, max_items_tracked: the settings the profile was made with.
    """

    rows: int
    columns: dict[str, ColumnProfile]
    source: dict[str, Any] = field(default_factory=dict)
    sketch_k: int = DEFAULT_SKETCH_K
    top_k: int = DEFAULT_TOP_K
    max_items_tracked: int = DEFAULT_MAX_ITEMS_TRACKED

    @property
    def numeric(self) -> list[str]:
        """Names of the numeric columns."""
        return [c for c, p in self.columns.items() if p.kind == NUMERIC]

    @property
    def categorical(self) -> list[str]:
        """Names of the categorical columns."""
        return [c for c, p in self.columns.items() if p.kind == CATEGORICAL]

    def edges(self) -> dict[str, tuple[float, ...]]:
        """Numeric column -> bin edges, the ``bins`` argument that profiles a batch on these bins."""
        return {c: p.edges for c, p in self.columns.items() if isinstance(p, NumericProfile)}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the format :meth:`to_json` writes)."""
        return {
            "format": PROFILE_FORMAT,
            "rows": self.rows,
            "sketch_k": self.sketch_k,
            "top_k": self.top_k,
            "max_items_tracked": self.max_items_tracked,
            "source": dict(self.source),
            "columns": {c: p.to_dict() for c, p in self.columns.items()},
        }

    def to_json(self, indent: int | None = None) -> str:
        """The profile as strict JSON (no NaN/Infinity literals).

        Raises:
            TypeError: ``source`` holds a value JSON cannot represent.
        """
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetProfile:
        """The inverse of :meth:`to_dict`.

        Raises:
            ValueError: ``data`` is not a profile of this format, or a column kind is unknown.
        """
        if data.get("format") != PROFILE_FORMAT:
            raise ValueError(
                f"not a drift profile: format is {data.get('format')!r}, expected "
                f"{PROFILE_FORMAT!r}; profile the data again with profile_dataframe"
            )
        columns: dict[str, ColumnProfile] = {}
        for name, col in data["columns"].items():
            if col.get("kind") == NUMERIC:
                columns[name] = NumericProfile.from_dict(col)
            elif col.get("kind") == CATEGORICAL:
                columns[name] = CategoricalProfile.from_dict(col)
            else:
                raise ValueError(f"column {name!r}: unknown profile kind {col.get('kind')!r}")
        return cls(
            rows=int(data["rows"]),
            columns=columns,
            source=dict(data.get("source") or {}),
            sketch_k=int(data["sketch_k"]),
            top_k=int(data["top_k"]),
            max_items_tracked=int(data["max_items_tracked"]),
        )

    @classmethod
    def from_json(cls, text: str) -> DatasetProfile:
        """Reads a profile written by :meth:`to_json`.

        Raises:
            ValueError: the text is not JSON or not a profile of this format.
        """
        return cls.from_dict(json.loads(text))


def profile_dataframe(
    df: DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    sketch_k: int = DEFAULT_SKETCH_K,
    top_k: int = DEFAULT_TOP_K,
    max_items_tracked: int = DEFAULT_MAX_ITEMS_TRACKED,
    bins: int | Mapping[str, Sequence[float]] | None = None,
    moments: bool = True,
    source: Mapping[str, Any] | None = None,
) -> DatasetProfile:
    """Profiles columns of ``df`` in one aggregation: ONE Spark job, whatever their number.

    Only the one-row aggregate reaches the driver. See the module docstring for what each
    profile holds and how NaN, infinities, ties and high-cardinality columns are treated.

    Args:
        df: the rows to profile (no rows gives a profile with ``rows = 0``).
        numeric: numeric (or boolean) columns, profiled as doubles.
        categorical: columns profiled as strings.
        sketch_k: KLL sketch size ``k`` (8 to 65535); exact up to ``k`` values per column.
        top_k: the most categories listed per categorical column.
        max_items_tracked: the frequent-items sketch's capacity (``top_k`` to 1 000 000);
            category counts are exact below this many distinct values.
        bins: quantile bins per numeric column (default 10), or column -> bin edges to use
            instead (e.g. ``reference.edges()``; columns it lacks get 10 quantile bins).
        moments: False leaves ``mean`` and ``std`` out (None) for a profile that only needs
            to be compared: drift statistics use the sketches and the REFERENCE's moments,
            and the aggregation without them runs about twice as fast (Spark's sketch
            aggregates take the whole aggregation out of code generation, so each moment
            then costs an interpreted update per row).
        source: free-form metadata stored with the profile (table, Delta version, ...).

    Returns:
        The :class:`DatasetProfile`, columns in the order numeric then categorical.

    Raises:
        ValueError: a column ``df`` lacks, a column named twice, a numeric column that is not
            numeric, or a setting out of range.
    """
    profiles = _profile(
        df, None, numeric, categorical, sketch_k, top_k, max_items_tracked, bins, moments, source
    )
    return profiles[None]


def profile_groups(
    df: DataFrame,
    by: str,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    sketch_k: int = DEFAULT_SKETCH_K,
    top_k: int = DEFAULT_TOP_K,
    max_items_tracked: int = DEFAULT_MAX_ITEMS_TRACKED,
    bins: int | Mapping[str, Sequence[float]] | None = None,
    moments: bool = True,
    source: Mapping[str, Any] | None = None,
) -> dict[Any, DatasetProfile]:
    """Profiles each group of rows sharing a value of ``by``, all in ONE Spark job.

    The same aggregation as :func:`profile_dataframe` in one ``groupBy``: the driver receives
    one row of sketches per group, so this is for a few groups (the batches of a window,
    segments, simulation trials), not for a high-cardinality key.

    Args:
        df: the rows to profile.
        by: the column whose values name the groups.
        numeric, categorical, sketch_k, top_k, max_items_tracked, bins, moments: as for
            :func:`profile_dataframe`.
        source: metadata stored with every group's profile, to which ``by: value`` is added.

    Returns:
        Group value -> its :class:`DatasetProfile`; groups without rows are absent.

    Raises:
        ValueError: as :func:`profile_dataframe`, or ``by`` is not a column of ``df``.
    """
    if by not in df.columns:
        raise ValueError(f"profile_groups: the group column {by!r} is not in {df.columns}")
    return _profile(
        df, by, numeric, categorical, sketch_k, top_k, max_items_tracked, bins, moments, source
    )


def _profile(
    df: DataFrame,
    by: str | None,
    numeric: Sequence[str],
    categorical: Sequence[str],
    sketch_k: int,
    top_k: int,
    max_items_tracked: int,
    bins: int | Mapping[str, Sequence[float]] | None,
    moments: bool,
    source: Mapping[str, Any] | None,
) -> dict[Any, DatasetProfile]:
    """One aggregation (grouped by ``by`` unless None) and the profiles made of its rows."""
    numeric, categorical = list(numeric), list(categorical)
    _check_columns(
        df, numeric, categorical, "profile_dataframe" if by is None else "profile_groups"
    )
    _check_settings(sketch_k, top_k, max_items_tracked, bins)
    aggs: list[Column] = [F.count(F.lit(1)).alias("rows")]
    for i, c in enumerate(numeric):
        aggs += _numeric_aggs(f"n{i}", _col(c).cast("double"), sketch_k, moments)
    for i, c in enumerate(categorical):
        aggs += _categorical_aggs(f"c{i}", c, top_k, max_items_tracked)

    sc = df.sparkSession.sparkContext
    previous = sc.getLocalProperty("spark.job.description")
    sc.setJobDescription(
        f"drift: profile {len(numeric)} numeric and {len(categorical)} categorical columns"
        + ("" if by is None else f" per {by}")
    )
    try:
        if by is None:
            rows = [df.agg(*aggs).first()]
        else:
            rows = df.groupBy(_col(by).alias("group")).agg(*aggs).collect()
    finally:
        sc.setLocalProperty("spark.job.description", previous)  # type: ignore[arg-type]

    profiles: dict[Any, DatasetProfile] = {}
    for row in rows:
        columns: dict[str, ColumnProfile] = {}
        for i, c in enumerate(numeric):
            edges = bins.get(c) if isinstance(bins, Mapping) else None
            n_bins = bins if isinstance(bins, int) else DEFAULT_BINS
            columns[c] = _numeric_profile(row, f"n{i}", n_bins, edges, moments)
        for i, c in enumerate(categorical):
            columns[c] = _categorical_profile(row, f"c{i}")
        key = None if by is None else row["group"]
        # The group value goes into source, which must stay JSON: other types as text.
        label = key if key is None or isinstance(key, (str, int, float, bool)) else str(key)
        profiles[key] = DatasetProfile(
            rows=int(row["rows"]),
            columns=columns,
            source={**(source or {}), **({} if by is None else {by: label})},
            sketch_k=sketch_k,
            top_k=top_k,
            max_items_tracked=max_items_tracked,
        )
    return profiles


# --------------------------------------------------------------------------- aggregation


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _col(name: str) -> Column:
    return F.col(_quoted(name))


def _numeric_aggs(prefix: str, x: Column, sketch_k: int, with_moments: bool) -> list[Column]:
    # abs(x) < inf is false for NaN (Spark orders NaN above +inf) and for +-inf.
    finite = F.when(F.abs(x) < F.lit(math.inf), x)
    moments = [
        F.avg(finite).alias(f"{prefix}_mean"),
        F.stddev_samp(finite).alias(f"{prefix}_std"),
    ]
    # The sketch holds the values that are neither null nor NaN, so NaN = non-null - sketch n
    # and nulls = rows - non-null.
    return [
        F.count(x).alias(f"{prefix}_nonnull"),
        *(moments if with_moments else []),
        F.kll_sketch_agg_double(x, sketch_k).alias(f"{prefix}_sketch"),
    ]


def _categorical_aggs(prefix: str, name: str, top_k: int, max_items: int) -> list[Column]:
    col = _quoted(name)
    # approx_top_k counts NULL as an item; the filter keeps it from taking a top-k slot.
    top = F.expr(
        f"approx_top_k(CAST({col} AS STRING), {top_k}, {max_items}) FILTER (WHERE {col} IS NOT NULL)"
    )
    return [F.count(_col(name)).alias(f"{prefix}_nonnull"), top.alias(f"{prefix}_top")]


def _numeric_profile(
    row: Row, prefix: str, bins: int, edges: Sequence[float] | None, moments: bool
) -> NumericProfile:
    data = bytes(row[f"{prefix}_sketch"])
    sketch = read_sketch(data)
    empty = sketch.is_empty()
    edges = quantile_edges(sketch, bins) if edges is None else tuple(float(e) for e in edges)
    nonnull = int(row[f"{prefix}_nonnull"])
    mean, std = (row[f"{prefix}_mean"], row[f"{prefix}_std"]) if moments else (None, None)
    return NumericProfile(
        count=int(sketch.n),
        null_count=int(row["rows"]) - nonnull,
        nan_count=nonnull - int(sketch.n),
        mean=mean,
        std=std,
        min=None if empty else float(sketch.get_min_value()),
        max=None if empty else float(sketch.get_max_value()),
        sketch=data,
        edges=() if empty else edges,
        fractions=bin_fractions(sketch, edges),
    )


def _categorical_profile(row: Row, prefix: str) -> CategoricalProfile:
    count = int(row[f"{prefix}_nonnull"])
    nulls = int(row["rows"]) - count
    counts = {str(t["item"]): int(t["count"]) for t in row[f"{prefix}_top"] or ()}
    listed = sum(counts.values())
    return CategoricalProfile(
        count=count,
        null_count=nulls,
        counts=counts,
        # Estimated counts (beyond max_items_tracked) may add up to more than the values.
        other_count=max(count - listed, 0),
        complete=listed == count,
    )


# --------------------------------------------------------------------------- checks and JSON


def _check_columns(df: DataFrame, numeric: list[str], categorical: list[str], where: str) -> None:
    types = {f.name: f.dataType for f in df.schema.fields}
    missing = [c for c in (*numeric, *categorical) if c not in types]
    if missing:
        raise ValueError(f"{where}: columns {missing} are not in {list(types)}")
    names = [*numeric, *categorical]
    repeated = sorted({c for c in names if names.count(c) > 1})
    if repeated:
        raise ValueError(
            f"{where}: columns {repeated} are named more than once "
            "(a column is either numeric or categorical)"
        )
    wrong = [c for c in numeric if not isinstance(types[c], (T.NumericType, T.BooleanType))]
    if wrong:
        raise ValueError(
            f"{where}: numeric columns {wrong} have types "
            f"{[types[c].simpleString() for c in wrong]}; profile them as categorical or cast them"
        )


def _check_settings(
    sketch_k: int, top_k: int, max_items: int, bins: int | Mapping[str, Sequence[float]] | None
) -> None:
    low, high = SKETCH_K_RANGE
    if not low <= sketch_k <= high:
        raise ValueError(f"sketch_k must be between {low} and {high}, got {sketch_k}")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    if not top_k <= max_items <= MAX_ITEMS_TRACKED_LIMIT:
        raise ValueError(
            f"max_items_tracked must be between top_k ({top_k}) and "
            f"{MAX_ITEMS_TRACKED_LIMIT}, got {max_items}"
        )
    if isinstance(bins, int) and bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    if isinstance(bins, Mapping):
        for c, edges in bins.items():
            e = [float(x) for x in edges]
            if any(math.isnan(x) for x in e) or any(b <= a for a, b in pairwise(e)):
                raise ValueError(f"bins[{c!r}]: edges {e} must be strictly increasing numbers")


def _float_out(x: float | None) -> float | str | None:
    """Strict JSON has no NaN or Infinity: those are written as strings."""
    if x is None or math.isfinite(x):
        return x
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def _float_in(x: float | str | None) -> float | None:
    return None if x is None else float(x)
