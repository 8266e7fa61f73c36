"""The regression task in the pipeline: the baseline column, the backtest, the report.

What the ``train`` and ``evaluate`` steps call for ``model.task: regression``; the
arithmetic is in ``esteira/regression.py``. Everything named comes from the contract
(keys, label, season) and the settings (``evaluation.*``).
"""

from __future__ import annotations

import html
from typing import Any

import pandas as pd

from esteira.config import Settings
from esteira.contract import Contract
from esteira.errors import ConfigError
from esteira.regression import (
    NAIVE,
    backtest,
    backtest_summary,
    score,
    seasonal_naive,
)


def add_baseline(frame: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """``frame`` with the seasonal-naive forecast of each row (from the labels themselves)."""
    season = contract.label.season_hours
    if not season:
        raise ConfigError(
            "dataset.yaml:label.season_hours",
            "a regression needs the seasonal-naive baseline's season",
            "set label.season_hours (e.g. 168 for the same weekday a week before)",
        )
    return frame.assign(
        **{NAIVE: seasonal_naive(frame, contract.keys, contract.label.name, season)}
    )


def run_backtest(
    frame: pd.DataFrame,
    fit: Any,
    feature_names: list[str],
    split_time: str,
    contract: Contract,
    settings: Settings,
) -> dict[str, Any]:
    """Rolling origin over the hold-out window (from ``split_time``), ``evaluation.backtest_folds``
    folds, each model refitted with ``fit`` on the rows before its origin."""
    folds = backtest(
        frame,
        feature_names,
        contract.label.name,
        fit,
        start=pd.Timestamp(split_time),
        folds=settings.evaluation.backtest_folds,
        purge=pd.Timedelta(hours=contract.label.horizon_hours),
    )
    return {"folds": folds, **backtest_summary(folds)}


def evaluate_forecast(
    model: Any, holdout: pd.DataFrame, info: dict[str, Any], settings: Settings
) -> tuple[dict[str, float], str]:
    """Hold-out metrics with the baseline's, the backtest's pooled figures, and an HTML report."""
    from esteira.contract import load_contract

    contract = load_contract(settings.features.repo_path)
    result = score(
        model,
        holdout,
        info["feature_names"],
        info["label"],
        keys=contract.keys,
        segment_by=settings.evaluation.segments,
        series=settings.evaluation.series,
    )
    bt = info.get("backtest") or {}
    metrics = {**result.metrics, **{k: v for k, v in bt.items() if k != "folds"}}
    metrics.pop("actual_total", None)
    return metrics, render_forecast_html(metrics, result.series, result.segments, bt.get("folds"))


def _svg(series: dict[str, Any], width: int = 640, height: int = 180) -> str:
    values = [v for k in ("actual", "forecast", "naive") for v in series.get(k, []) if v == v]
    top = max(values or [1.0]) or 1.0
    n = max(len(series["actual"]) - 1, 1)

    def line(points: list[float], colour: str) -> str:
        xy = " ".join(
            f"{i * width / n:.1f},{height - (v / top) * (height - 10):.1f}"
            for i, v in enumerate(points)
            if v == v
        )
        return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{xy}"/>'

    parts = [line(series["actual"], "#222"), line(series["forecast"], "#1f77b4")]
    if series.get("naive"):
        parts.append(line(series["naive"], "#ff7f0e"))
    return f'<svg width="{width}" height="{height}" role="img">{"".join(parts)}</svg>'


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_forecast_html(
    metrics: dict[str, float],
    series: list[dict[str, Any]],
    segments: list[dict[str, Any]],
    folds: list[dict[str, Any]] | None,
) -> str:
    """The evaluate step's HTML for a regression: figures, forecast vs actual, error by segment
    and by backtest fold (self-contained: inline SVG, no scripts)."""
    shown = [{"metric": k, "value": v} for k, v in sorted(metrics.items())]
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Forecast evaluation</title>",
        "<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:right}</style>",
        "</head><body><h1>Forecast evaluation</h1>",
        "<p>Model against the seasonal-naive baseline on the same hold-out rows.</p>",
        _table(shown, ["metric", "value"]),
        "<h2>Forecast vs actual</h2><p>black: actual, blue: forecast, orange: seasonal naive</p>",
    ]
    for s in series:
        key = ", ".join(f"{k}={v}" for k, v in s["key"].items())
        out += [f"<h3>{html.escape(key)}</h3>", _svg(s)]
    if segments:
        out += [
            "<h2>Error by segment</h2>",
            _table(segments, ["segment", "value", "rows", "wape", "wape_naive", "mae", "bias"]),
        ]
    if folds:
        out += [
            "<h2>Rolling-origin backtest</h2>",
            _table(folds, ["fold", "origin", "until", "train_rows", "rows", "wape", "wape_naive"]),
        ]
    out.append("</body></html>")
    return "\n".join(out)
