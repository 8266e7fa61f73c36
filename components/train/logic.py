"""Train: a plain scikit-learn Pipeline chosen by configuration, on a time-based split.

A classifier's ``decision_threshold`` is chosen by ``model.threshold`` on a validation
slice at the end of the training window (cut by time, with the same purge gap as the
hold-out), from a model fit on the rows before it; then the model is refit on the whole
training window and keeps that threshold. The hold-out plays no part in the choice.

Only scikit-learn classes go into the model, so KServe's sklearn runtime (which
unpickles an allowlist of sklearn/numpy/scipy/pandas classes) can serve it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from esteira.config import ModelSettings, Settings
from esteira.contract import Contract
from esteira.errors import DataError
from esteira.model_families import FAMILIES, check_hyperparameters, estimator_class
from esteira.thresholds import ThresholdChoice, choose_threshold


@dataclass
class TrainResult:
    model: Pipeline
    training_rows: int  # the training window's rows (the purge gap left out)
    holdout: pd.DataFrame
    feature_names: list[str]
    categorical: list[str]
    parameters: dict[str, Any]
    split_time: str
    threshold: ThresholdChoice | None = None  # classification only
    text: list[str] = field(default_factory=list)  # request-time text features
    # the training set and its training-window rows, for ``train`` (never copied by the fits)
    source: pd.DataFrame | None = field(default=None, repr=False)
    train_mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def train(self) -> pd.DataFrame:
        """The training window's rows with every column: a copy made only when asked."""
        if self.source is None or self.train_mask is None:
            raise ValueError("this TrainResult keeps no training set")
        return self.source[self.train_mask]

    def info(self, label: str, cfg: ModelSettings) -> dict[str, Any]:
        """``training.json``: what evaluate and register read beside the model."""
        info: dict[str, Any] = {
            "feature_names": self.feature_names,
            "categorical": self.categorical,
            "text": self.text,
            "label": label,
            "task": cfg.task,
            "family": cfg.family,
            "parameters": self.parameters,
            "split_time": self.split_time,
            "training_rows": self.training_rows,
            "holdout_rows": len(self.holdout),
        }
        if self.threshold is not None:  # chosen on the training window, never the hold-out
            info["decision_threshold"] = self.threshold.decision_threshold
            info["threshold_policy"] = self.threshold.policy
            info["threshold_choice"] = self.threshold.as_dict()
        return info


def make_estimator(cfg: ModelSettings) -> Any:
    cls = estimator_class(cfg.task, cfg.family)
    defaults = FAMILIES[(cfg.task, cfg.family)][1]
    check_hyperparameters(cfg.task, cfg.family, cfg.hyperparameters)
    params = {**defaults, **cfg.hyperparameters}
    if "random_state" in cls().get_params():
        params["random_state"] = cfg.random_state
    return cls(**params)


# request-time text (the contract's ``features.text``): TF-IDF of words and of characters
# inside words, which still match a misspelt word; plain scikit-learn, sparse
TEXT_WORDS = {"ngram_range": (1, 2), "min_df": 2, "sublinear_tf": True, "max_features": 100_000}
TEXT_CHARS = {"analyzer": "char_wb", "ngram_range": (2, 5), "min_df": 2, "sublinear_tf": True,
              "max_features": 200_000}  # fmt: skip


def build_pipeline(
    cfg: ModelSettings,
    numeric: list[str],
    categorical: list[str],
    text: list[str] | tuple[str, ...] = (),
) -> Pipeline:
    scale = cfg.family == "logistic_regression" or bool(text)
    blocks: list[tuple[str, Any, Any]] = [
        ("numeric", StandardScaler() if scale else "passthrough", numeric),
        (
            "categorical",
            OneHotEncoder(handle_unknown="ignore", sparse_output=bool(text)),
            categorical,
        ),
    ]
    for name in text:  # a column named alone: the vectorizer gets the 1-D column of strings
        blocks.append((f"{name}_words", TfidfVectorizer(**TEXT_WORDS), name))
        blocks.append((f"{name}_chars", TfidfVectorizer(**TEXT_CHARS), name))
    prep = ColumnTransformer(blocks, verbose_feature_names_out=False)
    return Pipeline([("prepare", prep), ("estimator", make_estimator(cfg))])


def time_split(
    frame: pd.DataFrame, ts: str, test_fraction: float, purge: pd.Timedelta
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Train on the past, test on the future; drop train rows whose label window reaches the test period."""
    train_rows, holdout_rows, cut = split_rows(frame[ts], test_fraction, purge)
    return frame[train_rows], frame[holdout_rows], cut


def split_rows(
    times: pd.Series, test_fraction: float, purge: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray, pd.Timestamp]:
    """``time_split`` as boolean row masks: ``(train, hold-out, cut)``, rows in their order."""
    cut = times.quantile(1 - test_fraction)
    return (times <= cut - purge).to_numpy(), (times > cut).to_numpy(), cut


def fit_rows(
    cfg: ModelSettings,
    numeric: list[str],
    categorical: list[str],
    frame: pd.DataFrame,
    rows: np.ndarray,
    feature_names: list[str],
    label: str,
    text: list[str] | tuple[str, ...] = (),
) -> Pipeline:
    """The pipeline fit on ``frame``'s ``rows`` (a boolean mask): the model sees exactly
    ``frame[rows][feature_names]``, taken in one copy of the feature columns only."""
    model = build_pipeline(cfg, numeric, categorical, text)
    return model.fit(frame.loc[rows, feature_names], frame.loc[rows, label])


def train_model(
    frame: pd.DataFrame,
    feature_names: list[str],
    label: str,
    cfg: ModelSettings,
    *,
    timestamp: str = "event_timestamp",
    purge_hours: float = 0.0,
    search_predictions: pd.DataFrame | None = None,
    text: list[str] | tuple[str, ...] = (),
) -> TrainResult:
    """Fit on the training window (``text``: the features that are free text); a classifier's
    threshold comes from the search winner's out-of-fold predictions when a search ran
    (``search_predictions``: ``label`` and ``prediction`` columns), else from a validation
    slice at the window's end."""
    missing = [c for c in [*feature_names, label, timestamp] if c not in frame.columns]
    if missing:
        raise DataError(
            missing[0], "missing from the training set", "check the FeatureService and label"
        )
    # No whole-table copies (issue 25): the hold-out is the one slice kept with every
    # column; the fits take the feature columns of their rows straight from ``frame``.
    times = frame[timestamp]
    train_rows, holdout_rows, cut = split_rows(
        times, cfg.test_fraction, pd.Timedelta(hours=purge_hours)
    )
    holdout = frame[holdout_rows]
    training_rows = int(train_rows.sum())
    if cfg.task == "classification":
        for name, part in (("train", frame[label][train_rows]), ("hold-out", holdout[label])):
            if part.nunique() < 2:
                raise DataError(
                    label,
                    f"the {name} split has one class only ({len(part)} rows)",
                    "use more data or a larger data.days",
                )
    text = [c for c in feature_names if c in text]
    categorical = [
        c for c in feature_names if not pd.api.types.is_numeric_dtype(frame[c]) and c not in text
    ]
    numeric = [c for c in feature_names if c not in categorical and c not in text]
    choice = None
    if cfg.task == "classification" and search_predictions is not None and len(search_predictions):
        where = f"the search winner's out-of-fold predictions ({len(search_predictions)} rows)"
        choice = choose_threshold(
            search_predictions[label].to_numpy(),
            search_predictions["prediction"].to_numpy(),
            cfg.threshold,
            chosen_on=where,
        )
    elif cfg.task == "classification":
        choice = choose_on_validation(
            frame,
            train_rows,
            feature_names,
            label,
            cfg,
            numeric,
            categorical,
            timestamp,
            purge_hours,
            text,
        )
    model = fit_rows(cfg, numeric, categorical, frame, train_rows, feature_names, label, text)
    params = {k: v for k, v in model.named_steps["estimator"].get_params().items() if _jsonable(v)}
    return TrainResult(
        model,
        training_rows,
        holdout,
        feature_names,
        categorical,
        params,
        cut.isoformat(),
        choice,
        text,
        source=frame,
        train_mask=train_rows,
    )


def choose_on_validation(
    frame: pd.DataFrame,
    train_rows: np.ndarray,
    feature_names: list[str],
    label: str,
    cfg: ModelSettings,
    numeric: list[str],
    categorical: list[str],
    timestamp: str,
    purge_hours: float,
    text: list[str] | tuple[str, ...] = (),
) -> ThresholdChoice:
    """The threshold ``cfg.threshold`` picks on the end of the training window
    (``frame``'s ``train_rows``).

    The last ``validation_fraction`` of the training rows (by time) is scored by a model fit
    on the rows before it, minus the purge gap, so its labels never overlap the validation
    period.
    """
    policy = cfg.threshold
    if policy.policy == "fixed":
        return choose_threshold([], [], policy)
    share = f"{policy.validation_fraction:.0%}"
    fit_in, validation_in, _ = split_rows(
        frame[timestamp][train_rows],
        policy.validation_fraction,
        pd.Timedelta(hours=purge_hours),
    )
    fit, validation = train_rows.copy(), train_rows.copy()  # as masks over the whole frame
    fit[train_rows], validation[train_rows] = fit_in, validation_in
    labels = frame[label]
    for name, rows in (("fit", fit), ("validation", validation)):
        if labels[rows].nunique() < 2:
            raise DataError(
                "model.threshold.validation_fraction",
                f"the threshold's {name} rows (the {share} at the end of the training window "
                f"and the rows before it) hold one class only ({int(rows.sum())} rows)",
                "use more data, another validation_fraction, or model.threshold.policy fixed",
            )
    model = fit_rows(cfg, numeric, categorical, frame, fit, feature_names, label, text)
    proba = model.predict_proba(frame.loc[validation, feature_names])[:, 1]
    where = (
        f"validation slice (the last {share} of the training window, {int(validation.sum())} rows)"
    )
    return choose_threshold(labels[validation].to_numpy(), proba, policy, chosen_on=where)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def train_step(
    frame: pd.DataFrame,
    feature_names: list[str],
    contract: Contract,
    settings: Settings,
    *,
    search_predictions: pd.DataFrame | None = None,
) -> tuple[TrainResult, dict[str, Any]]:
    """What the ``train`` step does with its training set: ``(result, training.json)``.

    A regression task gets the seasonal-naive baseline column (from the labels) before the
    split, and a rolling-origin backtest over the hold-out window in ``training.json``."""
    from esteira.forecasting import add_baseline, run_backtest

    label = contract.label.name
    if settings.model.task == "regression":
        frame = add_baseline(frame, contract)
    result = train_model(
        frame,
        feature_names,
        label,
        settings.model,
        purge_hours=contract.label.horizon_hours,
        search_predictions=search_predictions,
        text=contract.text_features,
    )
    info = result.info(label, settings.model)
    if settings.model.task == "regression":
        numeric = [f for f in feature_names if f not in result.categorical + result.text]

        def fit(part: pd.DataFrame) -> Pipeline:
            pipeline = build_pipeline(settings.model, numeric, result.categorical, result.text)
            return pipeline.fit(part[feature_names], part[label])

        info["backtest"] = run_backtest(
            frame, fit, feature_names, result.split_time, contract, settings
        )
    return result, info
