"""The drift report: one self-contained HTML page, charts as inline SVG.

The page opens offline: no script, no external font, style sheet or image. Sections:

* header: title, the ``meta`` facts (model, version, batch...), rows of each side and the
  data set verdict;
* summary: one row per feature, most severe first, each metric against its threshold;
* one section per feature: both distributions overlaid (numeric features on the reference's
  quantile bins, categorical features as category shares with new categories marked), the
  PSI of the last batches against its thresholds (from ``history``), and every metric;
* how to read it: the definitions behind the numbers.

Every text that comes from data (feature and category names, meta values) is escaped.

Example::

    html = render_report(result, reference, current, history=rows,
                         meta={"model": "fraud", "model_version": 7, "batch_id": "2026-11-28"})
    Path("reports/drift.html").write_text(html, encoding="utf-8")
"""

from __future__ import annotations

import html
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from ml_engine.drift.profile import DatasetProfile, NumericProfile
from ml_engine.drift.stats import (
    CHI2_P_VALUE,
    DRIFT,
    EPSILON,
    JS_DISTANCE,
    KS_P_VALUE,
    NEW,
    NULL_SHARE,
    NULL_SHARE_CHANGE,
    OK,
    OTHER,
    PSI,
    WARN,
    WASSERSTEIN_NORM,
    Bin,
    DriftResult,
    FeatureDrift,
    Metric,
)

REFERENCE_COLOUR = "#4e79a7"
CURRENT_COLOUR = "#f28e2b"
STATUS_COLOURS = {  # (text, background)
    DRIFT: ("#b3261e", "#fde7e6"),
    WARN: ("#8a5a00", "#fff4d6"),
    OK: ("#1b7f3b", "#e6f4ea"),
}
NEUTRAL = ("#4a5058", "#eceff1")
# Bars per categorical chart; the rest are drawn as one bar.
MAX_CATEGORY_BARS = 15
MAX_LABEL_CHARS = 24

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  font-size: 15px; line-height: 1.45; color: #1f2328; margin: 0; background: #f6f7f9; }
main { max-width: 1180px; margin: 0 auto; padding: 24px; }
h1 { font-size: 26px; margin: 0 0 12px; }
h2 { font-size: 20px; margin: 32px 0 12px; }
h3 { font-size: 17px; margin: 0 0 8px; display: flex; gap: 10px; align-items: center;
  flex-wrap: wrap; }
section.card, header.card { background: #fff; border: 1px solid #d8dde3; border-radius: 8px;
  padding: 16px 20px; margin-bottom: 16px; }
.verdict { font-size: 19px; font-weight: 600; padding: 10px 14px; border-radius: 6px;
  margin: 12px 0; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr));
  gap: 6px 20px; margin: 0; }
.facts div { display: flex; flex-direction: column; }
.facts dt { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #5f6b7a; }
.facts dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e3e7ec;
  vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.hit { font-weight: 700; color: #b3261e; }
td.near { font-weight: 700; color: #8a5a00; }
.thr { color: #6b7480; font-size: 12px; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 13px;
  font-weight: 600; white-space: nowrap; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.chart { flex: 1 1 480px; min-width: 320px; }
.chart h4 { margin: 4px 0; font-size: 14px; color: #3b4450; }
.legend { font-size: 13px; color: #3b4450; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  vertical-align: -1px; margin: 0 4px 0 10px; }
.note { color: #5f6b7a; margin: 4px 0 8px; }
.name { overflow-wrap: anywhere; }
svg { width: 100%; height: auto; font-family: inherit; }
a { color: #1a5fb4; }
"""


def render_report(
    result: DriftResult,
    reference: DatasetProfile,
    current: DatasetProfile,
    history: Iterable[Mapping[str, Any]] | None = None,
    title: str = "Drift report",
    meta: Mapping[str, Any] | None = None,
    history_batches: int = 20,
    performance: Mapping[str, Any] | None = None,
    outputs: Collection[str] = (),
) -> str:
    """Renders the drift report as one self-contained HTML page.

    Args:
        result: what :func:`ml_engine.drift.stats.compare` returned for the two profiles.
        reference: the reference profile (its ``source`` is shown).
        current: the batch's profile (its ``source`` is shown).
        history: earlier ``drift_metrics`` rows (mappings or Spark Rows with ``feature``,
            ``metric``, ``value``, ``threshold``, ``drifted``, ``batch_id``, ``computed_at``,
            ``model_version``); the ``psi`` rows make each feature's trend line. The batch of
            ``meta["batch_id"]`` is taken from ``result``, not from ``history``.
        title: the page title.
        meta: facts for the header, in order (e.g. ``model``, ``model_version``,
            ``batch_id``, ``reference``, ``computed_at``).
        history_batches: the most batches a trend line shows (the latest ones).
        performance: when labels of the batch have arrived: ``{"batch": metrics of the
            batch, "training_test": the model's held-out test metrics, "rows": (labelled rows,
            scored rows)}``, the metrics shown side by side.
        outputs: the names in ``result`` that are model outputs, not features (the verdict
            counts them apart).

    Returns:
        The HTML text.
    """
    meta = dict(meta or {})
    trends = _trends(result, history, meta.get("batch_id"), history_batches)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>",
        _header(result, reference, current, title, meta, outputs),
        _summary(result, outputs),
        _performance(performance),
        '<h2 id="features">Features</h2>',
        *(
            _feature_section(i, f, result, reference, trends.get(f.feature))
            for i, f in enumerate(result.features)
        ),
        _definitions(result),
        "</main></body></html>",
    ]
    return "\n".join(parts)


# --------------------------------------------------------------------------- sections


def _header(
    result: DriftResult,
    reference: DatasetProfile,
    current: DatasetProfile,
    title: str,
    meta: Mapping[str, Any],
    outputs: Collection[str],
) -> str:
    colour, background = STATUS_COLOURS.get(result.status, NEUTRAL)
    facts = [(str(k).replace("_", " "), v) for k, v in meta.items()]
    facts += [
        ("reference rows", f"{result.reference_rows:,}"),
        ("batch rows", f"{result.current_rows:,}"),
    ]
    for side, profile in (("reference", reference), ("batch", current)):
        if profile.source:
            facts.append(
                (f"{side} source", ", ".join(f"{k}={v}" for k, v in profile.source.items()))
            )
    items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    return (
        f'<header class="card"><h1>{_e(title)}</h1>'
        f'<div class="verdict" style="color:{colour};background:{background}">{_e(_verdict(result, outputs))}</div>'
        f'<dl class="facts">{items}</dl></header>'
    )


def _performance(performance: Mapping[str, Any] | None) -> str:
    """The batch's model metrics on arrived labels next to the training test metrics."""
    if not performance or not performance.get("batch"):
        return ""
    batch, test = performance["batch"], performance.get("training_test") or {}
    labelled, scored = performance["rows"]
    rows = []
    for name in sorted(batch):
        now, then = batch[name], test.get(name)
        change = "" if then is None else _num(now - then)
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{_num(now)}</td><td>{_num(then)}</td>"
            f"<td>{change}</td></tr>"
        )
    return (
        '<section class="card"><h2 style="margin-top:0">Model performance on arrived labels</h2>'
        f"<p>The model's metrics on the {labelled:,} of this batch's {scored:,} scored rows whose "
        "labels have arrived, next to its held-out test metrics at training time.</p>"
        "<table><thead><tr><th>metric</th><th>this batch</th><th>training test</th>"
        "<th>change</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )


def _verdict(result: DriftResult, outputs: Collection[str]) -> str:
    if result.compared_count == 0:
        return "No data: no feature could be compared"
    share = result.drifted_share or 0.0
    counts = (
        f"{result.counts_text(outputs)}; share {share:.0%}, the data set drifts at "
        f"{result.drift_share:.0%}"
    )
    if result.drifted:
        return f"Data set drift: {counts}"
    return f"No data set drift: {counts}" + (" - see warnings" if result.status == WARN else "")


def _summary(result: DriftResult, outputs: Collection[str]) -> str:
    head = (
        "<tr><th>Feature</th><th>Type</th><th>Status</th><th>PSI</th>"
        "<th>p-value (KS / &chi;&sup2;)</th><th>Distance (W/&sigma; / JS)</th>"
        "<th>Null share (change)</th><th>Note</th></tr>"
    )
    psi_warn = result.thresholds.psi_warn
    rows = []
    for i, f in enumerate(result.features):
        p = f.metric(KS_P_VALUE) or f.metric(CHI2_P_VALUE)
        d = f.metric(WASSERSTEIN_NORM) or f.metric(JS_DISTANCE)
        rows.append(
            f'<tr><td class="name"><a href="#f{i}">{_e(f.feature)}</a></td>'
            f"<td>{_e(f.kind)}{', model output' if f.feature in outputs else ''}</td>"
            f"<td>{_badge(f.status)}</td>{_metric_cell(f.metric(PSI), psi_warn)}{_metric_cell(p)}"
            f"{_metric_cell(d)}{_null_cell(f)}"
            f"<td>{_e(f.note)}</td></tr>"
        )
    return (
        '<section class="card"><h2 style="margin-top:0">Summary</h2>'
        f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _feature_section(
    index: int,
    f: FeatureDrift,
    result: DriftResult,
    reference: DatasetProfile,
    trend: list[dict[str, Any]] | None,
) -> str:
    profile = reference.columns.get(f.feature)
    edges = profile.edges if isinstance(profile, NumericProfile) else None
    charts = []
    if f.bins:
        chart = _numeric_chart(f.bins, edges) if edges is not None else _category_chart(f.bins)
        what = "per reference bin" if edges is not None else "per category"
        charts.append(f'<div class="chart"><h4>Share of values {what}</h4>{_legend()}{chart}</div>')
    if trend:
        charts.append(
            '<div class="chart"><h4>PSI of the last batches</h4>'
            f"{_trend_chart(trend, result.thresholds.psi_warn, result.thresholds.psi_drift)}</div>"
        )
    warn = {PSI: result.thresholds.psi_warn}
    metrics = "".join(
        f"<tr><td>{_e(m.name)}</td>{_metric_cell(m, warn.get(m.name))}</tr>" for m in f.metrics
    )
    note = f'<p class="note">{_e(f.note)}</p>' if f.note else ""
    return (
        f'<section class="card" id="f{index}"><h3><span class="name">{_e(f.feature)}</span>'
        f'{_badge(f.status)}<span class="thr">{_e(f.kind)}</span></h3>{note}'
        f'<div class="charts">{"".join(charts)}</div>'
        f"<details><summary>All metrics</summary><table><thead><tr><th>Metric</th>"
        f"<th>Value (threshold)</th></tr></thead><tbody>{metrics}</tbody></table></details>"
        "</section>"
    )


def _definitions(result: DriftResult) -> str:
    t = result.thresholds
    items = [
        f"A numeric feature drifts when PSI &ge; {t.psi_drift:g}, or when the KS p-value is "
        f"below {t.p_value:g} and the Wasserstein distance reaches {t.distance:g} reference "
        "standard deviations; a categorical feature when PSI &ge; "
        f"{t.psi_drift:g}, or the chi-square p-value is below {t.p_value:g} and the "
        f"Jensen-Shannon distance reaches {t.distance:g}. PSI &ge; {t.psi_warn:g} or a "
        "p-value alone is a warning. Either kind drifts when its share of null values "
        f"changed by {t.null_share * 100:g} points or more from the reference's (a feature "
        "whose values stopped coming drifts).",
        "Numeric bins are the reference's quantile bins (deciles unless configured), closed on "
        "the right: (e<sub>i-1</sub>, e<sub>i</sub>], the outer bins open-ended; ties merge bins.",
        f"PSI = &sum; (c &minus; r) ln(c / r) over the bins, each share floored at {EPSILON:g}.",
        "The KS p-value is that of the KS statistic less the quantile sketches' rank error "
        "(zero while a sketch holds every value, about 0.001 per side at millions of rows), so "
        "the error of the sketches alone never makes a feature significant.",
        "Shares are of the non-null values; null share counts null and NaN values of the "
        "batch, its change is in points from the reference's share.",
        "New categories are categories of the batch the reference never had; "
        "&ldquo;other&rdquo; holds what a side did not list (high-cardinality columns).",
    ]
    body = "".join(f"<li>{i}</li>" for i in items)
    return f'<section class="card"><h2 style="margin-top:0">How to read it</h2><ul>{body}</ul></section>'


# --------------------------------------------------------------------------- charts


def _legend() -> str:
    return (
        '<div class="legend">'
        f'<span class="swatch" style="background:{REFERENCE_COLOUR}"></span>reference'
        f'<span class="swatch" style="background:{CURRENT_COLOUR}"></span>this batch</div>'
    )


def _numeric_chart(bins: Sequence[Bin], edges: Sequence[float]) -> str:
    """Grouped bars per reference bin; the edges label the boundaries between bars."""
    width, height, left, right, top, bottom = 560, 240, 48, 12, 12, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(b.reference, b.current) for b in bins) or 1.0
    band = plot_w / len(bins)
    bar = band * 0.38
    out = [_svg_open(width, height, "distribution of the feature on the reference's bins")]
    out += _y_axis(left, top, plot_w, plot_h, peak * 1.1, percent=True)
    for i, b in enumerate(bins):
        x0 = left + i * band + band * 0.1
        for j, (share, colour, side) in enumerate(
            ((b.reference, REFERENCE_COLOUR, "reference"), (b.current, CURRENT_COLOUR, "batch"))
        ):
            h = plot_h * share / (peak * 1.1)
            out.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{_e(b.label)}: {side} '
                f"{share:.1%}</title></rect>"
            )
    # Edge labels at the boundaries between bars, on two staggered lines so they do not touch.
    step = max(1, math.ceil(len(edges) / 16))
    for i, edge in enumerate(edges):
        if i % step:
            continue
        x = left + (i + 1) * band
        y = top + plot_h + (16 if (i // step) % 2 == 0 else 29)
        out.append(
            f'<line x1="{x:.1f}" y1="{top + plot_h}" x2="{x:.1f}" y2="{y - 11}" '
            'stroke="#c3c9d0"/>'
            f'<text x="{x:.1f}" y="{y}" font-size="12" text-anchor="middle" '
            f'fill="#3b4450">{edge:.3g}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" font-size="12" '
        'text-anchor="middle" fill="#5f6b7a">bin edges (reference quantiles)</text></svg>'
    )
    return "".join(out)


def _category_chart(bins: Sequence[Bin]) -> str:
    """Horizontal bars per category, largest share first; new categories marked."""
    shown = sorted(bins, key=lambda b: -max(b.reference, b.current))
    if len(shown) > MAX_CATEGORY_BARS:
        rest = shown[MAX_CATEGORY_BARS - 1 :]
        shown = shown[: MAX_CATEGORY_BARS - 1] + [
            Bin(
                f"{len(rest)} more categories",
                OTHER,
                sum(b.reference for b in rest),
                sum(b.current for b in rest),
            )
        ]
    width, label_w, row_h, top = 560, 200, 26, 6
    bar_w = width - label_w - 112
    height = top + row_h * len(shown) + 6
    # Scaled to the largest single category, so a large "other" does not flatten the rest.
    scaled = [b for b in shown if b.kind != OTHER] or shown
    peak = max(max(b.reference, b.current) for b in scaled) or 1.0
    out = [_svg_open(width, height, "category shares of the reference and the batch")]
    for i, b in enumerate(shown):
        y = top + i * row_h
        room = MAX_LABEL_CHARS - (len(" (new)") if b.kind == NEW else 0)
        name = b.label if len(b.label) <= room else b.label[: room - 1] + "…"
        if b.kind == NEW:  # a category the reference never had: red, bold, "(new)"
            style = f' font-weight="700" fill="{STATUS_COLOURS[DRIFT][0]}"'
            name += " (new)"
        elif b.kind == OTHER:
            style = ' font-style="italic" fill="#5f6b7a"'
        else:
            style = ' fill="#1f2328"'
        out.append(
            f'<text x="{label_w - 8}" y="{y + 16}" font-size="12" text-anchor="end"{style}>'
            f"<title>{_e(b.label)}</title>{_e(name)}</text>"
        )
        for j, (share, colour, side) in enumerate(
            ((b.reference, REFERENCE_COLOUR, "reference"), (b.current, CURRENT_COLOUR, "batch"))
        ):
            w = bar_w * min(share / peak, 1.0)
            out.append(
                f'<rect x="{label_w}" y="{y + 3 + j * 10}" width="{w:.1f}" height="9" '
                f'fill="{colour}"><title>{_e(b.label)}: {side} {share:.1%}</title></rect>'
            )
        out.append(
            f'<text x="{label_w + bar_w + 6}" y="{y + 16}" font-size="12" fill="#3b4450">'
            f"{b.reference:.1%} → {b.current:.1%}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _trend_chart(points: list[dict[str, Any]], warn: float, drift: float) -> str:
    """PSI per batch (oldest left) with the warn and drift thresholds as dashed lines."""
    width, height, left, right, top, bottom = 560, 200, 48, 70, 12, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [p["value"] for p in points if p["value"] is not None and math.isfinite(p["value"])]
    peak = max([*values, drift]) * 1.15 or 1.0
    out = [_svg_open(width, height, "PSI of the last batches")]
    out += _y_axis(left, top, plot_w, plot_h, peak, percent=False)

    def y_of(v: float) -> float:
        return top + plot_h - plot_h * min(v, peak) / peak

    def x_of(i: int) -> float:
        return left + (plot_w * i / (len(points) - 1) if len(points) > 1 else plot_w / 2)

    for level, colour, name in (
        (warn, STATUS_COLOURS[WARN][0], "warn"),
        (drift, STATUS_COLOURS[DRIFT][0], "drift"),
    ):
        y = y_of(level)
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{colour}" '
            f'stroke-dasharray="6 4" stroke-width="1.5"/><text x="{left + plot_w + 6}" '
            f'y="{y + 4:.1f}" font-size="12" fill="{colour}">{name} {level:g}</text>'
        )
    coords = [(x_of(i), y_of(p["value"])) for i, p in enumerate(points) if p["value"] is not None]
    if len(coords) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(f'<polyline points="{path}" fill="none" stroke="#3b4450" stroke-width="2"/>')
    for i, p in enumerate(points):
        if p["value"] is None:
            continue
        colour = STATUS_COLOURS[
            DRIFT if p["value"] >= drift else WARN if p["value"] >= warn else OK
        ][0]
        tip = f"batch {p['batch_id']}: PSI {_num(p['value'])}"
        if p.get("model_version") is not None:
            tip += f" (model version {p['model_version']})"
        out.append(
            f'<circle cx="{x_of(i):.1f}" cy="{y_of(p["value"]):.1f}" r="4.5" fill="{colour}">'
            f"<title>{_e(tip)}</title></circle>"
        )
    for i in sorted({0, len(points) - 1}):
        label = str(points[i]["batch_id"])
        label = label if len(label) <= 16 else label[:15] + "…"
        anchor = "start" if i == 0 and len(points) > 1 else "end" if len(points) > 1 else "middle"
        out.append(
            f'<text x="{x_of(i):.1f}" y="{top + plot_h + 20}" font-size="12" '
            f'text-anchor="{anchor}" fill="#3b4450">{_e(label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def _svg_open(width: int, height: int, label: str) -> str:
    return f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">'


def _y_axis(
    left: float, top: float, plot_w: float, plot_h: float, peak: float, percent: bool
) -> list[str]:
    out = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#8a939e"/>'
    ]
    for frac in (0.0, 0.5, 1.0):
        v = peak * frac
        y = top + plot_h - plot_h * frac
        text = f"{v:.0%}" if percent else f"{v:.2g}"
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#e3e7ec"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="12" text-anchor="end" '
            f'fill="#5f6b7a">{text}</text>'
        )
    return out


# --------------------------------------------------------------------------- history


def _trends(
    result: DriftResult,
    history: Iterable[Mapping[str, Any]] | None,
    batch_id: Any,
    limit: int,
) -> dict[str, list[dict[str, Any]]]:
    """Feature -> PSI points ``{batch_id, value, model_version}``, oldest first, the current
    batch last."""
    rows: list[dict[str, Any]] = []
    for r in history or ():
        row = dict(r) if isinstance(r, Mapping) else r.asDict()
        if row.get("metric") == PSI and (batch_id is None or row.get("batch_id") != batch_id):
            rows.append(row)
    rows.sort(key=lambda r: str(r.get("computed_at")))
    trends: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        points = trends.setdefault(str(r.get("feature")), [])
        # A batch computed twice keeps its latest value.
        points[:] = [p for p in points if p["batch_id"] != r.get("batch_id")]
        points.append(
            {
                "batch_id": r.get("batch_id"),
                "value": r.get("value"),
                "model_version": r.get("model_version"),
            }
        )
    for f in result.features:
        value = f.value(PSI)
        if value is not None:
            trends.setdefault(f.feature, []).append(
                {"batch_id": "this batch" if batch_id is None else batch_id, "value": value}
            )
    return {k: v[-limit:] for k, v in trends.items()}


# --------------------------------------------------------------------------- formatting


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _badge(status: str) -> str:
    colour, background = STATUS_COLOURS.get(status, NEUTRAL)
    return (
        f'<span class="badge" style="color:{colour};background:{background}">'
        f"{_e(status.replace('_', ' '))}</span>"
    )


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if float(value).is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"  # a count: 4,981 rows, not 4.98e+03
    return f"{value:.3g}"


def _share(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _null_cell(f: FeatureDrift) -> str:
    """The batch's null share and its change from the reference's, in points (red when the
    change reached its threshold)."""
    change = f.metric(NULL_SHARE_CHANGE)
    if change is None or change.value is None:
        return f'<td class="num">{_share(f.value(NULL_SHARE))}</td>'
    css = "num hit" if change.drifted else "num"
    points = f"{change.value * 100:+.1f} pts"
    return f'<td class="{css}">{_share(f.value(NULL_SHARE))} ({points})</td>'


def _metric_cell(metric: Metric | None, warn: float | None = None) -> str:
    """A value and its threshold: bold red when the metric crossed it, bold amber when it
    reached ``warn`` (PSI's warning level)."""
    if metric is None:
        return '<td class="num">—</td>'
    threshold = (
        "" if metric.threshold is None else f' <span class="thr">({metric.threshold:g})</span>'
    )
    near = warn is not None and metric.value is not None and metric.value >= warn
    css = "num hit" if metric.drifted else "num near" if near else "num"
    return f'<td class="{css}">{_num(metric.value)}{threshold}</td>'
