"""Which scikit-learn estimator each ``model.task`` / ``model.family`` pair trains, and its defaults.

The table names classes by import path so that loading a configuration stays cheap:
scikit-learn is imported only to check ``model.hyperparameters`` when some are given,
and by the train step that builds the estimator.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from esteira.errors import ConfigError

# (task, family) -> (estimator class path, default hyperparameters)
FAMILIES: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {
    ("classification", "gradient_boosting"): (
        "sklearn.ensemble.HistGradientBoostingClassifier",
        {"max_iter": 200, "learning_rate": 0.08},
    ),
    ("classification", "random_forest"): (
        "sklearn.ensemble.RandomForestClassifier",
        {
            "n_estimators": 200,
            "min_samples_leaf": 5,
            "n_jobs": 2,
            "class_weight": "balanced_subsample",
        },
    ),
    ("classification", "logistic_regression"): (
        "sklearn.linear_model.LogisticRegression",
        {"max_iter": 2000, "class_weight": "balanced"},
    ),
    ("regression", "gradient_boosting"): (
        "sklearn.ensemble.HistGradientBoostingRegressor",
        {"max_iter": 200},
    ),
    ("regression", "random_forest"): (
        "sklearn.ensemble.RandomForestRegressor",
        {"n_estimators": 200, "min_samples_leaf": 5, "n_jobs": 2},
    ),
    # a linear model for regression is Ridge: "logistic_regression" names the linear family
    ("regression", "logistic_regression"): ("sklearn.linear_model.Ridge", {"alpha": 1.0}),
}


def estimator_class(task: str, family: str) -> type:
    path, _ = FAMILIES[(task, family)]
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def allowed_hyperparameters(task: str, family: str) -> set[str]:
    return set(estimator_class(task, family)().get_params())


def check_hyperparameters(task: str, family: str, hyperparameters: dict[str, Any]) -> None:
    """Raise a ConfigError naming the first key the family's estimator does not take."""
    if not hyperparameters:
        return
    allowed = allowed_hyperparameters(task, family)
    unknown = sorted(set(hyperparameters) - allowed)
    if not unknown:
        return
    key = unknown[0]
    cls = FAMILIES[(task, family)][0].rpartition(".")[2]
    close = difflib.get_close_matches(key, allowed, n=1)
    fix = (
        f"did you mean `model.hyperparameters.{close[0]}`?"
        if close
        else f"use one of {sorted(allowed)}"
    )
    raise ConfigError(
        f"model.hyperparameters.{key}",
        f"not a parameter of {cls} (model.family {family!r}, model.task {task!r})",
        fix,
    )
