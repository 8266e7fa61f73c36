"""The regression task's arithmetic (esteira/regression.py): metrics, baseline, backtest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from esteira.regression import (
    NAIVE,
    backtest,
    backtest_summary,
    forecast_metrics,
    seasonal_naive,
)


def test_metrics_by_hand() -> None:
    y = np.array([10.0, 0.0, 5.0, 5.0])
    pred = np.array([8.0, 1.0, 5.0, 7.0])
    naive = np.array([6.0, 2.0, np.nan, 9.0])  # the row without a baseline is left out
    m = forecast_metrics(y, pred, naive)
    assert m["rows"] == 3
    assert m["mae"] == pytest.approx((2 + 1 + 2) / 3)
    assert m["rmse"] == pytest.approx(np.sqrt((4 + 1 + 4) / 3))
    assert m["wape"] == pytest.approx(5 / 15)
    assert m["wape_naive"] == pytest.approx((4 + 2 + 4) / 15)
    assert m["mase"] == pytest.approx((5 / 3) / (10 / 3))
    assert m["wape_improvement"] == pytest.approx(1 - 5 / 10)


def _frame(days: int = 60) -> pd.DataFrame:
    stamps = pd.date_range("2025-01-01", periods=days, freq="D", tz="UTC")
    rows = [
        {"a": a, "b": b, "event_timestamp": t, "y": float(10 * a + (b == "y") + t.dayofweek)}
        for a in (1, 2)
        for b in ("x", "y")
        for t in stamps
    ]
    frame = pd.DataFrame(rows)
    frame["b_code"] = (frame["b"] == "y").astype(float)
    frame["dow"] = frame["event_timestamp"].dt.dayofweek.astype(float)
    return frame


def test_seasonal_naive_is_the_same_entitys_label_a_season_before() -> None:
    frame = _frame()
    naive = seasonal_naive(frame, ["a", "b"], "y", 168)
    week = frame["event_timestamp"] - frame["event_timestamp"].min() >= pd.Timedelta(days=7)
    assert naive[~week].isna().all()
    # y only depends on the key and the weekday: a week before is exactly right
    assert (naive[week] == frame.loc[week, "y"]).all()


def test_backtest_refits_at_each_origin_on_the_past_only() -> None:
    frame = _frame(90)
    frame[NAIVE] = seasonal_naive(frame, ["a", "b"], "y", 168)
    seen = []

    class Mean:
        def fit(self, part):
            seen.append(part["event_timestamp"].max())
            self.value = part["y"].mean()
            return self

        def predict(self, X):
            return np.full(len(X), self.value)

    start = pd.Timestamp("2025-03-01", tz="UTC")
    folds = backtest(
        frame,
        ["a", "dow"],
        "y",
        lambda part: Mean().fit(part),
        start=start,
        folds=3,
        purge=pd.Timedelta(days=1),
    )
    assert [f["fold"] for f in folds] == [1, 2, 3]
    origins = [pd.Timestamp(f["origin"]) for f in folds]
    assert origins[0] == start and origins == sorted(origins)
    assert all(
        last <= origin - pd.Timedelta(days=1) for last, origin in zip(seen, origins, strict=True)
    )
    summary = backtest_summary(folds)
    assert summary["backtest_folds"] == 3
    # the naive baseline is perfect here, so the mean forecast is worse than it
    assert summary["backtest_wape_naive"] == 0 and summary["backtest_wape_improvement"] <= 0
