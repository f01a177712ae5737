"""The sample data generator: layout, determinism, dirt proportions, drift, learnable label.

Every expectation is computed here from the files on disk (plain Python / pandas / scipy) and
from the module's documented constants, never from the generator's own counting code; the
manifest is then checked against those independent counts.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, optimize, stats

from ml_engine import sample_data as sd
from ml_engine.schemas import load_schema

ROWS = 12_000
CURRENT_ROWS = 4_000
SEED = 42
CHANNELS = {"web", "app", "store", "phone"}
MERCHANTS = {"grocery", "electronics", "travel", "fashion", "gaming", "other"}
NUMBER_RE = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
INT_RE = re.compile(r"^-?[0-9]+$")
NUMERIC = ("amount", "account_age_days", "num_items", "distance_km", "credit_score")


def part_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("part-*"))


def data_lines(directory: Path) -> list[str]:
    """All lines of a batch in file order, the first (header) line of each file removed."""
    out: list[str] = []
    for f in part_files(directory):
        out += f.read_text(encoding="utf-8").splitlines()[1:]
    return out


def classify(line: str) -> tuple[str | None, str | None]:
    """Independent reading of one line: (dirt kind, detail) or (None, None) when clean."""
    fields = line.split(",")
    if len(fields) != 12:
        return "wrong_field_count", f"{len(fields)} fields"
    rec = dict(zip(sd.COLUMNS, fields, strict=True))
    try:
        datetime.strptime(rec["event_time"], "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return "unparsable_timestamp", None
    for col in NUMERIC:
        pattern = NUMBER_RE if col in ("amount", "distance_km") else INT_RE
        if rec[col] != "" and not pattern.match(rec[col]):
            return "unparsable_number", col
    if rec["credit_score"] == "":
        return "null_credit_score", None
    if rec["distance_km"] == "":
        return "null_distance_km", None
    if rec["channel"] == "":
        return "null_channel", None
    if float(rec["amount"]) < 0:
        return "negative_amount", None
    if int(rec["credit_score"]) == 999:
        return "credit_score_out_of_range", None
    if rec["channel"] not in CHANNELS:
        return "channel_spelling", rec["channel"]
    if rec["merchant_category"] not in MERCHANTS:
        return "merchant_category_case", None
    if rec["country"] != rec["country"].upper():
        return "country_case", None
    return None, None


def independent_counts(lines: list[str]) -> tuple[Counter, dict[str, Counter], int]:
    """(count per kind, detail counts, number of duplicate lines), from the lines alone."""
    occurrences = Counter(lines)
    kinds: Counter = Counter()
    details: dict[str, Counter] = {}
    for line in occurrences:
        kind, detail = classify(line)
        if kind is not None:
            kinds[kind] += 1
            if detail is not None:
                details.setdefault(kind, Counter())[detail] += 1
    duplicates = sum(n - 1 for n in occurrences.values())
    kinds["duplicate"] = duplicates
    return kinds, details, duplicates


def clean_frame(directory: Path) -> pd.DataFrame:
    """The batch's clean records (dirt removed by the independent classifier), typed."""
    rows = [line.split(",") for line in dict.fromkeys(data_lines(directory))]
    rows = [r for r in rows if classify(",".join(r))[0] is None]
    df = pd.DataFrame(rows, columns=list(sd.COLUMNS))
    for col in ("amount", "distance_km"):
        df[col] = df[col].astype(float)
    for col in ("account_age_days", "num_items", "credit_score", "is_fraud"):
        df[col] = df[col].astype(int)
    df["event_time"] = pd.to_datetime(df["event_time"], format="%Y-%m-%d %H:%M:%S")
    return df


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    summary = sd.generate_sample_data(
        spark, str(out), rows=ROWS, seed=SEED, current_rows=CURRENT_ROWS, files=2
    )
    manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    return out, summary, manifest


@pytest.fixture(scope="module")
def small_runs(spark, tmp_path_factory):
    """Small batches: seed 7 twice with 2 files, seed 7 with 3 files, seed 8 with 2 files."""
    runs = {}
    for name, seed, files in (("a", 7, 2), ("b", 7, 2), ("three_files", 7, 3), ("seed8", 8, 2)):
        out = tmp_path_factory.mktemp(f"small_{name}")
        sd.generate_sample_data(spark, str(out), rows=240, seed=seed, current_rows=90, files=files)
        runs[name] = out
    return runs


# --------------------------------------------------------------------------- layout


def test_every_file_starts_with_exactly_one_header_line(generated, small_runs, sample_schema_path):
    header = ",".join(load_schema(sample_schema_path).names)
    dirs = [generated[0] / b for b in sd.BATCHES]
    dirs += [small_runs["three_files"] / b for b in sd.BATCHES]
    expected_files = [2, 2, 3, 3]
    for directory, n_files in zip(dirs, expected_files, strict=True):
        files = part_files(directory)
        assert len(files) == n_files, directory
        for f in files:
            lines = f.read_text(encoding="utf-8").splitlines()
            assert lines[0] == header, f
            assert lines.count(header) == 1, f
            assert len(lines) > 1, f


def test_manifest_names_drifted_features_and_counts_lines(generated):
    out, summary, manifest = generated
    assert manifest["drifted_features"] == ["amount", "channel"]
    assert summary.drifted_features == ["amount", "channel"]
    assert manifest["header"] == list(sd.COLUMNS)
    for batch, records in (("reference", ROWS), ("current", CURRENT_ROWS)):
        lines = data_lines(out / batch)
        doc = manifest["batches"][batch]
        assert doc["records"] == records
        assert doc["lines"] == len(lines)
        assert len(set(lines)) == records  # every record once, duplicates are exact copies
        assert doc["malformed_lines"] == sum(doc["dirt"][k] for k in sd.MALFORMED_KINDS)
        assert summary.batches[batch].lines == len(lines)
        assert summary.batches[batch].dirt == doc["dirt"]


def test_rows_follow_the_schema_formats_and_time_windows(generated):
    out = generated[0]
    ref, cur = clean_frame(out / "reference"), clean_frame(out / "current")
    for df in (ref, cur):
        assert df["transaction_id"].str.fullmatch(r"T[0-9]{9}").all()
        assert df["customer_id"].str.fullmatch(r"C[0-9]{6}").all()
        assert df["country"].str.fullmatch(r"[A-Z]{2}").all()
        assert set(df["is_fraud"]) == {0, 1}
        assert (df["amount"] > 0).all() and (df["num_items"] >= 1).all()
        assert df["credit_score"].between(300, 850).all()
    assert ref["event_time"].min() >= pd.Timestamp("2026-01-01")
    assert ref["event_time"].max() < pd.Timestamp("2026-04-01")
    assert cur["event_time"].min() >= pd.Timestamp("2026-04-01")
    assert cur["event_time"].max() < pd.Timestamp("2026-05-01")
    assert not set(ref["transaction_id"]) & set(cur["transaction_id"])
    # A few thousand customers at full size; here 1,500 with many transactions each.
    per_customer = ref.groupby("customer_id").size()
    assert 1_000 <= len(per_customer) <= ROWS // sd.ROWS_PER_CUSTOMER
    assert per_customer.mean() >= 5
    assert per_customer.max() >= 40
    # Customers come back in the later batch.
    assert (
        len(set(cur["customer_id"]) & set(ref["customer_id"])) > 0.8 * cur["customer_id"].nunique()
    )


# --------------------------------------------------------------------------- determinism


def test_same_seed_writes_identical_files(small_runs):
    for batch in sd.BATCHES:
        a = [f.read_bytes() for f in part_files(small_runs["a"] / batch)]
        b = [f.read_bytes() for f in part_files(small_runs["b"] / batch)]
        assert a == b
    assert (small_runs["a"] / "MANIFEST.json").read_text() == (
        small_runs["b"] / "MANIFEST.json"
    ).read_text()


def test_line_content_does_not_depend_on_the_number_of_files(small_runs):
    for batch in sd.BATCHES:
        assert data_lines(small_runs["a"] / batch) == data_lines(small_runs["three_files"] / batch)


def test_another_seed_writes_other_data(small_runs):
    for batch in sd.BATCHES:
        a = data_lines(small_runs["a"] / batch)
        other = data_lines(small_runs["seed8"] / batch)
        # Same transaction ids, different values.
        assert [x.split(",")[0] for x in dict.fromkeys(a)] == [
            x.split(",")[0] for x in dict.fromkeys(other)
        ]
        differing = sum(x != y for x, y in zip(dict.fromkeys(a), dict.fromkeys(other), strict=True))
        assert differing > 0.95 * len(dict.fromkeys(a))


def test_fewer_records_than_files_is_refused(spark, tmp_path):
    with pytest.raises(ValueError, match="current_rows=2 is smaller than files=3"):
        sd.generate_sample_data(spark, str(tmp_path), rows=30, current_rows=2, files=3)


# --------------------------------------------------------------------------- dirt


@pytest.mark.parametrize("batch", sd.BATCHES)
def test_dirt_counts_match_manifest_and_documented_fractions(generated, batch):
    out, _, manifest = generated
    lines = data_lines(out / batch)
    kinds, details, _ = independent_counts(lines)
    records = manifest["batches"][batch]["records"]
    doc_dirt = manifest["batches"][batch]["dirt"]
    assert set(doc_dirt) == set(sd.DIRT_FRACTIONS)
    amount_outliers = doc_dirt["amount_outlier"]
    for kind, fraction in sd.DIRT_FRACTIONS.items():
        if kind != "amount_outlier":
            assert kinds[kind] == doc_dirt[kind], kind
        # Each kind's count is Binomial(records, fraction): 99.99 % central interval.
        lo, hi = stats.binom.interval(0.9999, records, fraction)
        assert lo <= doc_dirt[kind] <= hi, (kind, doc_dirt[kind], lo, hi)
    # The breakdowns the manifest gives are the ones in the lines.
    doc_detail = manifest["batches"][batch]["dirt_detail"]
    assert doc_detail["wrong_field_count"] == dict(details["wrong_field_count"])
    assert set(details["wrong_field_count"]) <= {"11 fields", "13 fields"}
    assert doc_detail["unparsable_number"] == dict(details["unparsable_number"])
    assert doc_detail["channel_spelling"] == dict(details["channel_spelling"])
    variants = {v for vs in sd.CHANNEL_VARIANTS.values() for v in vs}
    assert set(details["channel_spelling"]) <= variants
    assert {" Web", "WEB", "online", "mobile", "shop"} <= set(details["channel_spelling"])
    assert amount_outliers > 0


def test_amount_outliers_form_the_documented_heavy_tail(generated):
    """Amounts above the clean lognormal's 1 - 1e-4 quantile: mostly the injected outliers.

    For an outlier (clean amount x U(50, 200)) the chance to exceed that threshold is an
    integral over the factor; the count is then Binomial(outliers, q) plus a few natural ones.
    """
    out, _, manifest = generated
    outliers = manifest["batches"]["reference"]["dirt"]["amount_outlier"]
    clean = stats.lognorm(s=sd.AMOUNT_SIGMA, scale=sd.AMOUNT_MEDIAN)
    threshold = clean.ppf(1 - 1e-4)
    q, _ = integrate.quad(lambda f: clean.sf(threshold / f) / 150.0, 50.0, 200.0)
    amounts = []
    for line in dict.fromkeys(data_lines(out / "reference")):
        fields = line.split(",")
        if len(fields) == 12 and NUMBER_RE.match(fields[3]):
            amounts.append(float(fields[3]))
    above = sum(a > threshold for a in amounts)
    lo = stats.binom.ppf(1e-4, outliers, q)
    hi = stats.binom.isf(1e-4, outliers, q) + stats.binom.isf(1e-4, ROWS, 1e-4)
    assert lo <= above <= hi, (above, lo, hi)


# --------------------------------------------------------------------------- drift and label


def test_drift_only_in_amount_and_channel(generated):
    out = generated[0]
    ref, cur = clean_frame(out / "reference"), clean_frame(out / "current")
    p_amount = stats.ks_2samp(ref["amount"], cur["amount"]).pvalue
    assert p_amount < 1e-12
    # The median moved by the documented factor (sampling error of a median at n ~ 3,500).
    assert cur["amount"].median() / ref["amount"].median() == pytest.approx(
        sd.AMOUNT_DRIFT_FACTOR, rel=0.1
    )
    for col in ("account_age_days", "num_items", "distance_km", "credit_score"):
        assert stats.ks_2samp(ref[col], cur[col]).pvalue > 0.001, col

    def chi2_p(col: str) -> float:
        table = pd.crosstab(
            np.r_[np.zeros(len(ref)), np.ones(len(cur))], np.r_[ref[col].values, cur[col].values]
        )
        return stats.chi2_contingency(table.values).pvalue

    assert chi2_p("channel") < 1e-12
    for col in ("merchant_category", "country"):
        assert chi2_p(col) > 0.001, col
    # Channel shares follow the documented probabilities in each batch.
    for df, batch in ((ref, "reference"), (cur, "current")):
        counts = df["channel"].value_counts()
        probs = sd.CHANNEL_P[batch]
        observed = [counts.get(c, 0) for c in probs]
        expected = [len(df) * p for p in probs.values()]
        assert stats.chisquare(observed, expected).pvalue > 0.001, batch


def test_fraud_label_is_rare_and_learnable(generated):
    """~4 % positives; a logistic regression fitted on the reference batch (scipy) ranks the
    current batch with a ROC AUC well above chance (AUC from the Mann-Whitney U statistic)."""
    out = generated[0]
    ref, cur = clean_frame(out / "reference"), clean_frame(out / "current")
    assert 0.03 <= ref["is_fraud"].mean() <= 0.05

    def design(df: pd.DataFrame) -> np.ndarray:
        cols = [
            np.ones(len(df)),
            np.log(df["amount"].to_numpy()),
            np.log1p(df["distance_km"].to_numpy()),
            np.log1p(df["account_age_days"].to_numpy()),
        ]
        cols += [(df["channel"] == c).to_numpy(float) for c in ("web", "app", "phone")]
        return np.column_stack(cols)

    x, y = design(ref), ref["is_fraud"].to_numpy()

    def loss(beta):
        z = x @ beta
        return np.sum(np.logaddexp(0, z) - y * z)

    beta = optimize.minimize(loss, np.zeros(x.shape[1]), method="BFGS").x
    score = design(cur) @ beta
    yc = cur["is_fraud"].to_numpy().astype(bool)
    u = stats.mannwhitneyu(score[yc], score[~yc]).statistic
    auc = u / (yc.sum() * (~yc).sum())
    assert auc > 0.75
    assert beta[1] > 0 and beta[2] > 0 and beta[3] < 0  # the documented directions
    assert not math.isnan(auc)


def test_summary_lines_name_each_batch_its_dirt_and_the_drift():
    batch = sd.BatchSummary("current", "/d/raw/current", 6666, 6731, {"duplicate": 65, "x": 0}, 517)
    summary = sd.SampleDataSummary("/d/raw", "/d/raw/MANIFEST.json", {"current": batch})
    assert summary.lines() == [
        "current: 6,666 records in 6,731 lines at /d/raw/current (517 fraud); dirty: duplicate 65",
        "drifted in current: amount, channel (what each batch holds: /d/raw/MANIFEST.json)",
    ]
