"""Resolve the run's settings: compile-time defaults, the ``config`` override, the typed parameters.

The pipelines show a Kubeflow UI user typed parameters (``data_source_uri``,
``model_family``, ``hyperparameters``, ``gate_metric`` / ``gate_min``,
``min_improvement``, ``deploy``, ``use_case``, ``search``) whose defaults are the compile-time
settings, and an optional ``config`` (JSON, default empty) for anything else. The
settings a run uses are, lowest first:

1. the compile-time defaults (a constant baked into the compiled YAML);
2. ``config``: a JSON object of sections merged key by key over them (partial is fine);
3. every typed parameter whose value differs from its compile-time default.

``use_case`` is the registered model's name; when it names a use case
(``feature_repo/<use case>/``, by directory or model name) that use case's settings
(its ``usecase.yaml``) come with it, between 1 and 2.

A typed parameter changed in the form and set to another value in ``config`` too is a
mistake, not a precedence puzzle: one line says to set it in one place. The result is
validated as the configuration is at load time (one line naming the field and the fix).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from esteira import usecase
from esteira.config import Settings, settings_from_json, settings_to_json
from esteira.errors import ConfigError


@dataclass(frozen=True)
class RunParameters:
    """The typed parameters of the pipelines' run form."""

    data_source_uri: str
    model_family: str
    hyperparameters: dict[str, Any]
    gate_metric: str
    gate_min: float
    min_improvement: float
    deploy: bool
    use_case: str
    search: bool = False  # the hyperparameter search (model.search.enabled)


# parameter -> the settings key it sets (gate_metric/gate_min set gate.thresholds together)
PARAMETER_KEYS = {
    "data_source_uri": "data.source_uri",
    "model_family": "model.family",
    "hyperparameters": "model.hyperparameters",
    "min_improvement": "gate.min_improvement",
    "deploy": "kserve.deploy",
    "use_case": "model.name",
    "search": "model.search.enabled",
}


def gate_parameter(settings: Settings) -> tuple[str, float]:
    """The gate's metric and minimum shown in the form: the compared metric's threshold,
    else the first threshold."""
    thresholds = settings.gate.thresholds
    metric = settings.gate.compare_metric
    if metric not in thresholds:
        metric = sorted(thresholds)[0] if thresholds else metric
    return metric, float(thresholds.get(metric, 0.0))


def parameters_from(settings: Settings) -> RunParameters:
    """The typed parameters' defaults for ``settings`` (what the compiled form shows)."""
    metric, minimum = gate_parameter(settings)
    return RunParameters(
        data_source_uri=settings.data.source_uri,
        model_family=settings.model.family,
        hyperparameters=dict(settings.model.hyperparameters),
        gate_metric=metric,
        gate_min=minimum,
        min_improvement=settings.gate.min_improvement,
        deploy=settings.kserve.deploy,
        use_case=settings.model.name,
        search=settings.model.search.enabled,
    )


def _get(values: dict, key: str) -> Any:
    node: Any = values
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set(values: dict, key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "hyperparameters":
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _override(config: str) -> dict[str, Any]:
    if not config.strip():
        return {}
    try:
        values = json.loads(config)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "config",
            f"the override is not JSON ({exc.msg} at column {exc.colno})",
            'pass a JSON object of sections, e.g. {"model": {"random_state": 7}}, or leave it empty',
        ) from None
    if not isinstance(values, dict):
        raise ConfigError("config", "the override must be a JSON object of sections", "see README")
    return values


def resolve(defaults: str, config: str, parameters: RunParameters) -> Settings:
    """The settings a run uses (see the module doc); a mistake is one ConfigError line."""
    base = json.loads(defaults)
    override = _override(config)
    values = _merge(base, override)
    default_settings = settings_from_json(defaults)
    initial = parameters_from(default_settings)
    changed = {
        name: getattr(parameters, name)
        for name in PARAMETER_KEYS
        if getattr(parameters, name) != getattr(initial, name)
    }
    case = usecase.find(changed["use_case"]) if "use_case" in changed else None
    if case is not None:
        # a use case's name (or its model's): its settings, then `config` over them
        values = _merge(usecase.merge(values, case.settings), override) | {"use_case": case.name}
        changed.pop("use_case")
    for name, value in changed.items():
        key = PARAMETER_KEYS[name]
        given = _get(override, key)
        if given is not None and given != value:
            raise ConfigError(
                name,
                f"set to {value!r} but `config` sets {key} to {given!r}",
                f"set it in one place: the `{name}` parameter or `config`",
            )
        _set(values, key, value)
    gate = (parameters.gate_metric, float(parameters.gate_min))
    if gate != (initial.gate_metric, initial.gate_min):
        thresholds = dict(_get(values, "gate.thresholds") or {})
        if gate[0] != initial.gate_metric:
            thresholds.pop(initial.gate_metric, None)
        thresholds[gate[0]] = gate[1]
        _set(values, "gate.thresholds", thresholds)
    return settings_from_json(json.dumps(values))


def _flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    if (
        isinstance(values, dict)
        and values
        and not prefix.endswith(("hyperparameters", "thresholds"))
    ):
        out: dict[str, Any] = {}
        for key, value in values.items():
            out |= _flatten(value, f"{prefix}.{key}" if prefix else key)
        return out
    return {prefix: values}


def settings_diff(defaults: str, resolved: str) -> dict[str, Any]:
    """``key -> new value`` for every setting ``resolved`` changes against ``defaults``."""
    before, after = _flatten(json.loads(defaults)), _flatten(json.loads(resolved))
    return {k: after[k] for k in sorted(after) if before.get(k) != after[k]} | {
        k: None for k in sorted(before) if k not in after
    }


def describe_diff(defaults: str, resolved: str) -> str:
    """One line for a task's log: the settings against the compile-time defaults."""
    diff = settings_diff(defaults, resolved)
    if not diff:
        return "settings: the compile-time defaults"
    shown = ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in diff.items())
    return f"settings: compile-time defaults + {shown}"


def resolve_json(defaults: str, config: str, parameters: RunParameters) -> str:
    return settings_to_json(resolve(defaults, config, parameters))
