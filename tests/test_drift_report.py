"""The HTML drift report: self-contained, escaped, every feature and section, trend lines."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from ml_engine.config import DriftThresholds
from ml_engine.drift import compare, profile_dataframe, render_report

AMOUNT = "amount <usd>"
COUNTRY = "country & region"
WEIRD = "we`ird 'name\""
GONE = "gone"
NEW_CATEGORY = "<script>alert(1)</script>"
META = {"model": "fraud <v2>", "model_version": 7, "batch_id": "b4"}


@pytest.fixture(scope="module")
def sides(spark):
    rng = np.random.default_rng(3)
    n = 211
    schema = (
        f"`{AMOUNT}` double, `{COUNTRY}` string, `{WEIRD.replace('`', '``')}` double, {GONE} double"
    )

    def frame(shift: float, countries: list[str]):
        rows = zip(
            rng.normal(100 + shift, 10, n).tolist(),
            rng.choice(countries, n).tolist(),
            rng.normal(0, 1, n).tolist(),
            rng.normal(0, 1, n).tolist(),
            strict=True,
        )
        return spark.createDataFrame(list(rows), schema)

    reference = profile_dataframe(
        frame(0, ["FR", "DE", "IT"]),
        [AMOUNT, WEIRD, GONE],
        [COUNTRY],
        source={"table": "training_set", "delta_version": 3},
    )
    current = profile_dataframe(
        frame(15, ["FR", "DE", "IT", NEW_CATEGORY]).drop(GONE), [AMOUNT, WEIRD], [COUNTRY]
    )
    result = compare(reference, current, DriftThresholds(), drift_share=0.5)
    return reference, current, result


def _history(batches: list[str]) -> list[dict]:
    return [
        {
            "feature": AMOUNT,
            "metric": "psi",
            "value": 0.02 * (i + 1),
            "threshold": 0.25,
            "drifted": False,
            "batch_id": b,
            "computed_at": f"2026-11-{i + 10} 08:00:00",
            "model_version": "7",
        }
        for i, b in enumerate(batches)
    ]


@pytest.fixture(scope="module")
def page(sides):
    reference, current, result = sides
    history = _history(["b1", "b2", "b3", "b4"])  # b4 is this batch: its PSI comes from result
    return render_report(result, reference, current, history=history, meta=META)


def _section(page: str, feature_index: int) -> str:
    start = page.index(f'id="f{feature_index}"')
    return page[start : page.index("</section>", start)]


def test_profiles_accept_any_column_name(sides):
    reference, current, _ = sides
    assert list(reference.columns) == [AMOUNT, WEIRD, GONE, COUNTRY]
    assert NEW_CATEGORY in current.columns[COUNTRY].counts


def test_report_is_self_contained(page):
    assert "http" not in page
    lowered = page.lower()
    for tag in ("<script", "<link", "<img", "<iframe", "@import", "url(", "src="):
        assert tag not in lowered
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))


def test_report_escapes_every_name(page):
    for raw in (AMOUNT, COUNTRY, "fraud <v2>", NEW_CATEGORY):
        assert raw not in page
    for escaped in (
        "amount &lt;usd&gt;",
        "country &amp; region",
        "fraud &lt;v2&gt;",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "we`ird &#x27;name&quot;",
    ):
        assert escaped in page


def test_report_is_well_formed(page):
    checker = _TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.problems == []
    assert checker.stack == []


def test_report_has_every_section_and_feature(sides, page):
    _, _, result = sides
    for heading in (
        "<h1>Drift report</h1>",
        ">Summary</h2>",
        ">Features</h2>",
        ">How to read it</h2>",
    ):
        assert heading in page
    assert (
        f"Data set drift: {result.drifted_count} of {result.compared_count} features drift; "
        in page
    )
    for fact in ("7", "b4", "211", "table=training_set, delta_version=3"):
        assert f"<dd>{fact}</dd>" in page
    for i, f in enumerate(result.features):
        section = _section(page, i)
        assert html.escape(f.feature) in section
        assert f">{f.status.replace('_', ' ')}</span>" in section
    assert result.feature(GONE).status == "missing"


def test_summary_lists_features_most_severe_first(sides, page):
    _, _, result = sides
    summary = page[page.index(">Summary</h2>") : page.index(">Features</h2>")]
    links = re.findall(r'<a href="#f(\d+)">', summary)
    assert links == [str(i) for i in range(len(result.features))]
    assert result.features[0].status == "drift"


def test_distributions_are_drawn_on_the_reference_bins_and_categories(sides, page):
    reference, _, result = sides
    amount = result.features.index(result.feature(AMOUNT))
    bars = re.findall(r"<rect [^>]*><title>", _section(page, amount))
    assert len(bars) == 2 * (len(reference.columns[AMOUNT].edges) + 1)
    country = _section(page, result.features.index(result.feature(COUNTRY)))
    # The long name is cut on the axis, whole in the tooltip, and marked new.
    assert (
        "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>&lt;script&gt;alert(1)&lt;… (new)"
        in country
    )
    for name in ("FR", "DE", "IT"):
        assert f"<title>{name}</title>" in country


def test_trend_line_shows_the_last_batches_and_the_thresholds(sides):
    reference, current, result = sides
    page = render_report(
        result,
        reference,
        current,
        history=_history(["b1", "b2", "b3", "b4"]),
        meta=META,
        history_batches=3,
    )
    section = _section(page, result.features.index(result.feature(AMOUNT)))
    points = re.search(r'<polyline points="([^"]+)"', section).group(1).split()
    assert len(points) == 3
    psi = result.feature(AMOUNT).value("psi")
    assert re.findall(r"<title>batch (\w+): PSI ([^ <]+)", section) == [
        ("b2", "0.04"),
        ("b3", "0.06"),
        ("b4", f"{psi:.3g}"),
    ]
    assert "warn 0.1</text>" in section and "drift 0.25</text>" in section


def test_report_of_an_empty_batch_says_no_data(spark, sides):
    reference, _, _ = sides
    empty = spark.createDataFrame([], f"`{AMOUNT}` double, `{COUNTRY}` string")
    current = profile_dataframe(empty, [AMOUNT], [COUNTRY])
    result = compare(reference, current, DriftThresholds(), drift_share=0.5)
    page = render_report(result, reference, current)
    assert "No data: no feature could be compared" in page
    assert page.count('class="badge"') == len(result.features) * 2


class _TagChecker(HTMLParser):
    """Every element that is opened is closed, in order (void elements excepted)."""

    VOID = {"meta", "br", "hr", "img", "input", "link"}

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_summary_shows_the_null_share_and_its_change_from_the_reference(spark):
    reference = profile_dataframe(
        spark.createDataFrame([(float(i),) for i in range(100)], "x double"), ["x"], []
    )
    # a quarter of the batch lost its value: 0 % -> 25 % null
    rows = [(None,) if i % 4 == 0 else (float(i),) for i in range(100)]
    current = profile_dataframe(spark.createDataFrame(rows, "x double"), ["x"], [])
    result = compare(reference, current, DriftThresholds(), drift_share=0.5)

    page = render_report(result, reference, current, history=[], meta=META)

    summary = page[page.index(">Summary</h2>") : page.index(">Features</h2>")]
    assert '<td class="num hit">25.0% (+25.0 pts)</td>' in summary
    assert result.feature("x").status == "drift"


def test_the_job_output_names_the_features_without_a_reference(spark, tmp_path):
    from ml_engine.drift.job import _notes

    rows = [(float(i), float(i % 7)) for i in range(50)]
    reference = profile_dataframe(spark.createDataFrame(rows, "x double, y double"), ["x"], [])
    current = profile_dataframe(spark.createDataFrame(rows, "x double, y double"), ["x", "y"], [])
    result = compare(reference, current, DriftThresholds(), drift_share=0.5)

    notes = _notes(result, 0.5, [], tmp_path / "r.html")

    assert notes == [
        "dataset drift: no (0 of 1 features drift; share 0.00, threshold 0.5); drifted: none",
        f"report: {tmp_path / 'r.html'}",
        "not compared, no reference: y. The reference profile is made when the model is "
        "trained, of drift.features then (default: the schema's features); set drift.features "
        "before train to compare other columns",
    ]


def test_the_verdict_counts_model_outputs_apart_from_features(spark, tmp_path):
    from ml_engine.drift.job import _notes

    # x and the model's score move by 50 (five standard deviations of 0..99); y and the
    # predicted label stay: 2 of 4 compared columns drift, one of each kind
    ref = [(float(i), float(i), float(i), "yes" if i % 2 else "no") for i in range(100)]
    cur = [(float(i + 50), float(i), float(i + 50), "yes" if i % 2 else "no") for i in range(100)]
    schema = "x double, y double, score double, predicted_label string"
    columns = (["x", "y", "score"], ["predicted_label"])
    reference = profile_dataframe(spark.createDataFrame(ref, schema), *columns)
    current = profile_dataframe(spark.createDataFrame(cur, schema), *columns)
    result = compare(reference, current, DriftThresholds(), drift_share=0.5)
    outputs = ["predicted_label", "score"]

    notes = _notes(result, 0.5, outputs, tmp_path / "r.html")
    page = render_report(result, reference, current, outputs=outputs)

    assert notes[0] == (
        "dataset drift: YES (2 of 4 columns drift, 2 features and 2 model outputs; share 0.50, "
        "threshold 0.5); drifted: x; model outputs drifted: score"
    )
    assert (
        ">Data set drift: 2 of 4 columns drift, 2 features and 2 model outputs; share 50%, the "
        "data set drifts at 50%</div>"
    ) in page
    for name, kind in (
        ("x", "numeric"),
        ("y", "numeric"),
        ("score", "numeric, model output"),
        ("predicted_label", "categorical, model output"),
    ):
        assert f">{name}</a></td><td>{kind}</td>" in page


def test_the_job_output_names_a_column_that_the_training_set_mostly_lacks(spark, tmp_path):
    from ml_engine.drift.job import _notes

    # "added": a column the first three of four training batches lack; "lost": values that
    # stopped coming, which is drift of another kind
    ref_rows = [(None if i < 75 else float(i), float(i)) for i in range(100)]
    reference = profile_dataframe(
        spark.createDataFrame(ref_rows, "added double, lost double"), ["added", "lost"], []
    )
    cur_rows = [(float(i), None if i % 2 else float(i)) for i in range(75, 115)]
    current = profile_dataframe(
        spark.createDataFrame(cur_rows, "added double, lost double"), ["added", "lost"], []
    )
    result = compare(reference, current, DriftThresholds(), drift_share=0.5)

    notes = _notes(result, 0.5, (), tmp_path / "r.html")

    assert (result.feature("added").status, result.feature("lost").status) == ("drift", "drift")
    assert notes[2:] == [
        "mostly null in the model's training set: added (75% null there, 0% now). A column "
        "that earlier batches lack (added to the schema later) drifts on its null share until "
        "a model trained on batches with its values is the champion: retrain"
    ]


def test_numbers_show_three_significant_digits_and_counts_in_full():
    from ml_engine.drift.report import _num

    values = [4981.0, 1234567.0, 211.0, 0.043217, 12345.6, -2000.0, None, float("inf")]
    assert [_num(v) for v in values] == [
        "4,981", "1,234,567", "211", "0.0432", "1.23e+04", "-2,000", "—", "∞"
    ]  # fmt: skip


def test_the_note_on_arrived_labels_shows_the_metric_the_gate_judged_by():
    from ml_engine.drift.job import performance_note

    # a multiclass model has auc_roc too (one-vs-rest), but its gate judged it by f1
    performance = {"labelled_rows": 900.0, "auc_roc": 0.93104, "f1": 0.8, "accuracy": 0.9}
    test = {"auc_roc": 0.95338, "f1": 0.97396}
    assert performance_note(performance, test, 1000, "f1") == (
        "on arrived labels (900 of 1,000 scored rows): f1 0.8000 (training test: 0.9740)"
    )
    # a run logged before the gate's metric was, or a metric not computed on the batch
    for gate_metric in (None, "log_loss"):
        assert performance_note(performance, test, 1000, gate_metric) == (
            "on arrived labels (900 of 1,000 scored rows): auc_roc 0.9310 (training test: 0.9534)"
        )
