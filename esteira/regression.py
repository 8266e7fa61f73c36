"""The regression task: forecast metrics, the seasonal-naive baseline, a rolling-origin backtest.

Kept apart from the classification code (``esteira/evaluation.py`` dispatches here for
``model.task: regression``). Metrics, all computed on the same rows:

* ``mae``, ``rmse``;
* ``wape``: sum |y - f| / sum |y| (weighted absolute percentage error; safe with zeros);
* ``mase``: the model's MAE over the seasonal-naive baseline's MAE on the same rows
  (below 1: better than repeating last season);
* ``wape_naive``: the baseline's WAPE, and ``wape_improvement`` = 1 - wape / wape_naive,
  what the gate holds against ``gate.thresholds`` (e.g. at least 0.10: 10 % better).

The seasonal-naive forecast is computed independently of the features: for an entity
row at time t it is the *label* (the actual value) of the same entity's row at
t - season, looked up in the labelled rows themselves (:func:`seasonal_naive`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

NAIVE = "seasonal_naive"  # the baseline's column in a hold-out frame
EVENT_TS = "event_timestamp"


def seasonal_naive(
    frame: pd.DataFrame, keys: list[str], label: str, season_hours: float, ts: str = EVENT_TS
) -> pd.Series:
    """For each row, the label of the same entity ``season_hours`` earlier (NaN when absent)."""
    past = frame[[*keys, ts, label]].copy()
    past[ts] = past[ts] + pd.Timedelta(hours=season_hours)
    past = past.drop_duplicates([*keys, ts]).rename(columns={label: NAIVE})
    joined = frame[[*keys, ts]].merge(past, on=[*keys, ts], how="left")
    return pd.Series(joined[NAIVE].to_numpy(dtype="float64"), index=frame.index, name=NAIVE)


def forecast_metrics(y: np.ndarray, pred: np.ndarray, naive: np.ndarray) -> dict[str, float]:
    """MAE, RMSE, WAPE, MASE and the baseline's figures, on rows where the baseline exists."""
    y, pred, naive = (np.asarray(a, dtype="float64") for a in (y, pred, naive))
    keep = ~np.isnan(naive)
    y, pred, naive = y[keep], pred[keep], naive[keep]
    if not len(y):
        return {"rows": 0.0}
    total = float(np.abs(y).sum()) or 1.0
    mae = float(np.abs(y - pred).mean())
    mae_naive = float(np.abs(y - naive).mean())
    wape = float(np.abs(y - pred).sum()) / total
    wape_naive = float(np.abs(y - naive).sum()) / total
    return {
        "mae": mae,
        "rmse": float(np.sqrt(((y - pred) ** 2).mean())),
        "wape": wape,
        "mase": mae / mae_naive if mae_naive else float("inf"),
        "mae_naive": mae_naive,
        "wape_naive": wape_naive,
        "wape_improvement": 1.0 - wape / wape_naive if wape_naive else 0.0,
        "bias": float((pred - y).sum()) / total,
        "rows": float(len(y)),
        "actual_total": total,
    }


@dataclass
class RegressionEvaluation:
    metrics: dict[str, float]
    series: list[dict[str, Any]] = field(default_factory=list)  # forecast vs actual, a few
    segments: list[dict[str, Any]] = field(default_factory=list)  # error by segment


def score(
    model: Any,
    frame: pd.DataFrame,
    feature_names: list[str],
    label: str,
    keys: list[str] | None = None,
    segment_by: list[str] | None = None,
    series: int = 3,
) -> RegressionEvaluation:
    """The model against the seasonal-naive column ``seasonal_naive`` of ``frame`` (without
    that column: RMSE, MAE and R² only). Forecasts are clipped at 0 against the baseline."""
    y = frame[label].to_numpy(dtype="float64")
    if NAIVE not in frame:  # no baseline to hold it against: the plain regression figures
        raw = model.predict(frame[feature_names])
        return RegressionEvaluation(
            {
                "rmse": float(np.sqrt(((y - raw) ** 2).mean())),
                "mae": float(np.abs(y - raw).mean()),
                "r2": float(1 - ((y - raw) ** 2).sum() / (((y - y.mean()) ** 2).sum() or 1.0)),
            }
        )
    pred = np.clip(model.predict(frame[feature_names]), 0.0, None)
    naive = frame[NAIVE].to_numpy(dtype="float64")
    result = RegressionEvaluation(forecast_metrics(y, pred, naive))
    if keys and EVENT_TS in frame:
        shown = frame.assign(_pred=pred)
        totals = shown.groupby(keys)[label].sum().sort_values(ascending=False)
        for key in totals.index[:series]:
            key = key if isinstance(key, tuple) else (key,)
            rows = shown
            for k, v in zip(keys, key, strict=True):
                rows = rows[rows[k] == v]
            rows = rows.sort_values(EVENT_TS)
            result.series.append(
                {
                    "key": dict(zip(keys, [_plain(v) for v in key], strict=True)),
                    "time": [t.isoformat() for t in pd.to_datetime(rows[EVENT_TS])],
                    "actual": rows[label].round(3).tolist(),
                    "forecast": rows["_pred"].round(3).tolist(),
                    "naive": rows[NAIVE].round(3).tolist() if NAIVE in rows else [],
                }
            )
    for column in segment_by or []:
        if column not in frame:
            continue
        for value, part in frame.assign(_pred=pred).groupby(column):
            m = forecast_metrics(
                part[label].to_numpy(),
                part["_pred"].to_numpy(),
                part[NAIVE].to_numpy() if NAIVE in part else np.full(len(part), np.nan),
            )
            result.segments.append({"segment": column, "value": _plain(value), **m})
    return result


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def fold_origins(times: pd.Series, start: pd.Timestamp, folds: int) -> list[pd.Timestamp]:
    """``folds`` + 1 boundaries splitting (start, max] into equal stretches of time."""
    end = times.max()
    return [start + (end - start) * i / folds for i in range(folds + 1)]


def backtest(
    frame: pd.DataFrame,
    feature_names: list[str],
    label: str,
    fit: Any,
    *,
    start: pd.Timestamp,
    folds: int,
    purge: pd.Timedelta,
    ts: str = EVENT_TS,
) -> list[dict[str, Any]]:
    """Rolling origin: for each fold, fit on rows up to its origin (minus ``purge``) and
    forecast the rows up to the next origin; metrics per fold, model and baseline alike.

    ``fit(train_frame) -> model``; ``frame`` carries the ``seasonal_naive`` column.
    """
    out = []
    origins = fold_origins(frame[ts], start, folds)
    for i in range(folds):
        origin, until = origins[i], origins[i + 1]
        train = frame[frame[ts] <= origin - purge]
        test = frame[(frame[ts] > origin) & (frame[ts] <= until)]
        if train.empty or test.empty:
            continue
        model = fit(train)
        pred = np.clip(model.predict(test[feature_names]), 0.0, None)
        metrics = forecast_metrics(test[label].to_numpy(), pred, test[NAIVE].to_numpy())
        out.append(
            {
                "fold": i + 1,
                "origin": origin.isoformat(),
                "until": until.isoformat(),
                "train_rows": len(train),
                **metrics,
            }
        )
    return out


def backtest_summary(folds: list[dict[str, Any]]) -> dict[str, float]:
    """Pooled figures over the folds (sums of absolute errors over the sum of actuals)."""
    folds = [f for f in folds if f.get("rows")]
    if not folds:
        return {}
    total = sum(f["actual_total"] for f in folds)
    wape = sum(f["wape"] * f["actual_total"] for f in folds) / total
    naive = sum(f["wape_naive"] * f["actual_total"] for f in folds) / total
    return {
        "backtest_folds": float(len(folds)),
        "backtest_wape": wape,
        "backtest_wape_naive": naive,
        "backtest_wape_improvement": 1.0 - wape / naive if naive else 0.0,
    }
