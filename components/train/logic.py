"""Train: a plain scikit-learn Pipeline chosen by configuration, on a time-based split.

Only scikit-learn classes go into the model, so KServe's sklearn runtime (which
unpickles an allowlist of sklearn/numpy/scipy/pandas classes) can serve it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from esteira.config import ModelSettings
from esteira.errors import DataError
from esteira.model_families import FAMILIES, check_hyperparameters, estimator_class


@dataclass
class TrainResult:
    model: Pipeline
    train: pd.DataFrame
    holdout: pd.DataFrame
    feature_names: list[str]
    categorical: list[str]
    parameters: dict[str, Any]
    split_time: str


def make_estimator(cfg: ModelSettings) -> Any:
    cls = estimator_class(cfg.task, cfg.family)
    defaults = FAMILIES[(cfg.task, cfg.family)][1]
    check_hyperparameters(cfg.task, cfg.family, cfg.hyperparameters)
    params = {**defaults, **cfg.hyperparameters}
    if "random_state" in cls().get_params():
        params["random_state"] = cfg.random_state
    return cls(**params)


def build_pipeline(cfg: ModelSettings, numeric: list[str], categorical: list[str]) -> Pipeline:
    scale = cfg.family == "logistic_regression"
    prep = ColumnTransformer(
        [
            ("numeric", StandardScaler() if scale else "passthrough", numeric),
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
        ],
        verbose_feature_names_out=False,
    )
    return Pipeline([("prepare", prep), ("estimator", make_estimator(cfg))])


def time_split(
    frame: pd.DataFrame, ts: str, test_fraction: float, purge: pd.Timedelta
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Train on the past, test on the future; drop train rows whose label window reaches the test period."""
    cut = frame[ts].quantile(1 - test_fraction)
    train = frame[frame[ts] <= cut - purge]
    holdout = frame[frame[ts] > cut]
    return train, holdout, cut


def train_model(
    frame: pd.DataFrame,
    feature_names: list[str],
    label: str,
    cfg: ModelSettings,
    *,
    timestamp: str = "event_timestamp",
    purge_hours: float = 0.0,
) -> TrainResult:
    missing = [c for c in [*feature_names, label, timestamp] if c not in frame.columns]
    if missing:
        raise DataError(
            missing[0], "missing from the training set", "check the FeatureService and label"
        )
    train, holdout, cut = time_split(
        frame, timestamp, cfg.test_fraction, pd.Timedelta(hours=purge_hours)
    )
    if cfg.task == "classification":
        for name, part in (("train", train), ("hold-out", holdout)):
            if part[label].nunique() < 2:
                raise DataError(
                    label,
                    f"the {name} split has one class only ({len(part)} rows)",
                    "use more data or a larger data.days",
                )
    categorical = [c for c in feature_names if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in feature_names if c not in categorical]
    model = build_pipeline(cfg, numeric, categorical)
    model.fit(train[feature_names], train[label])
    params = {k: v for k, v in model.named_steps["estimator"].get_params().items() if _jsonable(v)}
    return TrainResult(model, train, holdout, feature_names, categorical, params, cut.isoformat())


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))
