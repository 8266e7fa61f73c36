"""resolve_settings: compile-time defaults, the ``config`` override, then changed typed parameters."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from components.resolve_settings.logic import (
    describe_diff,
    parameters_from,
    resolve,
    resolve_json,
)
from esteira.config import Settings, settings_to_json
from esteira.errors import ConfigError
from testkit.components import assert_yaml_round_trip

DEFAULTS = settings_to_json(Settings())
FORM = parameters_from(Settings())


def test_the_form_unchanged_gives_the_defaults() -> None:
    assert resolve_json(DEFAULTS, "", FORM) == DEFAULTS
    assert describe_diff(DEFAULTS, DEFAULTS) == "settings: the compile-time defaults"


def test_a_changed_parameter_sets_its_key_and_the_log_shows_only_that() -> None:
    params = replace(FORM, model_family="random_forest", hyperparameters={"n_estimators": 50})
    resolved = resolve_json(DEFAULTS, "", params)
    settings = Settings.model_validate(json.loads(resolved))
    assert settings.model.family == "random_forest"
    assert settings.model.hyperparameters == {"n_estimators": 50}
    line = describe_diff(DEFAULTS, resolved)
    assert line == (
        'settings: compile-time defaults + model.family="random_forest", '
        'model.hyperparameters={"n_estimators": 50}'
    )
    assert "source_uri" not in line


def test_gate_parameters_replace_the_default_threshold() -> None:
    settings = resolve(DEFAULTS, "", replace(FORM, gate_metric="pr_auc", gate_min=0.3))
    assert settings.gate.thresholds == {"pr_auc": 0.3}
    settings = resolve(DEFAULTS, "", replace(FORM, gate_min=0.7, min_improvement=0.01))
    assert settings.gate.thresholds == {"roc_auc": 0.7} and settings.gate.min_improvement == 0.01
    assert resolve(DEFAULTS, "", replace(FORM, deploy=False)).kserve.deploy is False
    assert (
        resolve(DEFAULTS, "", replace(FORM, use_case="pump-failure")).model.name == "pump-failure"
    )


def test_config_overrides_other_settings_partially() -> None:
    settings = resolve(DEFAULTS, '{"model": {"random_state": 7}}', FORM)
    assert settings.model.random_state == 7 and settings.model.family == "gradient_boosting"
    assert settings.data.source_uri == Settings().data.source_uri


@pytest.mark.parametrize(
    "config, params, expected",
    [
        ("{not json", FORM, "config: the override is not JSON"),
        ("[1]", FORM, "config: the override must be a JSON object"),
        ('{"model": {"familly": "x"}}', FORM, "did you mean `model.family`?"),
        ("", replace(FORM, model_family="xgboost"), "model.family: Input should be"),
        ("", replace(FORM, hyperparameters={"n_estimator": 5}), "n_estimator"),
        (
            '{"model": {"family": "logistic_regression"}}',
            replace(FORM, model_family="random_forest"),
            "model_family: set to 'random_forest' but `config` sets model.family",
        ),
    ],
)
def test_a_mistake_is_one_line_naming_the_field(config, params, expected) -> None:
    with pytest.raises(ConfigError) as err:
        resolve(DEFAULTS, config, params)
    assert expected in err.value.message
    assert "\n" not in err.value.message


def test_resolve_settings_yaml_has_the_component_interface(tmp_path: Path) -> None:
    assert_yaml_round_trip("resolve_settings", tmp_path)


def test_use_case_naming_a_use_case_brings_its_settings_and_config_still_wins() -> None:
    for name in ("demand_forecasting", "demand-forecast"):  # its directory or its model's name
        settings = resolve(DEFAULTS, "", replace(FORM, use_case=name))
        assert settings.use_case == "demand_forecasting"
        assert settings.model.name == "demand-forecast" and settings.model.task == "regression"
        assert settings.features.repo_path.endswith("demand_forecasting")
        assert settings.gate.thresholds == {
            "wape_improvement": 0.1,
            "backtest_wape_improvement": 0.1,
        }
    settings = resolve(
        DEFAULTS, '{"gate": {"min_improvement": 0.02}}', replace(FORM, use_case="demand-forecast")
    )
    assert settings.gate.min_improvement == 0.02 and settings.gate.compare_metric == "wape"
    back = settings_to_json(settings)  # and from there back to the default use case
    assert (
        resolve(back, "", replace(parameters_from(settings), use_case="machine-failure")).model.task
        == "classification"
    )
