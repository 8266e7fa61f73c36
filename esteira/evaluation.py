"""Evaluate: hold-out metrics, ROC and precision-recall curves, confusion matrix, the
threshold table (precision, recall, alerts and expected cost per threshold), and the gate.

A classifier is judged at its own ``decision_threshold`` (chosen at training from the
training window, ``esteira/thresholds.py``); the table and ``expected_cost_at_0.5`` show
what the plain 0.5 cut would have done on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from esteira.config import KNOWN_METRICS, ModelSettings, ThresholdSettings
from esteira.thresholds import DEFAULT_THRESHOLD, operating, policy_summary, pr_curve

# thresholds every table shows, besides the chosen one
TABLE_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8)


@dataclass
class Evaluation:
    metrics: dict[str, float]
    roc: dict[str, list[float]] | None = None
    confusion: list[list[int]] | None = None
    pr: dict[str, list[float]] | None = None
    # {"decision_threshold", "policy", "chosen": Operating, "at_0.5": Operating, "table": [...]}
    threshold: dict[str, Any] | None = None
    gate_passed: bool = False
    gate_failures: list[str] = field(default_factory=list)


def threshold_view(
    y: Any, proba: Any, decision_threshold: float, policy: ThresholdSettings
) -> dict[str, Any]:
    """The chosen point, the 0.5 cut and a small table of thresholds on these rows."""
    table = [
        operating(y, proba, t, policy).as_dict()
        for t in sorted({*TABLE_THRESHOLDS, float(decision_threshold)})
    ]
    return {
        "decision_threshold": float(decision_threshold),
        "policy": policy_summary(policy),
        "costs": {"fn_cost": policy.fn_cost, "fp_cost": policy.fp_cost},
        "chosen": operating(y, proba, decision_threshold, policy).as_dict(),
        "at_0.5": operating(y, proba, DEFAULT_THRESHOLD, policy).as_dict(),
        "table": table,
    }


def score(
    model: Any,
    frame: pd.DataFrame,
    feature_names: list[str],
    label: str,
    cfg: ModelSettings,
    decision_threshold: float = DEFAULT_THRESHOLD,
) -> Evaluation:
    """Metrics of ``model`` on ``frame``; a classifier's classes are ``proba >= decision_threshold``
    (the model's own, from its training), its costs ``cfg.threshold``'s."""
    y = frame[label].to_numpy()
    X = frame[feature_names]
    if cfg.task == "regression":  # esteira/regression.py: against the seasonal-naive baseline
        from esteira.regression import score as score_forecast

        return Evaluation(score_forecast(model, frame, feature_names, label).metrics)
    proba = model.predict_proba(X)[:, 1]
    pred = (proba >= decision_threshold).astype(int)
    view = threshold_view(y, proba, decision_threshold, cfg.threshold)
    fpr, tpr, thr = skm.roc_curve(y, proba)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 200)).astype(int))
    return Evaluation(
        metrics={
            "roc_auc": float(skm.roc_auc_score(y, proba)),
            "pr_auc": float(skm.average_precision_score(y, proba)),
            "f1": float(skm.f1_score(y, pred, zero_division=0)),
            "precision": float(skm.precision_score(y, pred, zero_division=0)),
            "recall": float(skm.recall_score(y, pred, zero_division=0)),
            "accuracy": float(skm.accuracy_score(y, pred)),
            "macro_f1": float(skm.f1_score(y, pred, average="macro", zero_division=0)),
            "positive_rate": float(y.mean()),
            "rows": float(len(y)),
            "expected_cost": view["chosen"]["expected_cost"],
        },
        roc={
            "fpr": fpr[keep].round(6).tolist(),
            "tpr": tpr[keep].round(6).tolist(),
            "threshold": np.clip(thr[keep], 0.0, 1.0).round(6).tolist(),
        },
        confusion=skm.confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        pr=pr_curve(y, proba),
        threshold=view,
    )


def check_thresholds(metrics: dict[str, float], thresholds: dict[str, float]) -> list[str]:
    """Failures as sentences; minimize-metrics (rmse, mae) are upper bounds."""
    failures = []
    for name, bound in thresholds.items():
        if name not in metrics:
            failures.append(f"{name}: not computed for this task (have {sorted(metrics)})")
            continue
        value = metrics[name]
        if KNOWN_METRICS[name] == "minimize" and value > bound:
            failures.append(f"{name} {value:.4f} > maximum {bound}")
        elif KNOWN_METRICS[name] == "maximize" and value < bound:
            failures.append(f"{name} {value:.4f} < minimum {bound}")
    return failures


def evaluate(
    model: Any,
    holdout: pd.DataFrame,
    feature_names: list[str],
    label: str,
    cfg: ModelSettings,
    thresholds: dict[str, float],
    decision_threshold: float = DEFAULT_THRESHOLD,
) -> Evaluation:
    result = score(model, holdout, feature_names, label, cfg, decision_threshold)
    result.gate_failures = check_thresholds(result.metrics, thresholds)
    result.gate_passed = not result.gate_failures
    return result
