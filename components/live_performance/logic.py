"""Live performance: logged predictions against the labels that arrived since; degradation vs training.

Labels arrive later: a prediction made at ``event_timestamp`` t is labelled 1 when
the contract's event (``failure``) happens in (t, t + horizon], and its label is
known once the raw data reaches t + horizon for that entity (the same rule as
``esteira.features.label_frame``). :func:`live_performance` joins the logged
predictions with those labels and computes, over the window and per day of
``event_timestamp``: rows, positives, ROC AUC and PR AUC (when both classes are
present) and precision/recall/F1 of the logged decision. The model is *degraded*
when a metric the gate cares about (``gate.compare_metric`` and every
``gate.thresholds`` metric) is worse than the value recorded at training
(``metadata["metrics"]``) by more than ``monitoring.performance_tolerance``
(absolute). With fewer than ``min_positives`` labelled positives the comparison is
not made (``status="insufficient_labels"``): a handful of failures says nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from esteira.config import KNOWN_METRICS, Settings
from esteira.contract import Contract, load_contract
from esteira.errors import DataError
from esteira.features import EVENT_TS

MIN_POSITIVES = 10
"""Labelled positives below which live metrics are reported but not compared."""


# ---- the prediction log --------------------------------------------------------------------
def _utc(values: Any) -> Any:
    return pd.to_datetime(values, utc=True)


# ---- drift ---------------------------------------------------------------------------------


# ---- live performance ----------------------------------------------------------------------
def attach_labels(predictions: pd.DataFrame, raw: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """``predictions`` with the contract's label where it is known yet (others dropped).

    Label 1: the event happens in (event_timestamp, event_timestamp + horizon] for the
    entity. Known: the entity's raw data reaches event_timestamp + horizon.
    """
    entity, ts = contract.entity, contract.timestamp
    horizon = pd.Timedelta(hours=contract.label.horizon_hours)
    stamps = _utc(raw[ts])
    events = pd.DataFrame({entity: raw[entity].to_numpy(), "_next": stamps.to_numpy()})
    events = events.loc[(raw[contract.label.event] > 0).to_numpy()].sort_values("_next")
    last_seen = pd.DataFrame({entity: raw[entity].to_numpy(), "_last": stamps.to_numpy()})
    last_seen = last_seen.groupby(entity, as_index=False)["_last"].max()

    rows = predictions.assign(**{EVENT_TS: _utc(predictions[EVENT_TS])})
    rows = rows.sort_values(EVENT_TS, kind="stable")
    events[entity] = events[entity].astype(rows[entity].dtype)
    last_seen[entity] = last_seen[entity].astype(rows[entity].dtype)
    joined = pd.merge_asof(
        rows,
        events,
        left_on=EVENT_TS,
        right_on="_next",
        by=entity,
        direction="forward",
        allow_exact_matches=False,
    )
    joined = joined.merge(last_seen, on=entity, how="left")
    known = joined["_last"].notna() & (joined[EVENT_TS] + horizon <= joined["_last"])
    joined = joined.loc[known].copy()
    joined[contract.label.name] = ((joined["_next"] - joined[EVENT_TS]) <= horizon).to_numpy(
        dtype=np.int64
    )
    return joined.drop(columns=["_next", "_last"]).reset_index(drop=True)


def classification_metrics(
    y: np.ndarray, proba: np.ndarray, pred: np.ndarray, costs: tuple[float, float] | None = None
) -> dict[str, Any]:
    """rows, positives, AUCs (None with one class), precision/recall/F1 of the decisions and,
    given ``costs`` (fn_cost, fp_cost), their expected cost per 1,000 rows."""
    both = len(np.unique(y)) == 2
    extra = {}
    if costs is not None and len(y):
        missed = int(np.sum((pred == 0) & (y == 1)))
        false_alarms = int(np.sum((pred == 1) & (y == 0)))
        extra["expected_cost"] = 1000.0 * (costs[0] * missed + costs[1] * false_alarms) / len(y)
    return extra | {
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "positive_rate": float(y.mean()) if len(y) else 0.0,
        "roc_auc": float(skm.roc_auc_score(y, proba)) if both else None,
        "pr_auc": float(skm.average_precision_score(y, proba)) if both else None,
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
    }


def _compared_metrics(settings: Settings) -> list[str]:
    names = [settings.gate.compare_metric, *settings.gate.thresholds]
    return list(dict.fromkeys(n for n in names if n in KNOWN_METRICS))


def degradation(
    live: dict[str, Any], recorded: dict[str, float], metrics: list[str], tolerance: float
) -> dict[str, dict[str, Any]]:
    """Per metric: recorded, live, change and whether it is worse by more than ``tolerance``."""
    out: dict[str, dict[str, Any]] = {}
    for name in metrics:
        value, baseline = live.get(name), recorded.get(name)
        if value is None or baseline is None:
            continue
        change = float(value) - float(baseline)
        worse = -change if KNOWN_METRICS[name] == "maximize" else change
        out[name] = {
            "recorded": float(baseline),
            "live": float(value),
            "change": change,
            "degraded": bool(worse > tolerance),
        }
    return out


def _chosen_version(predictions: pd.DataFrame, production: int | None) -> int:
    versions = set(predictions["model_version"].astype(int))
    return production if production in versions else max(versions)


def live_performance(
    predictions: pd.DataFrame,
    raw_with_labels: pd.DataFrame,
    settings: Settings,
    *,
    min_positives: int = MIN_POSITIVES,
) -> dict[str, Any]:
    """Metrics of logged predictions against labels that arrived later, and the degradation flag.

    Rows of one model version are judged (the production version when it made some of
    them, else the newest) against the metrics that version recorded at training.
    """
    from esteira.registry import registry_for

    contract = load_contract(settings.features.repo_path)
    registry = registry_for(settings)
    result: dict[str, Any] = {"status": "no_predictions", "degraded": False, "rows": 0}
    if predictions.empty:
        return result
    production = registry.aliases().get("production")
    version = _chosen_version(predictions, production)
    meta = registry.get(version).metadata
    if meta.get("task", "classification") != "classification":
        raise DataError("live performance", "only classification is monitored", "")
    rows = predictions.loc[predictions["model_version"].astype(int) == version]
    labelled = attach_labels(rows, raw_with_labels, contract)
    label = contract.label.name
    result |= {
        "model_version": int(version),
        "rows": int(len(rows)),
        "labelled_rows": int(len(labelled)),
        "unlabelled_rows": int(len(rows) - len(labelled)),
    }
    if labelled.empty:
        return result | {"status": "no_labels"}

    # the version's own threshold (as served and batch-predicted), the configured costs
    threshold = float(meta.get("decision_threshold", 0.5))
    costs = (settings.model.threshold.fn_cost, settings.model.threshold.fp_cost)
    result["decision_threshold"] = threshold

    def scores(part: pd.DataFrame) -> dict[str, Any]:
        proba = part["probability"].to_numpy(dtype=float)
        pred = (proba >= threshold).astype(int)
        return classification_metrics(part[label].to_numpy(), proba, pred, costs)

    overall = scores(labelled)
    days = labelled[EVENT_TS].dt.strftime("%Y-%m-%d")
    per_day = {day: scores(part) for day, part in labelled.groupby(days, sort=True)}
    compared = degradation(
        overall,
        meta.get("metrics", {}),
        _compared_metrics(settings),
        settings.monitoring.performance_tolerance,
    )
    enough = overall["positives"] >= min_positives and overall["roc_auc"] is not None
    return result | {
        "status": "ok" if enough else "insufficient_labels",
        "metrics": overall,
        "per_day": per_day,
        "recorded_metrics": {k: meta.get("metrics", {}).get(k) for k in compared},
        "comparison": compared,
        "tolerance": settings.monitoring.performance_tolerance,
        "min_positives": min_positives,
        "degraded": bool(enough and any(c["degraded"] for c in compared.values())),
    }


# ---- retraining ----------------------------------------------------------------------------
