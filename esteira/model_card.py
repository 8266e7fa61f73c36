"""Model cards: what a reviewer reads before approving a promotion.

Every registered version gets one (``register``), stored with the version as
``card.json`` (the figures), ``card.md`` and ``card.html`` (self-contained: inline CSS and
SVG, nothing fetched), shown in the Kubeflow UI as the register step's HTML artifact and
printed by ``esteira models card NAME[:VERSION]``.

The figures are computed here, on the hold-out the gate judged, with pure functions a test
can hold to an independent computation:

- :func:`bootstrap_ci`: percentile bootstrap intervals of each hold-out metric (rows
  resampled with replacement, ``card.bootstrap`` times, seeded);
- :func:`slice_metrics`: the same metrics per value of ``card.slice_column``;
- :func:`permutation_importances`: the drop of the task's score when one feature's values
  are shuffled (scikit-learn's ``permutation_importance``, ``card.importance_repeats``);
- :func:`calibration`: observed event rate against mean predicted probability in equal-width
  bins, Brier score and expected calibration error (classifiers only).
"""

from __future__ import annotations

import html
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

MetricFn = Callable[[np.ndarray, np.ndarray], float]

CARD_FILES = ("card.json", "card.md", "card.html")


# ---- the figures ------------------------------------------------------------------------
def metric_functions(task: str, decision_threshold: float = 0.5) -> dict[str, MetricFn]:
    """The hold-out metrics a card shows, each ``f(y, score)``: a classifier's score is the
    probability (classes at ``decision_threshold``), a regressor's the forecast."""
    if task == "regression":
        return {
            "mae": lambda y, s: float(np.abs(y - s).mean()),
            "rmse": lambda y, s: float(np.sqrt(((y - s) ** 2).mean())),
            "wape": lambda y, s: float(np.abs(y - s).sum() / (np.abs(y).sum() or 1.0)),
        }

    def counts(y: np.ndarray, s: np.ndarray) -> tuple[int, int, int]:
        pred = s >= decision_threshold
        tp = int((pred & (y == 1)).sum())
        return tp, int(pred.sum()) - tp, int((y == 1).sum()) - tp  # tp, fp, fn

    def precision(y: np.ndarray, s: np.ndarray) -> float:
        tp, fp, _ = counts(y, s)
        return tp / (tp + fp) if tp + fp else 0.0

    def recall(y: np.ndarray, s: np.ndarray) -> float:
        tp, _, fn = counts(y, s)
        return tp / (tp + fn) if tp + fn else 0.0

    def f1(y: np.ndarray, s: np.ndarray) -> float:
        tp, fp, fn = counts(y, s)
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0

    return {
        "roc_auc": roc_auc,
        "pr_auc": lambda y, s: float(skm.average_precision_score(y, s)),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count half); nan with one class."""
    from scipy.stats import rankdata

    positives = y == 1
    n_pos = int(positives.sum())
    n_neg = len(y) - n_pos
    if not n_pos or not n_neg:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _defined(fn: MetricFn, y: np.ndarray, s: np.ndarray) -> float | None:
    """``fn(y, s)``, or None where it is undefined (one class only, no rows)."""
    if len(y) == 0:
        return None
    try:
        with warnings.catch_warnings():  # one class: sklearn warns and answers nan (or 0)
            warnings.simplefilter("error", UndefinedMetricWarning)
            warnings.simplefilter("error", UserWarning)
            value = fn(y, s)
    except (ValueError, UndefinedMetricWarning, UserWarning):
        return None
    return value if math.isfinite(value) else None


def bootstrap_ci(
    fn: MetricFn,
    y: np.ndarray,
    s: np.ndarray,
    *,
    resamples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``fn`` over rows resampled with replacement.

    Resamples where the metric is undefined (a single class) are skipped; fewer than half
    defined gives (None, None)."""
    y, s = np.asarray(y), np.asarray(s)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        idx = rng.integers(0, len(y), len(y))
        value = _defined(fn, y[idx], s[idx])
        if value is not None:
            values.append(value)
    if len(values) < resamples / 2:
        return None, None
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return float(low), float(high)


def holdout_metrics(
    fns: dict[str, MetricFn],
    y: np.ndarray,
    s: np.ndarray,
    *,
    resamples: int,
    confidence: float,
    seed: int,
) -> list[dict[str, Any]]:
    """Each metric's value on the hold-out and its bootstrap interval."""
    rows = []
    for i, (name, fn) in enumerate(fns.items()):
        low, high = bootstrap_ci(
            fn, y, s, resamples=resamples, confidence=confidence, seed=seed + i
        )
        rows.append({"metric": name, "value": _defined(fn, y, s), "low": low, "high": high})
    return rows


def slice_metrics(
    values: pd.Series, y: np.ndarray, s: np.ndarray, fns: dict[str, MetricFn]
) -> list[dict[str, Any]]:
    """The metrics per value of a categorical column (largest slice first)."""
    values = pd.Series(values).astype("string").fillna("(missing)").reset_index(drop=True)
    y, s = np.asarray(y), np.asarray(s)
    out = []
    for value, index in values.groupby(values, sort=True).indices.items():
        ys, ss = y[index], s[index]
        out.append(
            {
                "value": str(value),
                "rows": len(index),
                "label_mean": float(ys.mean()),
                "metrics": {name: _defined(fn, ys, ss) for name, fn in fns.items()},
            }
        )
    return sorted(out, key=lambda r: (-r["rows"], r["value"]))


def permutation_importances(
    model: Any,
    X: pd.DataFrame,
    y: np.ndarray,
    task: str,
    *,
    repeats: int = 3,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """How much the score drops when one feature is shuffled (mean and std over
    ``repeats``), highest first: ROC AUC for a classifier, minus MAE for a regressor."""
    from sklearn.inspection import permutation_importance
    from threadpoolctl import threadpool_limits

    scoring = "roc_auc" if task == "classification" else "neg_mean_absolute_error"
    # one thread: many small predictions, where OpenMP's threads only contend (20x slower
    # on a busy 2-core machine)
    with threadpool_limits(limits=1):
        result = permutation_importance(
            model, X, y, scoring=scoring, n_repeats=repeats, random_state=seed, n_jobs=1
        )
    rows = [
        {"feature": str(f), "mean": float(m), "std": float(d)}
        for f, m, d in zip(X.columns, result.importances_mean, result.importances_std, strict=True)
    ]
    return sorted(rows, key=lambda r: (-r["mean"], r["feature"]))


def calibration(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Equal-width bins of predicted probability: rows, mean predicted, observed rate; the
    Brier score and the expected calibration error (row-weighted |observed - predicted|)."""
    y, proba = np.asarray(y, dtype=float), np.asarray(proba, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges[1:-1], proba, side="right"), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        if not n:
            continue
        predicted, observed = float(proba[mask].mean()), float(y[mask].mean())
        ece += n / len(y) * abs(observed - predicted)
        table.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "rows": n,
                "predicted": predicted,
                "observed": observed,
            }
        )
    return {"bins": table, "brier": float(((proba - y) ** 2).mean()), "ece": float(ece)}


# ---- the card ----------------------------------------------------------------------------
def model_scores(model: Any, frame: pd.DataFrame, features: list[str], task: str) -> np.ndarray:
    """A classifier's probability of the event, a regressor's forecast (clipped at 0 when
    the frame carries the seasonal-naive baseline, as the evaluation does)."""
    if task == "classification":
        return model.predict_proba(frame[features])[:, 1]
    from esteira.regression import NAIVE

    pred = np.asarray(model.predict(frame[features]), dtype=float)
    return np.clip(pred, 0.0, None) if NAIVE in frame else pred


def compute(
    model: Any,
    holdout: pd.DataFrame,
    *,
    features: list[str],
    label: str,
    task: str,
    decision_threshold: float,
    card: Any,
    seed: int = 0,
) -> dict[str, Any]:
    """The computed sections of a card (``card`` is ``settings.card``)."""
    y = holdout[label].to_numpy(dtype=float if task == "regression" else int)
    s = model_scores(model, holdout, features, task)
    fns = metric_functions(task, decision_threshold)
    out: dict[str, Any] = {
        "holdout_rows": len(holdout),
        "confidence": card.confidence,
        "bootstrap": card.bootstrap,
        "metrics": holdout_metrics(
            fns, y, s, resamples=card.bootstrap, confidence=card.confidence, seed=seed
        ),
    }
    if card.slice_column:
        if card.slice_column not in holdout.columns:
            out["slices_note"] = f"column {card.slice_column!r} is not in the hold-out"
        else:
            out["slice_column"] = card.slice_column
            out["slices"] = slice_metrics(holdout[card.slice_column], y, s, fns)
    sample = holdout
    if len(holdout) > card.importance_rows:
        sample = holdout.sample(card.importance_rows, random_state=seed)
    sample_y = sample[label].to_numpy(dtype=float if task == "regression" else int)
    if task != "classification" or len(np.unique(sample_y)) == 2:
        out["importance"] = permutation_importances(
            model, sample[features], sample_y, task, repeats=card.importance_repeats, seed=seed
        )
        out["importance_rows"] = len(sample)
    if task == "classification":
        out["calibration"] = calibration(y, s, card.calibration_bins)
    return out


def build(
    *,
    name: str,
    version: int,
    metadata: dict[str, Any],
    computed: dict[str, Any],
    intended_use: str,
    limitations: list[str],
    data: dict[str, Any],
    gate: dict[str, Any],
    champion: dict[str, Any] | None,
) -> dict[str, Any]:
    """The whole card as one JSON-able dict (what ``card.json`` holds)."""
    lineage_keys = (
        "source_uri",
        "data_hash",
        "data_lineage",
        "feature_service",
        "feature_definitions_hash",
        "code_version",
        "pipeline_run_id",
        "trained_at",
        "library_versions",
        "retrain",
    )
    return {
        "name": name,
        "version": version,
        "task": metadata.get("task"),
        "family": metadata.get("family"),
        "parameters": metadata.get("parameters", {}),
        "label": metadata.get("label"),
        "decision_threshold": metadata.get("decision_threshold"),
        "threshold_policy": metadata.get("threshold_policy"),
        "intended_use": intended_use.strip(),
        "limitations": list(limitations),
        "data": data,
        "features": {
            "feature_service": metadata.get("feature_service"),
            "names": metadata.get("feature_names", []),
            "categorical": metadata.get("categorical_features", []),
        },
        "evaluation": computed,
        "gate": gate,
        "champion": champion,
        "lineage": {k: metadata[k] for k in lineage_keys if k in metadata},
    }


# ---- rendering ---------------------------------------------------------------------------
def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _sections(card: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """The card as (heading, blocks); a block is a paragraph (str), a bullet list
    (("ul", items)), a table (("table", header, rows)) or a figure (("svg", kind))."""
    ev, data = card["evaluation"], card["data"]
    pct = round(ev["confidence"] * 100)
    sections: list[tuple[str, list[Any]]] = []
    model = f"{card['task']} ({card['family']}), label `{card['label']}`"
    if card.get("decision_threshold") is not None:
        policy = card.get("threshold_policy") or {}
        if isinstance(policy, dict):
            policy = ", ".join(
                f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in policy.items()
            )
        model += f", decision threshold {card['decision_threshold']:.4g} ({policy})"
    sections.append(("Model", [model]))
    sections.append(
        (
            "Intended use and limits",
            [card["intended_use"] or "(not stated: set card.intended_use)"]
            + ([("ul", card["limitations"])] if card["limitations"] else []),
        )
    )
    data_rows = [[k, _num(v)] for k, v in data.items() if not isinstance(v, dict | list)]
    sections.append(("Data", [("table", ["", "value"], data_rows)]))
    feats = card["features"]
    sections.append(
        (
            "Features",
            [
                f"FeatureService `{feats['feature_service']}`: {len(feats['names'])} features"
                + (
                    f" ({', '.join(feats['categorical'])} categorical)"
                    if feats["categorical"]
                    else ""
                )
                + ": "
                + ", ".join(f"`{n}`" for n in feats["names"]),
            ],
        )
    )
    sections.append(
        (
            "Hold-out metrics",
            [
                f"{ev['holdout_rows']:,} hold-out rows; {pct} % percentile bootstrap intervals "
                f"over {ev['bootstrap']} resamples.",
                (
                    "table",
                    ["metric", "value", f"{pct} % CI"],
                    [
                        [m["metric"], _num(m["value"]), f"{_num(m['low'])} to {_num(m['high'])}"]
                        for m in ev["metrics"]
                    ],
                ),
            ],
        )
    )
    if ev.get("slices"):
        names = [m["metric"] for m in ev["metrics"]]
        sections.append(
            (
                f"Metrics by {ev['slice_column']}",
                [
                    (
                        "table",
                        [ev["slice_column"], "rows", "label mean", *names],
                        [
                            [r["value"], _num(r["rows"]), _num(r["label_mean"])]
                            + [_num(r["metrics"][n]) for n in names]
                            for r in ev["slices"]
                        ],
                    )
                ],
            )
        )
    elif ev.get("slices_note"):
        sections.append(("Metrics by slice", [ev["slices_note"]]))
    if ev.get("importance"):
        score = "ROC AUC" if card["task"] == "classification" else "MAE"
        sections.append(
            (
                "Permutation importance",
                [
                    f"Drop in hold-out {score} when the feature is shuffled "
                    f"({ev['importance_rows']:,} rows); the top 15.",
                    ("svg", "importance"),
                    (
                        "table",
                        ["feature", "mean", "std"],
                        [
                            [f"`{r['feature']}`", _num(r["mean"]), _num(r["std"])]
                            for r in ev["importance"][:15]
                        ],
                    ),
                ],
            )
        )
    if ev.get("calibration"):
        cal = ev["calibration"]
        sections.append(
            (
                "Calibration",
                [
                    f"Brier score {_num(cal['brier'])}, expected calibration error {_num(cal['ece'])}.",
                    ("svg", "calibration"),
                    (
                        "table",
                        ["bin", "rows", "mean predicted", "observed rate"],
                        [
                            [
                                f"{b['low']:.1f}-{b['high']:.1f}",
                                _num(b["rows"]),
                                _num(b["predicted"]),
                                _num(b["observed"]),
                            ]
                            for b in cal["bins"]
                        ],
                    ),
                ],
            )
        )
    gate = card["gate"]
    blocks: list[Any] = [
        f"Gate: **{'passed' if gate.get('passed') else 'failed'}** by rule `{gate.get('rule')}`: "
        f"{gate.get('reason')}"
    ]
    champion = card.get("champion")
    if champion:
        blocks.append(
            f"Champion/challenger at registration: **{champion.get('winner')}** "
            f"({'would promote' if champion.get('promote') else 'production stays'}): "
            f"{champion.get('reason')}"
        )
    sections.append(("Gate and champion/challenger", blocks))
    lineage_rows = []
    for key, value in card["lineage"].items():
        if isinstance(value, dict):
            lineage_rows += [[f"{key}.{k}", _num(v)] for k, v in value.items()]
        else:
            lineage_rows.append([key, _num(value)])
    sections.append(("Lineage", [("table", ["", "value"], lineage_rows)]))
    return sections


def render_markdown(card: dict[str, Any]) -> str:
    lines = [f"# Model card: {card['name']} v{card['version']}", ""]
    for heading, blocks in _sections(card):
        lines += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, str):
                lines += [block, ""]
            elif block[0] == "ul":
                lines += [f"- {item}" for item in block[1]] + [""]
            elif block[0] == "table":
                header, rows = block[1], block[2]
                lines.append("| " + " | ".join(header) + " |")
                lines.append("|" + "|".join("---" for _ in header) + "|")
                lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _inline(text: str) -> str:
    """Markdown's `code` and **bold** in a line, HTML-escaped."""
    out = html.escape(str(text))
    parts = out.split("`")
    out = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
    parts = out.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _svg_importance(rows: list[dict[str, Any]]) -> str:
    rows = rows[:15]
    top = max((r["mean"] for r in rows), default=0.0) or 1.0
    height, width, left = 18 * len(rows) + 10, 640, 260
    bars = []
    for i, r in enumerate(rows):
        w = max(r["mean"], 0.0) / top * (width - left - 70)
        y = 5 + 18 * i
        bars.append(
            f'<text x="{left - 6}" y="{y + 12}" text-anchor="end">{html.escape(r["feature"])}</text>'
            f'<rect x="{left}" y="{y + 2}" width="{w:.1f}" height="13" fill="#3b6ea5"/>'
            f'<text x="{left + w + 4:.1f}" y="{y + 12}">{r["mean"]:.4f}</text>'
        )
    return (
        f'<svg role="img" aria-label="permutation importance" width="{width}" height="{height}" '
        f'font-size="11" xmlns="http://www.w3.org/2000/svg">{"".join(bars)}</svg>'
    )


def _svg_calibration(cal: dict[str, Any]) -> str:
    size, pad = 320, 40
    span = size - 2 * pad

    def xy(p: float, o: float) -> tuple[float, float]:
        return pad + p * span, size - pad - o * span

    points = [xy(b["predicted"], b["observed"]) for b in cal["bins"]]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#c0392b"/>' for x, y in points)
    ticks = "".join(
        f'<text x="{xy(t, 0)[0]:.1f}" y="{size - pad + 16}" text-anchor="middle">{t:.1f}</text>'
        f'<text x="{pad - 6}" y="{xy(0, t)[1] + 4:.1f}" text-anchor="end">{t:.1f}</text>'
        for t in (0.0, 0.5, 1.0)
    )
    (x0, y0), (x1, y1) = xy(0, 0), xy(1, 1)
    return (
        f'<svg role="img" aria-label="calibration curve" width="{size}" height="{size}" '
        f'font-size="11" xmlns="http://www.w3.org/2000/svg">'
        f'<rect x="{pad}" y="{pad}" width="{span}" height="{span}" fill="none" stroke="#999"/>'
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y1}" stroke="#999" stroke-dasharray="4 3"/>'
        f'<polyline points="{path}" fill="none" stroke="#c0392b" stroke-width="2"/>{dots}{ticks}'
        f'<text x="{size / 2}" y="{size - 6}" text-anchor="middle">mean predicted probability</text>'
        f'<text x="12" y="{size / 2}" text-anchor="middle" transform="rotate(-90 12 {size / 2})">'
        f"observed rate</text></svg>"
    )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:980px;margin:24px auto;
padding:0 16px;color:#1d2733;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #3b6ea5;padding-bottom:6px}
h2{font-size:1.2em;margin-top:1.6em;color:#23476e}
table{border-collapse:collapse;margin:8px 0;font-size:.92em}
th,td{border:1px solid #d5dbe3;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#eef2f7}td{font-variant-numeric:tabular-nums}
code{background:#f2f4f7;padding:0 3px;border-radius:3px;font-size:.92em}
.banner{padding:8px 12px;border-radius:6px;margin:12px 0;font-weight:600}
.pass{background:#e6f4ea;color:#1e6b34}.fail{background:#fdecea;color:#8a1c12}
"""


def render_html(card: dict[str, Any]) -> str:
    """The card as one self-contained HTML page (inline CSS and SVG; nothing fetched)."""
    title = f"Model card: {card['name']} v{card['version']}"
    passed = bool(card["gate"].get("passed"))
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="banner {"pass" if passed else "fail"}">gate '
        f"{'passed' if passed else 'failed'} ({html.escape(str(card['gate'].get('rule')))})</div>",
    ]
    ev = card["evaluation"]
    for heading, blocks in _sections(card):
        body.append(f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            if isinstance(block, str):
                body.append(f"<p>{_inline(block)}</p>")
            elif block[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block[1]) + "</ul>")
            elif block[0] == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
                rows = "".join(
                    "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
                    for row in block[2]
                )
                body.append(f"<table><tr>{head}</tr>{rows}</table>")
            elif block == ("svg", "importance"):
                body.append(_svg_importance(ev["importance"]))
            elif block == ("svg", "calibration"):
                body.append(_svg_calibration(ev["calibration"]))
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
