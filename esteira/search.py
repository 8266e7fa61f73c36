"""The hyperparameter search's plan: the space, the trials, their batches, and the CV metric.

``model.search`` (``SearchSettings`` below) names a space per model family; a
family it does not name searches its built-in space below. The plan is a pure function of
the settings (seeded by ``model.random_state``), so the plan task, a re-run and Katib's
Experiment (esteira/manifests.py) all see the same space. Trials run in batches of
``trials_per_task`` (one ParallelFor iteration each, ``parallelism`` at once); each
trial's estimator uses one thread, so parallelism is what speeds the search up.

Nothing here imports scikit-learn unless a configured space must be checked against the
family's estimator.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from esteira.errors import ConfigError

# esteira.config imports this module (its ModelSettings holds SearchSettings), never the
# reverse: a ModelSettings here is typed Any
ModelSettings = Any


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchParameter(_Strict):
    """One hyperparameter's range (``float``/``int``: low..high, ``log`` scale) or choices."""

    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[bool | int | float | str] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParameter:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs `choices`: a non-empty list")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical parameter takes `choices` only; drop low/high/log")
            return self
        if self.choices is not None:
            raise ValueError("a range takes low/high; for a list of choices use type: categorical")
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a range needs low < high (got {self.low}, {self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int parameter needs whole low and high")
        return self


class SearchSettings(_Strict):
    """``model.search``: a hyperparameter search on time-ordered CV folds of the training window
    (the training pipeline's ``search`` parameter turns it on; checked by check_search)."""

    enabled: bool = Field(False, description="the training pipeline's `search` parameter")
    strategy: Literal["random", "grid"] = "random"
    trials: int = Field(12, ge=1, le=1000, description="random: trials drawn; grid: at most")
    parallelism: int = Field(
        2, ge=1, le=64, description="trial tasks at once (ParallelFor, fixed at compile time)"
    )
    trials_per_task: int = Field(3, ge=1, le=100, description="trials one task runs in turn")
    folds: int = Field(3, ge=2, le=10, description="time-ordered CV folds (expanding window)")
    metric: Literal["roc_auc", "pr_auc", "rmse", "mae", "r2"] | None = Field(
        None, description="the CV score; default roc_auc (classification), rmse (regression)"
    )
    grid_points: int = Field(3, ge=2, le=20, description="grid: points of each low..high range")
    space: dict[str, dict[str, SearchParameter]] = Field(
        default_factory=dict,
        description="per family: hyperparameter -> range or choices; a family not given "
        "searches its built-in space (esteira/search.py)",
    )


# metric -> direction of "better"
METRICS = {
    "roc_auc": "maximize",
    "pr_auc": "maximize",
    "r2": "maximize",
    "rmse": "minimize",
    "mae": "minimize",
}
TASK_METRICS = {"classification": ("roc_auc", "pr_auc"), "regression": ("rmse", "mae", "r2")}

_GB = {
    "learning_rate": {"type": "float", "low": 0.03, "high": 0.3, "log": True},
    "max_iter": {"type": "int", "low": 40, "high": 200},
    "max_leaf_nodes": {"type": "categorical", "choices": [15, 31, 63]},
    "min_samples_leaf": {"type": "int", "low": 10, "high": 80},
}
_RF = {
    "n_estimators": {"type": "int", "low": 40, "high": 160},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 20},
    "max_features": {"type": "categorical", "choices": ["sqrt", 0.5]},
}
# (task, family) -> the space searched when model.search.space does not name the family
BUILT_IN: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("classification", "gradient_boosting"): _GB,
    ("classification", "random_forest"): _RF,
    ("classification", "logistic_regression"): {
        "C": {"type": "float", "low": 0.01, "high": 10.0, "log": True}
    },
    ("regression", "gradient_boosting"): _GB,
    ("regression", "random_forest"): _RF,
    ("regression", "logistic_regression"): {
        "alpha": {"type": "float", "low": 0.01, "high": 100.0, "log": True}
    },
}


@dataclass(frozen=True)
class Trial:
    trial: int
    params: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"trial": self.trial, "params": dict(self.params)}


def metric_for(model: ModelSettings) -> str:
    return model.search.metric or TASK_METRICS[model.task][0]


def direction(metric: str) -> str:
    return METRICS[metric]


def space_for(model: ModelSettings, family: str | None = None) -> dict[str, SearchParameter]:
    """The searched space of ``family`` (default: the configured one), in a stable order."""
    family = family or model.family
    given = model.search.space.get(family)  # type: ignore[call-overload]
    if given is not None:
        return dict(sorted(given.items()))
    built_in = BUILT_IN[(model.task, family)]
    return {k: SearchParameter.model_validate(v) for k, v in sorted(built_in.items())}


def grid_values(spec: SearchParameter, points: int) -> list[Any]:
    if spec.type == "categorical":
        return list(spec.choices or [])
    low, high = float(spec.low), float(spec.high)  # type: ignore[arg-type]
    if spec.log:
        values = [
            math.exp(math.log(low) + i * (math.log(high) - math.log(low)) / (points - 1))
            for i in range(points)
        ]
    else:
        values = [low + i * (high - low) / (points - 1) for i in range(points)]
    if spec.type == "int":
        return sorted({int(round(v)) for v in values})
    return [round(v, 6) for v in values]


def grid_size(model: ModelSettings) -> int:
    return math.prod(
        len(grid_values(s, model.search.grid_points)) for s in space_for(model).values()
    )


def _sample(spec: SearchParameter, rng: random.Random) -> Any:
    if spec.type == "categorical":
        return rng.choice(list(spec.choices or []))
    low, high = float(spec.low), float(spec.high)  # type: ignore[arg-type]
    if spec.type == "int":
        if spec.log:
            return int(round(math.exp(rng.uniform(math.log(low), math.log(high + 0.5)))))
        return rng.randint(int(low), int(high))
    if spec.log:
        return round(math.exp(rng.uniform(math.log(low), math.log(high))), 6)
    return round(rng.uniform(low, high), 6)


def plan_trials(model: ModelSettings) -> list[Trial]:
    """The trials: ``random`` draws ``trials`` points (seeded), ``grid`` every grid point."""
    space = space_for(model)
    search = model.search
    if search.strategy == "grid":
        names = list(space)
        axes = [grid_values(space[n], search.grid_points) for n in names]
        return [
            Trial(i, dict(zip(names, values, strict=True)))
            for i, values in enumerate(itertools.product(*axes))
        ]
    rng = random.Random(model.random_state)
    return [Trial(i, {n: _sample(s, rng) for n, s in space.items()}) for i in range(search.trials)]


def plan_batches(model: ModelSettings) -> list[dict[str, Any]]:
    """The ParallelFor items: ``{"batch": i, "trials": [{"trial", "params"}, ...]}``.

    With the search off there is one empty batch: kfp.local (2.17) fails on a ParallelFor
    over an empty list, so the loop always has an item and an empty batch does nothing."""
    if not model.search.enabled:
        return [{"batch": 0, "trials": []}]
    trials = plan_trials(model)
    size = model.search.trials_per_task
    return [
        {"batch": b, "trials": [t.as_dict() for t in trials[i : i + size]]}
        for b, i in enumerate(range(0, len(trials), size))
    ]


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def coerce_params(params: dict[str, Any], space: dict[str, SearchParameter]) -> dict[str, Any]:
    """Parameters as the space types them. KFP hands a dict's ints back as floats (protobuf
    Struct numbers: ``max_iter`` 120 arrives as 120.0, which scikit-learn refuses)."""
    out: dict[str, Any] = {}
    for name, value in params.items():
        spec = space.get(name)
        if spec is not None and spec.type == "int":
            out[name] = int(round(float(value)))
        elif spec is not None and spec.type == "categorical":
            # the choice the value stands for, with the choice's own type
            out[name] = next(
                (
                    c
                    for c in spec.choices or []
                    if c == value and isinstance(c, bool) == isinstance(value, bool)
                ),
                _whole(value),
            )
        else:
            out[name] = value
    return out


def coerce_trial(item: dict[str, Any], space: dict[str, SearchParameter]) -> Trial:
    return Trial(int(round(float(item["trial"]))), coerce_params(dict(item["params"]), space))


def check_search(model: ModelSettings) -> None:
    """The config-load check of ``model.search`` (one ConfigError line: field, rule, fix)."""
    search = model.search
    metric = metric_for(model)
    if metric not in TASK_METRICS[model.task]:
        raise ConfigError(
            "model.search.metric",
            f"{metric!r} is not a {model.task} metric",
            f"use one of {list(TASK_METRICS[model.task])}",
        )
    for family, space in search.space.items():
        if (model.task, family) not in BUILT_IN:
            raise ConfigError(
                f"model.search.space.{family}",
                "not a model family",
                f"use one of {sorted({f for _, f in BUILT_IN})}",
            )
        if not space:
            raise ConfigError(
                f"model.search.space.{family}",
                "an empty space",
                "name at least one hyperparameter, or drop the family to search its built-in space",
            )
        _check_names(model.task, family, space)
    if search.strategy == "grid":
        size = grid_size(model)
        if size > search.trials:
            raise ConfigError(
                "model.search.trials",
                f"the grid of model.family {model.family!r} has {size} points, more than "
                f"{search.trials} trials",
                f"set model.search.trials to {size}, or fewer choices/grid_points",
            )


def _check_names(task: str, family: str, space: dict[str, Any]) -> None:
    from esteira.model_families import FAMILIES, allowed_hyperparameters

    allowed = allowed_hyperparameters(task, family)
    for name in sorted(space):
        if name not in allowed:
            cls = FAMILIES[(task, family)][0].rpartition(".")[2]
            raise ConfigError(
                f"model.search.space.{family}.{name}",
                f"not a parameter of {cls} (model.task {task!r})",
                f"use one of {sorted(allowed)}",
            )
