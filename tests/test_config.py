from pathlib import Path

import pytest

from esteira.config import Settings, load_settings, settings_from_json, settings_to_json
from esteira.errors import ConfigError


def test_defaults_are_the_local_mode(monkeypatch):
    for key in list(__import__("os").environ):
        if key.startswith("ESTEIRA_"):
            monkeypatch.delenv(key)
    s = load_settings()
    assert s.storage.kind == "local"
    assert s.features.online_store == "sqlite"
    assert s.image.reference == "ghcr.io/esteira/esteira:0.1.0"


def test_yaml_overrides_defaults_and_env_overrides_yaml(tmp_path: Path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model:\n  family: random_forest\n  hyperparameters: {n_estimators: 10}\nkserve:\n  namespace: ml\n"
    )
    s = load_settings(cfg)
    assert (s.model.family, s.model.hyperparameters, s.kserve.namespace) == (
        "random_forest",
        {"n_estimators": 10},
        "ml",
    )
    monkeypatch.setenv("ESTEIRA_MODEL__FAMILY", "logistic_regression")
    assert load_settings(cfg).model.family == "logistic_regression"


@pytest.mark.parametrize(
    ("yaml_text", "key", "allowed"),
    [
        ("model:\n  family: xgboost\n", "model.family", "gradient_boosting"),
        ("storage:\n  kind: s3\n", "storage", "storage.endpoint is required"),
        ("gate:\n  thresholds: {auc: 0.8}\n", "gate", "roc_auc"),
        ("data:\n  machines: 0\n", "data.machines", "greater than or equal to 1"),
        ("modle:\n  family: x\n", "modle", "Extra inputs"),
    ],
)
def test_a_wrong_value_names_the_key_and_what_is_allowed(tmp_path: Path, yaml_text, key, allowed):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert key in err.value.message and allowed in err.value.message


def test_env_values_are_validated_too(monkeypatch):
    monkeypatch.setenv("ESTEIRA_KSERVE__PROTOCOL", "v3")
    with pytest.raises(ConfigError, match="kserve.protocol.*ESTEIRA_KSERVE__PROTOCOL"):
        load_settings()


def test_missing_or_broken_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_pipeline_parameter_round_trips_and_is_canonical():
    s = Settings()
    text = settings_to_json(s)
    assert settings_from_json(text) == s
    assert settings_to_json(settings_from_json(text)) == text
    with pytest.raises(ConfigError, match="not JSON"):
        settings_from_json("{")


def test_credentials_are_not_configuration():
    fields = str(Settings.model_json_schema()).lower()
    assert "secret_key" not in fields and "access_key" not in fields and "password" not in fields
