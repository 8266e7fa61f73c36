"""Self-contained HTML reports: data drift and training evaluation.

Charts are inline SVG written here (a few rectangles and lines per chart): no scripts,
stylesheets, fonts or images are fetched, and 50 features render in milliseconds,
far faster than rasterising with matplotlib. Every name is passed through
``html.escape``.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from esteira.drift import DriftReport, FeatureDrift
from esteira.errors import DataError

REFERENCE_COLOR = "#4c78a8"
CURRENT_COLOR = "#f58518"
_WIDTH, _HEIGHT = 640, 240
_MARGIN = {"left": 46, "right": 12, "top": 28, "bottom": 52}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:1000px;padding:0 1rem;color:#222}
h1{font-size:1.5rem;margin-bottom:.5rem}h2{font-size:1.1rem;margin:0 0 .3rem}
.verdict{padding:.8rem 1rem;border-radius:6px;font-weight:600;margin:1rem 0}
.verdict.bad{background:#fde2e1;border:1px solid #e5534b}
.verdict.good{background:#dff5e3;border:1px solid #3fb950}
.meta{color:#555;font-size:.9rem}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .7rem;text-align:left}
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drifted td{background:#fff3f2}tr.chosen td{background:#fff4e5;font-weight:600}
.sev-significant{color:#b42318;font-weight:600}.sev-moderate{color:#b54708}
section.feature{border:1px solid #ddd;border-radius:6px;padding:.8rem 1rem;margin:1rem 0}
.badge{font-size:.75rem;padding:.1rem .45rem;border-radius:4px;margin-left:.4rem;
vertical-align:middle;color:#fff}
.badge.drifted{background:#d1242f}.badge.stable{background:#1a7f37}
.stats{font-size:.85rem;color:#444;margin:.2rem 0 .5rem}
svg text{font-family:inherit}
"""


# ---- formatting --------------------------------------------------------------------------


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None, digits: int = 4) -> str:
    """Short number: fixed for ordinary magnitudes, scientific for tiny or huge ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}g}"
    return f"{value:.2e}"


def _fmt_p(value: float) -> str:
    return "&lt; 1e-300" if value == 0 else _esc(_fmt(value, 3))


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def feature_anchor(name: str) -> str:
    """The element id of a feature's section: ``feature-<name>``, whitespace as ``_``."""
    return "feature-" + re.sub(r"\s", "_", name)


# ---- SVG helpers -------------------------------------------------------------------------


def _svg_open(label: str, width: int = _WIDTH, height: int = _HEIGHT) -> str:
    return (
        f'<svg role="img" aria-label="{_esc(label)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">'
    )


def _legend(entries: Sequence[tuple[str, str]], x: float, y: float) -> str:
    parts = ['<g class="legend">']
    for i, (text, color) in enumerate(entries):
        xi = x + i * 95
        parts.append(
            f'<rect x="{xi:.1f}" y="{y - 9:.1f}" width="11" height="11" fill="{color}" '
            f'fill-opacity="0.6"/><text x="{xi + 15:.1f}" y="{y:.1f}" font-size="12">'
            f"{_esc(text)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _y_axis(
    top: float, bottom: float, left: float, right: float, ticks: Sequence[tuple[float, str]]
) -> str:
    """Horizontal grid lines with labels; ``ticks`` are (fraction of height, label)."""
    parts = []
    for frac, label in ticks:
        y = bottom - frac * (bottom - top)
        parts.append(
            f'<line x1="{left:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#e3e3e3"/><text x="{left - 4:.1f}" y="{y + 4:.1f}" font-size="10" '
            f'text-anchor="end" fill="#555">{_esc(label)}</text>'
        )
    return "".join(parts)


def svg_bars(
    reference: Sequence[float],
    current: Sequence[float],
    *,
    edges: Sequence[float] | None = None,
    categories: Sequence[str] | None = None,
    label: str = "",
) -> str:
    """Overlaid reference/current share bars as inline SVG.

    Numeric bins are labelled by their edges (first, middle, last), categories by name
    (shortened; the full name is in each bar's tooltip).
    """
    n = len(reference)
    left, top = _MARGIN["left"], _MARGIN["top"]
    right, bottom = _WIDTH - _MARGIN["right"], _HEIGHT - _MARGIN["bottom"]
    peak = max([*reference, *current, 1e-12]) * 1.1
    slot = (right - left) / max(n, 1)
    names = _bin_names(n, edges, categories)
    parts = [
        _svg_open(label),
        _y_axis(top, bottom, left, right, [(0, "0%"), (0.5, _pct(peak / 2)), (1, _pct(peak))]),
    ]
    for i in range(n):
        x = left + i * slot + 0.5
        w = max(slot - 1.0, 0.5)
        tip = f"{names[i]}: reference {_pct(reference[i])}, current {_pct(current[i])}"
        parts.append(f"<g><title>{_esc(tip)}</title>")
        for value, color in ((reference[i], REFERENCE_COLOR), (current[i], CURRENT_COLOR)):
            h = value / peak * (bottom - top)
            parts.append(
                f'<rect x="{x:.1f}" y="{bottom - h:.1f}" width="{w:.1f}" height="{h:.1f}" '
                f'fill="{color}" fill-opacity="0.55"/>'
            )
        parts.append("</g>")
    parts.append(f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#888"/>')
    parts.append(_x_labels(n, slot, left, bottom, edges, categories))
    parts.append(_legend([("reference", REFERENCE_COLOR), ("current", CURRENT_COLOR)], left, 16))
    parts.append("</svg>")
    return "".join(parts)


def _bin_names(
    n: int, edges: Sequence[float] | None, categories: Sequence[str] | None
) -> list[str]:
    if categories is not None:
        return [str(c) for c in categories]
    if edges is not None:
        return [f"[{_fmt(edges[i])}, {_fmt(edges[i + 1])})" for i in range(n)]
    return [str(i) for i in range(n)]


def _x_labels(
    n: int,
    slot: float,
    left: float,
    bottom: float,
    edges: Sequence[float] | None,
    categories: Sequence[str] | None,
) -> str:
    parts = []
    if categories is not None:
        rotate = n > 6
        for i, name in enumerate(categories):
            x = left + (i + 0.5) * slot
            short = name if len(name) <= 12 else name[:11] + "…"
            transform = f' transform="rotate(-40 {x:.1f} {bottom + 14:.1f})"' if rotate else ""
            anchor = "end" if rotate else "middle"
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 14:.1f}" font-size="10" '
                f'text-anchor="{anchor}"{transform}>{_esc(short)}</text>'
            )
    elif edges is not None and n:
        unit = _unit_bins(edges)
        for i in sorted({0, n // 2, n - 1 if unit else n}):
            x = left + (i + 0.5 if unit else i) * slot
            value = edges[i] + 0.5 if unit else edges[i]
            anchor = "middle" if unit or 0 < i < n else ("start" if i == 0 else "end")
            parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#888"/>'
                f'<text x="{x:.1f}" y="{bottom + 16:.1f}" font-size="10" '
                f'text-anchor="{anchor}">{_esc(_fmt(value))}</text>'
            )
    return "".join(parts)


def _unit_bins(edges: Sequence[float]) -> bool:
    """One bin per integer (edges at half-integers): label the integers, not the edges."""
    return all(e - 0.5 == round(e - 0.5) for e in edges) and all(
        b - a == 1 for a, b in zip(edges, edges[1:], strict=False)
    )


def svg_curve(
    x: Sequence[float],
    y: Sequence[float],
    *,
    label: str = "",
    x_title: str = "",
    y_title: str = "",
    diagonal: bool = True,
    size: int = 300,
    marks: Sequence[tuple[float, float, str, str]] = (),
) -> str:
    """A square line chart on the unit square (ROC-style), with an optional chance diagonal
    and marked points ``(x, y, short label beside the dot, tooltip)``."""
    svg_width, svg_height = size + _MARGIN["left"] + _MARGIN["right"], size + 60
    left, top = _MARGIN["left"], 12
    right, bottom = left + size, 12 + size
    width, height = right - left, bottom - top
    points = " ".join(
        f"{left + xi * width:.1f},{bottom - yi * height:.1f}" for xi, yi in zip(x, y, strict=True)
    )
    ticks = [(f, _fmt(f, 2)) for f in (0.0, 0.5, 1.0)]
    parts = [_svg_open(label, svg_width, svg_height), _y_axis(top, bottom, left, right, ticks)]
    if diagonal:
        parts.append(
            f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{top}" stroke="#aaa" '
            f'stroke-dasharray="4 3"/>'
        )
    parts.append(
        f'<polyline points="{points}" fill="none" stroke="{REFERENCE_COLOR}" stroke-width="2"/>'
        f'<line x1="{left}" x2="{right}" y1="{bottom}" y2="{bottom}" stroke="#888"/>'
    )
    for mx, my, text, tip in marks:
        cx, cy = left + mx * width, bottom - my * height
        anchor, dx = ("end", -9) if mx > 0.6 else ("start", 9)
        parts.append(
            f'<g class="mark"><title>{_esc(tip)}</title>'
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5.5" fill="{CURRENT_COLOR}" '
            f'stroke="#222" stroke-width="1"/><text x="{cx + dx:.1f}" y="{cy - 8:.1f}" '
            f'font-size="11" font-weight="600" text-anchor="{anchor}">{_esc(text)}</text></g>'
        )
    for f in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{left + f * width:.1f}" y="{bottom + 14}" font-size="10" '
            f'text-anchor="middle">{_esc(_fmt(f, 2))}</text>'
        )
    parts.append(
        f'<text x="{(left + right) / 2:.1f}" y="{bottom + 32}" font-size="11" '
        f'text-anchor="middle">{_esc(x_title)}</text>'
        f'<text x="12" y="{(top + bottom) / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {(top + bottom) / 2:.1f})">{_esc(y_title)}</text></svg>'
    )
    return "".join(parts)


# ---- pages -------------------------------------------------------------------------------


def _page(title: str, body: Sequence[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1>" + "".join(body) + "</body></html>\n"
    )


def _verdict(report: DriftReport) -> str:
    n, drifted = len(report.features), len(report.drifted_features)
    threshold = report.thresholds.get("drift_share", float("nan"))
    significant = len(report.significant_features)
    state = "Drift detected" if report.drift_detected else "No drift"
    why = f"dataset drift: {'yes' if report.dataset_drift else 'no'} (threshold {_pct(threshold)})"
    return (
        f'<div class="verdict {"bad" if report.drift_detected else "good"}" id="verdict">'
        f"{state}: {drifted} of {n} features drifted ({_pct(report.drift_share)}), "
        f"{significant} significantly; {why}</div>"
    )


def _meta(report: DriftReport) -> str:
    t = report.thresholds
    rule = (
        f"Numeric: drifted when (PSI ≥ {_fmt(t.get('psi_moderate'))} and KS p &lt; "
        f"{_fmt(t.get('p_value'))}) or PSI ≥ {_fmt(t.get('psi_significant'))}. "
        f"Categorical: drifted when chi-square p &lt; {_fmt(t.get('p_value'))} and "
        f"Jensen-Shannon ≥ {_fmt(t.get('js_moderate'))}."
    )
    skipped = (
        f"<br>Not compared (unsupported dtype): {_esc(', '.join(report.skipped))}"
        if report.skipped
        else ""
    )
    return (
        f'<p class="meta">Reference rows: {report.reference_rows:,} · current rows: '
        f"{report.current_rows:,}<br>{rule}{skipped}</p>"
    )


def _summary_table(report: DriftReport) -> str:
    rows = []
    for f in report.features:
        effect = f"PSI {_fmt(f.psi)}" if f.kind == "numeric" else f"JS {_fmt(f.js)}"
        rows.append(
            f'<tr class="{"drifted" if f.drifted else "stable"}">'
            f'<td><a href="#{_esc(feature_anchor(f.feature))}">{_esc(f.feature)}</a></td>'
            f"<td>{f.kind}</td><td class=num>{_esc(effect)}</td>"
            f"<td class=num>{_fmt_p(f.p_value)}</td>"
            f'<td class="sev-{f.severity}">{f.severity}</td>'
            f"<td>{'yes' if f.drifted else 'no'}</td></tr>"
        )
    return (
        '<table class="summary"><thead><tr><th>feature</th><th>kind</th><th>PSI / JS</th>'
        "<th>p-value</th><th>severity</th><th>drifted</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _feature_section(f: FeatureDrift) -> str:
    s = f.statistics
    if f.kind == "numeric":
        details = (
            f"PSI {_fmt(f.psi)} · KS D {_fmt(s.get('ks_statistic'))}, p {_fmt_p(f.p_value)} · "
            f"mean {_fmt(s.get('reference_mean'))} → {_fmt(s.get('current_mean'))} · "
            f"std {_fmt(s.get('reference_std'))} → {_fmt(s.get('current_std'))}"
        )
    else:
        details = (
            f"JS {_fmt(f.js)} · chi² {_fmt(s.get('chi2'))} (dof {_fmt(s.get('chi2_dof'))}), "
            f"p {_fmt_p(f.p_value)} · categories {_fmt(s.get('categories'))}, "
            f"new in current {_fmt(s.get('new_categories'))}"
        )
    nulls = (
        f"non-null: reference {f.reference_count:,} ({_pct(f.reference_null_share)} null), "
        f"current {f.current_count:,} ({_pct(f.current_null_share)} null)"
    )
    badge = "drifted" if f.drifted else "stable"
    chart = svg_bars(
        f.histogram.reference,
        f.histogram.current,
        edges=f.histogram.edges,
        categories=f.histogram.categories,
        label=f"{f.feature}: reference vs current",
    )
    return (
        f'<section class="feature" id="{_esc(feature_anchor(f.feature))}">'
        f'<h2>{_esc(f.feature)}<span class="badge {badge}">{badge}</span>'
        f'<span class="badge" style="background:#777">{f.kind} · {f.severity}</span></h2>'
        f'<p class="stats">{details}<br>{nulls}</p>{chart}</section>'
    )


def render_drift_html(report: DriftReport, title: str) -> str:
    """One self-contained HTML page: verdict, summary table, a histogram per feature."""
    body = [_verdict(report), _meta(report), _summary_table(report)]
    body.extend(_feature_section(f) for f in report.features)
    return _page(title, body)


# metrics that are counts: printed as integers (29,123, never 2.91e+04)
COUNT_METRICS = {"rows", "positives", "labelled_rows", "training_rows", "holdout_rows", "count"}


def _fmt_metric(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int) or (name in COUNT_METRICS and float(value).is_integer()):
        return f"{int(value):,}"
    return _fmt(float(value))


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_esc(k)}</td><td class=num>{_esc(_fmt_metric(k, v))}</td></tr>"
        for k, v in metrics.items()
    )
    return f'<table class="metrics"><thead><tr><th>metric</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>'


def _confusion_table(confusion: Sequence[Sequence[Any]], heading: str = "Confusion matrix") -> str:
    size = len(confusion)
    head = "".join(f"<th>predicted {i}</th>" for i in range(size))
    rows = "".join(
        f"<tr><th>actual {i}</th>"
        + "".join(f"<td class=num>{_esc(_fmt_metric('count', v))}</td>" for v in row)
        + "</tr>"
        for i, row in enumerate(confusion)
    )
    return (
        f'<h2>{_esc(heading)}</h2><table class="confusion"><thead><tr><th></th>{head}</tr>'
        f"</thead><tbody>{rows}</tbody></table>"
    )


def _roc_chart(roc: Mapping[str, Any], auc: Any) -> str:
    try:
        fpr = [float(v) for v in roc["fpr"]]
        tpr = [float(v) for v in roc["tpr"]]
    except (KeyError, TypeError, ValueError):
        raise DataError(
            "roc", "needs numeric lists `fpr` and `tpr`", "pass {'fpr': [...], 'tpr': [...]}"
        ) from None
    if len(fpr) != len(tpr) or not fpr:
        raise DataError(
            "roc", "`fpr` and `tpr` must be non-empty and equally long", "pass the roc_curve output"
        )
    heading = f"ROC curve (AUC {_esc(_fmt(float(auc)))})" if auc is not None else "ROC curve"
    chart = svg_curve(
        fpr, tpr, label="ROC curve", x_title="false positive rate", y_title="true positive rate"
    )
    return f'<section class="roc" id="roc"><h2>{heading}</h2>{chart}</section>'


def _pr_chart(pr: Mapping[str, Any], threshold: Mapping[str, Any] | None, ap: Any) -> str:
    try:
        precision = [float(v) for v in pr["precision"]]
        recall = [float(v) for v in pr["recall"]]
    except (KeyError, TypeError, ValueError):
        raise DataError(
            "pr", "needs numeric lists `precision` and `recall`", "pass the pr_curve output"
        ) from None
    if len(precision) != len(recall) or not precision:
        raise DataError("pr", "`precision` and `recall` must be non-empty and equally long", "")
    marks, caption = [], ""
    if threshold is not None:
        chosen = threshold["chosen"]
        value = _fmt(float(threshold["decision_threshold"]), 3)
        text = (
            f"decision_threshold {value}: precision {chosen['precision']:.3f}, "
            f"recall {chosen['recall']:.3f}"
        )
        marks.append((float(chosen["recall"]), float(chosen["precision"]), value, text))
        caption = (
            f'<p class="meta"><span style="color:{CURRENT_COLOR}">●</span> the chosen point: '
            f"{_esc(text)}</p>"
        )
    heading = "Precision-recall curve" + (
        f" (average precision {_esc(_fmt(float(ap)))})" if ap is not None else ""
    )
    chart = svg_curve(
        recall,
        precision,
        label="precision-recall curve",
        x_title="recall",
        y_title="precision",
        diagonal=False,
        marks=marks,
    )
    return f'<section class="pr" id="pr"><h2>{heading}</h2>{caption}{chart}</section>'


def _threshold_section(view: Mapping[str, Any]) -> str:
    """The chosen threshold, its policy, and a small table of thresholds on the same rows."""
    policy = view["policy"]
    costs = view.get("costs", {})
    settings = ", ".join(f"{k} {_fmt(float(v))}" for k, v in policy.items() if k != "policy")
    chosen, default = view["chosen"], view["at_0.5"]
    unit = (
        f"expected cost = {_fmt(float(costs.get('fn_cost', 0)))} × missed + "
        f"{_fmt(float(costs.get('fp_cost', 0)))} × false alarms, per 1,000 rows"
    )
    lead = (
        f'<p class="meta" id="chosen">decision_threshold <b>{_fmt(chosen["threshold"], 4)}</b> '
        f"chosen by <b>{_esc(policy['policy'])}</b>{' (' + _esc(settings) + ')' if settings else ''}"
        f" on the training window, never on these rows. Here it catches "
        f"{chosen['tp']:,} of {chosen['positives']:,} positives with {chosen['fp']:,} false "
        f"alarms (at 0.5: {default['tp']:,} with {default['fp']:,}); expected cost "
        f"{_fmt(chosen['expected_cost'])} vs {_fmt(default['expected_cost'])} at 0.5.<br>{_esc(unit)}</p>"
    )
    rows = []
    for r in view["table"]:
        is_chosen = r["threshold"] == chosen["threshold"]
        mark = " (chosen)" if is_chosen else ""
        rows.append(
            f'<tr class="{"chosen" if is_chosen else ""}">'
            f"<td class=num>{_esc(_fmt(r['threshold'], 4))}{mark}</td>"
            f"<td class=num>{r['precision']:.3f}</td><td class=num>{r['recall']:.3f}</td>"
            f"<td class=num>{r['alerts_per_1000']:.1f}</td>"
            f"<td class=num>{r['tp']:,}</td><td class=num>{r['fp']:,}</td>"
            f"<td class=num>{r['fn']:,}</td>"
            f"<td class=num>{r['expected_cost']:.1f}</td></tr>"
        )
    table = (
        '<table class="thresholds"><thead><tr><th>threshold</th><th>precision</th>'
        "<th>recall</th><th>alerts per 1,000 rows</th><th>caught</th><th>false alarms</th>"
        "<th>missed</th><th>expected cost per 1,000 rows</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )
    return f'<section class="threshold" id="threshold"><h2>Decision threshold</h2>{lead}{table}</section>'


def render_metrics_html(
    metrics: dict[str, Any],
    roc: dict[str, Any] | None,
    confusion: list[list[Any]] | None,
    title: str,
    *,
    pr: dict[str, Any] | None = None,
    threshold: dict[str, Any] | None = None,
) -> str:
    """A small evaluation page: metric table, the decision threshold (how it was chosen,
    a table of thresholds), the precision-recall curve with the chosen point, the ROC curve
    and the confusion matrix.

    ``roc`` is ``{"fpr": [...], "tpr": [...]}`` (extra keys such as ``threshold`` are
    ignored); its AUC comes from ``roc["auc"]`` or ``metrics["roc_auc"]``. ``confusion`` is
    rows = actual, columns = predicted. ``pr`` is ``{"precision", "recall"}`` and
    ``threshold`` ``esteira.evaluation.threshold_view``'s output. All are optional.
    """
    body = [_metrics_table(metrics)]
    if threshold is not None:
        body.append(_threshold_section(threshold))
    if pr is not None:
        body.append(_pr_chart(pr, threshold, metrics.get("pr_auc")))
    if roc is not None:
        body.append(_roc_chart(roc, roc.get("auc", metrics.get("roc_auc"))))
    if confusion is not None:
        heading = "Confusion matrix"
        if threshold is not None:
            heading += f" at decision_threshold {_fmt(threshold['decision_threshold'], 4)}"
        body.append(_confusion_table(confusion, heading))
    return _page(title, body)
