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

A ``class`` label is the logged row's own label, known once its raw row arrived.
A regression's prediction at t is of a value that arrives later (the raw row it forecast,
:func:`esteira.features.entity_frame`). Its live metrics are MAE, RMSE, WAPE and MASE
against the seasonal-naive forecast of the same rows (``esteira.regression``), overall
and per day, compared the same way (``wape`` against the recorded ``wape``); fewer than
``min_positives`` labelled rows are reported but not compared.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from esteira.config import KNOWN_METRICS, Settings
from esteira.contract import Contract, load_contract
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

    An ``event`` label is 1 when the event happens in (event_timestamp, event_timestamp +
    horizon] for the entity; it is known once the entity's raw data reaches
    event_timestamp + horizon. A ``value`` label is the raw value of the row it forecast
    (see :func:`esteira.features.entity_frame`), known once that row arrived; the
    seasonal-naive forecast of it comes along (``seasonal_naive``), from the raw values too.
    """
    if contract.label.kind == "value":
        return _attach_values(predictions, raw, contract)
    if contract.label.kind == "class":
        return _attach_classes(predictions, raw, contract)
    keys, ts = contract.keys, contract.timestamp
    horizon = pd.Timedelta(hours=contract.label.horizon_hours)
    stamps = _utc(raw[ts])
    events = pd.DataFrame({k: raw[k].to_numpy() for k in keys}).assign(_next=stamps.to_numpy())
    events = events.loc[(raw[contract.label.event] > 0).to_numpy()].sort_values("_next")
    last_seen = pd.DataFrame({k: raw[k].to_numpy() for k in keys}).assign(_last=stamps.to_numpy())
    last_seen = last_seen.groupby(keys, as_index=False)["_last"].max()

    rows = predictions.assign(**{EVENT_TS: _utc(predictions[EVENT_TS])})
    rows = rows.sort_values(EVENT_TS, kind="stable")
    events = events.astype({k: rows[k].dtype for k in keys})
    last_seen = last_seen.astype({k: rows[k].dtype for k in keys})
    joined = pd.merge_asof(
        rows,
        events,
        left_on=EVENT_TS,
        right_on="_next",
        by=keys,
        direction="forward",
        allow_exact_matches=False,
    )
    joined = joined.merge(last_seen, on=keys, how="left")
    known = joined["_last"].notna() & (joined[EVENT_TS] + horizon <= joined["_last"])
    joined = joined.loc[known].copy()
    joined[contract.label.name] = ((joined["_next"] - joined[EVENT_TS]) <= horizon).to_numpy(
        dtype=np.int64
    )
    return joined.drop(columns=["_next", "_last"]).reset_index(drop=True)


def _attach_values(predictions: pd.DataFrame, raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    from esteira.regression import NAIVE, seasonal_naive

    keys, label = c.keys, c.label.name
    shift = pd.Timedelta(hours=c.available_after_hours - c.label.horizon_hours)
    actual = pd.DataFrame({k: raw[k].to_numpy() for k in keys})
    actual[EVENT_TS] = (_utc(raw[c.timestamp]) + shift).to_numpy()
    actual[label] = raw[c.label.source].to_numpy(dtype="float64")
    actual = actual.drop_duplicates([*keys, EVENT_TS], keep="last").reset_index(drop=True)
    actual[NAIVE] = seasonal_naive(actual, keys, label, c.label.season_hours or 0)
    rows = predictions.assign(**{EVENT_TS: _utc(predictions[EVENT_TS])})
    actual = actual.astype({k: rows[k].dtype for k in keys})
    joined = rows.drop(columns=[label, NAIVE], errors="ignore").merge(
        actual, on=[*keys, EVENT_TS], how="inner"
    )
    return joined.sort_values([EVENT_TS, *keys], kind="stable").reset_index(drop=True)


def _attach_classes(predictions: pd.DataFrame, raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    """A ``class`` label: the raw row's own label, once it arrived (e.g. a reviewer's rating
    turned into a label), joined on the keys and the row's time."""
    keys, label = c.keys, c.label.name
    actual = pd.DataFrame({k: raw[k].to_numpy() for k in keys})
    actual[EVENT_TS] = _utc(raw[c.timestamp]).to_numpy()
    actual[label] = raw[c.label.source].to_numpy(dtype="int64")
    actual = actual.drop_duplicates([*keys, EVENT_TS], keep="last")
    rows = predictions.assign(**{EVENT_TS: _utc(predictions[EVENT_TS])})
    actual = actual.astype({k: rows[k].dtype for k in keys})
    joined = rows.drop(columns=[label], errors="ignore").merge(
        actual, on=[*keys, EVENT_TS], how="inner"
    )
    return joined.sort_values([EVENT_TS, *keys], kind="stable").reset_index(drop=True)


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
        "accuracy": float(skm.accuracy_score(y, pred)) if len(y) else None,
        "macro_f1": float(skm.f1_score(y, pred, average="macro", zero_division=0))
        if len(y)
        else None,
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
    if contract.label.kind == "value":
        from esteira.regression import NAIVE, forecast_metrics

        def scores(part: pd.DataFrame) -> dict[str, Any]:
            return forecast_metrics(part[label], part["prediction"], part[NAIVE])

        def enough(overall: dict[str, Any]) -> bool:
            return overall.get("rows", 0) >= min_positives

        return (
            result | _judged(labelled, scores, enough, meta, settings) | {"min_rows": min_positives}
        )

    # the version's own threshold (as served and batch-predicted), the configured costs
    threshold = float(meta.get("decision_threshold", 0.5))
    costs = (settings.model.threshold.fn_cost, settings.model.threshold.fp_cost)
    result["decision_threshold"] = threshold

    def classified(part: pd.DataFrame) -> dict[str, Any]:
        proba = part["probability"].to_numpy(dtype=float)
        pred = (proba >= threshold).astype(int)
        return classification_metrics(part[label].to_numpy(), proba, pred, costs)

    def counted(overall: dict[str, Any]) -> bool:
        return overall["positives"] >= min_positives and overall["roc_auc"] is not None

    return (
        result
        | _judged(labelled, classified, counted, meta, settings)
        | {"min_positives": min_positives}
    )


def _judged(
    labelled: pd.DataFrame,
    scores: Any,
    enough: Any,
    meta: dict[str, Any],
    settings: Settings,
) -> dict[str, Any]:
    """``scores`` of the labelled rows, overall and per day of event_timestamp, compared with
    what the version recorded at training; degraded only when ``enough`` labels say so.
    A classifier's scores are its ranking and decision metrics; a regression's the forecast
    metrics against seasonal naive (MAE, RMSE, WAPE, MASE)."""
    overall = scores(labelled)
    days = labelled[EVENT_TS].dt.strftime("%Y-%m-%d")
    per_day = {day: scores(part) for day, part in labelled.groupby(days, sort=True)}
    compared = degradation(
        overall,
        meta.get("metrics", {}),
        _compared_metrics(settings),
        settings.monitoring.performance_tolerance,
    )
    judged = enough(overall)
    return {
        "status": "ok" if judged else "insufficient_labels",
        "metrics": overall,
        "per_day": per_day,
        "recorded_metrics": {k: meta.get("metrics", {}).get(k) for k in compared},
        "comparison": compared,
        "tolerance": settings.monitoring.performance_tolerance,
        "degraded": bool(judged and any(c["degraded"] for c in compared.values())),
    }


# ---- retraining ----------------------------------------------------------------------------
