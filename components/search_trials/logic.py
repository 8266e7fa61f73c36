"""Search trials: each trial fits the configured Pipeline with its hyperparameters on
time-ordered CV folds of the training window and scores the fold after each.

The folds cut the training window (``components.train.logic.time_split``'s train part:
the hold-out never enters) into ``folds + 1`` blocks of time. Fold ``k`` fits on the
blocks before block ``k + 1`` (less a purge gap of the label horizon, as the train step
purges before its hold-out) and predicts block ``k + 1``: an expanding window, so every
prediction is of rows later than any row the model saw. The predictions of every fold
together are the trial's out-of-fold predictions (the first block has none).

Every estimator runs on one thread (``n_jobs=1`` where it takes one, OpenMP and BLAS
pools limited to 1), so a task's wall time is its trials' CPU time and ``parallelism``
tasks at once use ``parallelism`` cores.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from threadpoolctl import threadpool_limits

from components.train.logic import build_pipeline, time_split
from esteira.config import ModelSettings
from esteira.errors import DataError
from esteira.search import Trial, metric_for


@dataclass
class TrialResult:
    trial: int
    params: dict[str, Any]
    scores: list[float]
    fit_seconds: float
    oof: np.ndarray = field(repr=False)  # one prediction per row of the folds' validation blocks

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))

    def as_dict(self) -> dict[str, Any]:
        return {
            "trial": self.trial,
            "params": self.params,
            "scores": [round(s, 6) for s in self.scores],
            "mean": round(self.mean, 6),
            "std": round(self.std, 6),
            "fit_seconds": round(self.fit_seconds, 3),
        }


@dataclass
class Folds:
    """The training window, time-sorted, and its folds as positions into it."""

    window: pd.DataFrame
    splits: list[tuple[np.ndarray, np.ndarray]]

    @property
    def validation(self) -> np.ndarray:
        return np.concatenate([v for _, v in self.splits])

    @property
    def fold_of_row(self) -> np.ndarray:
        return np.concatenate([np.full(len(v), k) for k, (_, v) in enumerate(self.splits)])


def training_window(
    frame: pd.DataFrame, cfg: ModelSettings, timestamp: str, purge_hours: float
) -> pd.DataFrame:
    """The rows the train step trains on (before its hold-out, less the purge), time-sorted."""
    train, _, _ = time_split(frame, timestamp, cfg.test_fraction, pd.Timedelta(hours=purge_hours))
    return train.sort_values(timestamp, kind="stable").reset_index(drop=True)


def time_folds(
    window: pd.DataFrame,
    folds: int,
    *,
    label: str,
    task: str,
    timestamp: str = "event_timestamp",
    purge_hours: float = 0.0,
) -> Folds:
    """Expanding-window folds of the (time-sorted) training window; see the module doc."""
    ts = window[timestamp]
    edges = ts.quantile(np.linspace(0, 1, folds + 2)).to_numpy()
    purge = pd.Timedelta(hours=purge_hours)
    splits = []
    for k in range(1, folds + 1):
        fit = np.flatnonzero((ts <= edges[k] - purge).to_numpy())
        val = np.flatnonzero(((ts > edges[k]) & (ts <= edges[k + 1])).to_numpy())
        ok = len(fit) and len(val)
        if ok and task == "classification":
            ok = window[label].iloc[fit].nunique() > 1 and window[label].iloc[val].nunique() > 1
        if not ok:
            raise DataError(
                "model.search.folds",
                f"fold {k} of {folds} has too few rows or one class only "
                f"({len(fit)} to fit, {len(val)} to score)",
                "use fewer folds or more data (data.days)",
            )
        splits.append((fit, val))
    return Folds(window, splits)


def score(metric: str, y: np.ndarray, pred: np.ndarray) -> float:
    if metric == "roc_auc":
        return float(skm.roc_auc_score(y, pred))
    if metric == "pr_auc":
        return float(skm.average_precision_score(y, pred))
    if metric == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y, pred)))
    if metric == "mae":
        return float(skm.mean_absolute_error(y, pred))
    return float(skm.r2_score(y, pred))


def trial_settings(cfg: ModelSettings, params: dict[str, Any]) -> ModelSettings:
    """The model settings of one trial: the configured hyperparameters, the trial's over them."""
    return cfg.model_copy(update={"hyperparameters": {**cfg.hyperparameters, **params}})


def run_trial(
    folds: Folds,
    trial: Trial,
    feature_names: list[str],
    label: str,
    cfg: ModelSettings,
    text: list[str] | tuple[str, ...] = (),
) -> TrialResult:
    """Fit and score one trial on every fold, on one thread (``text``: the text features)."""
    window = folds.window
    text = [c for c in feature_names if c in text]
    categorical = [
        c for c in feature_names if not pd.api.types.is_numeric_dtype(window[c]) and c not in text
    ]
    numeric = [c for c in feature_names if c not in categorical and c not in text]
    settings = trial_settings(cfg, trial.params)
    metric = metric_for(cfg)
    scores, oof, fit_seconds = [], [], 0.0
    X, y = window[feature_names], window[label].to_numpy()
    with threadpool_limits(limits=1):
        for fit, val in folds.splits:
            model = build_pipeline(settings, numeric, categorical, text)
            estimator = model.named_steps["estimator"]
            if "n_jobs" in estimator.get_params():
                estimator.set_params(n_jobs=1)
            started = time.perf_counter()
            model.fit(X.iloc[fit], y[fit])
            fit_seconds += time.perf_counter() - started
            if cfg.task == "classification":
                pred = model.predict_proba(X.iloc[val])[:, 1]
            else:
                pred = model.predict(X.iloc[val])
            scores.append(score(metric, y[val], pred))
            oof.append(pred)
    return TrialResult(trial.trial, dict(trial.params), scores, fit_seconds, np.concatenate(oof))


def run_trials(
    frame: pd.DataFrame,
    trials: list[Trial],
    feature_names: list[str],
    label: str,
    cfg: ModelSettings,
    *,
    timestamp: str = "event_timestamp",
    purge_hours: float = 0.0,
    text: list[str] | tuple[str, ...] = (),
) -> tuple[list[TrialResult], Folds]:
    """Every trial of a batch on the same folds of ``frame``'s training window."""
    missing = [c for c in [*feature_names, label, timestamp] if c not in frame.columns]
    if missing:
        raise DataError(
            missing[0], "missing from the training set", "check the FeatureService and label"
        )
    window = training_window(frame, cfg, timestamp, purge_hours)
    folds = time_folds(
        window,
        cfg.search.folds,
        label=label,
        task=cfg.task,
        timestamp=timestamp,
        purge_hours=purge_hours,
    )
    return [run_trial(folds, t, feature_names, label, cfg, text) for t in trials], folds


def oof_frame(
    folds: Folds, results: list[TrialResult], label: str, timestamp: str = "event_timestamp"
) -> pd.DataFrame:
    """The batch's out-of-fold predictions: one row per validation row, one column per trial."""
    rows = folds.validation
    out = pd.DataFrame(
        {
            "row": rows,
            timestamp: folds.window[timestamp].to_numpy()[rows],
            "fold": folds.fold_of_row,
            label: folds.window[label].to_numpy()[rows],
        }
    )
    for r in results:
        out[f"trial_{r.trial}"] = r.oof
    return out
