"""Drift check: the features of logged predictions against the production version's reference.

:func:`drift_check` compares the features of logged predictions with the
``reference.json`` profile the production version stored at registration
(``esteira.drift.compare``) and renders the HTML report. Drift warrants retraining
(``DriftReport.drift_detected``, reported by :func:`drift_verdict`) when the dataset drifts (the share of
drifted features reaches ``monitoring.drift_share``) **or** at least one feature
drifts with *significant* severity (PSI >= ``monitoring.psi_significant``, or JS
distance >= ``esteira.drift.JS_SIGNIFICANT`` for categories). The share alone is
diluted by correlated derived features: a recalibrated voltage sensor moves 6 of the
39 features (every volt mean/min/max) by a PSI of 1 to 5, a 15% share, yet it
invalidates what the model learnt about voltage.

Request-time text (``features.text``) is compared through its length and out-of-vocabulary
rate, beside the mix of predicted classes (``esteira/text_drift.py``).

Calendar features (``features.calendar``: day of week, month, day of year, ...) are
functions of the clock, so any later period differs from the training window in them:
they are left out of the comparison.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from esteira.config import Settings
from esteira.drift import DriftReport, compare

REFERENCE_FILE = "reference.json"


def _production(settings: Settings) -> Any:
    from esteira.registry import production_version, registry_for

    registry = registry_for(settings)
    return registry, production_version(registry)


def drift_check(settings: Settings, current: pd.DataFrame) -> tuple[DriftReport, str]:
    """Drift of ``current``'s model features against the production version's reference."""
    from esteira.report import render_drift_html

    registry, version = _production(settings)
    reference = json.loads(registry.read_file(version.version, REFERENCE_FILE))
    features = monitored_features(settings, list(version.metadata["feature_names"]))
    text = list(version.metadata.get("text_features") or [])
    if text:  # text as its signals, and the mix of predicted classes (esteira/text_drift.py)
        from esteira.text_drift import current_frame

        current, features = current_frame(current, features, text, reference)
    report = compare(reference, current, settings.monitoring, features)
    title = f"Data drift: {registry.name} v{version.version} ({len(current)} logged rows)"
    return report, render_drift_html(report, title)


def monitored_features(settings: Settings, features: list[str]) -> list[str]:
    """The model's features drift is judged on: all but the calendar's (see the module doc)."""
    from esteira.contract import load_contract
    from esteira.feast_definitions import calendar_features

    contract = load_contract(settings.features.repo_path)
    clock = set(calendar_features(contract)) if contract.features.calendar else set()
    return [f for f in features if f not in clock]


def drift_verdict(report: DriftReport) -> dict[str, Any]:
    """Whether the drift warrants retraining (see the module doc), with the reasons."""
    return {
        "drift_detected": report.drift_detected,
        "dataset_drift": bool(report.dataset_drift),
        "drift_share": float(report.drift_share),
        "drifted_features": report.drifted_features,
        "significant_features": report.significant_features,
    }


def feature_summary(report: DriftReport) -> dict[str, dict[str, Any]]:
    """Per feature: kind, drifted, severity, effect size (PSI or JS) and p-value, JSON-safe."""
    out: dict[str, dict[str, Any]] = {}
    for f in report.features:
        effect = f.effect_size
        out[f.feature] = {
            "kind": f.kind,
            "drifted": bool(f.drifted),
            "severity": f.severity,
            "psi" if f.kind == "numeric" else "js": None
            if math.isnan(effect)
            else round(effect, 6),
            "p_value": float(f"{f.p_value:.6g}"),
        }
    return out
