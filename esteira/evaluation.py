"""Evaluate: hold-out metrics, ROC curve and confusion matrix, and the absolute gate."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from esteira.config import KNOWN_METRICS, ModelSettings


@dataclass
class Evaluation:
    metrics: dict[str, float]
    roc: dict[str, list[float]] | None = None
    confusion: list[list[int]] | None = None
    gate_passed: bool = False
    gate_failures: list[str] = field(default_factory=list)


def score(
    model: Any, frame: pd.DataFrame, feature_names: list[str], label: str, cfg: ModelSettings
) -> Evaluation:
    y = frame[label].to_numpy()
    X = frame[feature_names]
    if cfg.task == "regression":  # esteira/regression.py: against the seasonal-naive baseline
        from esteira.regression import score as score_forecast

        return Evaluation(score_forecast(model, frame, feature_names, label).metrics)
    proba = model.predict_proba(X)[:, 1]
    pred = (proba >= cfg.decision_threshold).astype(int)
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
            "positive_rate": float(y.mean()),
            "rows": float(len(y)),
        },
        roc={
            "fpr": fpr[keep].round(6).tolist(),
            "tpr": tpr[keep].round(6).tolist(),
            "threshold": np.clip(thr[keep], 0.0, 1.0).round(6).tolist(),
        },
        confusion=skm.confusion_matrix(y, pred, labels=[0, 1]).tolist(),
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
) -> Evaluation:
    result = score(model, holdout, feature_names, label, cfg)
    result.gate_failures = check_thresholds(result.metrics, thresholds)
    result.gate_passed = not result.gate_failures
    return result
