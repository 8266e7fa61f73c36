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
        "model:\n  family: random_forest\n  hyperparameters: {max_depth: 4}\nkserve:\n  namespace: ml\n"
    )
    s = load_settings(cfg)
    assert (s.model.family, s.model.hyperparameters, s.kserve.namespace) == (
        "random_forest",
        {"max_depth": 4},
        "ml",
    )
    monkeypatch.setenv("ESTEIRA_MODEL__FAMILY", "gradient_boosting")  # takes max_depth too
    assert load_settings(cfg).model.family == "gradient_boosting"


@pytest.mark.parametrize(
    ("yaml_text", "key", "allowed"),
    [
        ("model:\n  family: xgboost\n", "model.family", "gradient_boosting"),
        ("storage:\n  kind: s3\n", "storage", "storage.endpoint is required"),
        ("gate:\n  thresholds: {auc: 0.8}\n", "gate", "roc_auc"),
        ("data:\n  machines: 0\n", "data.machines", "greater than or equal to 1"),
        ("modle:\n  family: x\n", "modle", "unknown key"),
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


def test_broken_yaml_is_one_line_with_file_line_and_column(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  family: random_forest\n  hyperparameters: {n_estimators: 10\n")
    with pytest.raises(ConfigError) as err:
        load_settings(bad)
    message = err.value.message
    assert "\n" not in message
    assert f"{bad}:4:1: not valid YAML: expected ',' or '}}'" in message


@pytest.mark.parametrize(
    ("yaml_text", "typo", "suggestion"),
    [
        ("model:\n  familly: random_forest\n", "model.familly", "did you mean `model.family`?"),
        ("modle:\n  family: random_forest\n", "modle", "did you mean `model`?"),
        ("gate:\n  treshold: {roc_auc: 0.7}\n", "gate.treshold", "did you mean `gate.thresholds`?"),
    ],
)
def test_an_unknown_key_suggests_the_known_one(tmp_path: Path, yaml_text, typo, suggestion):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert suggestion in err.value.message
    typo = yaml_text.split(":")[0] if yaml_text.startswith("modle") else None
    assert (
        typo is None or f"set `{typo}" not in err.value.message
    )  # never repeats the typo as advice


def test_an_unknown_key_with_no_near_match_lists_the_allowed_keys(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  zzz: 1\n")
    with pytest.raises(
        ConfigError, match=r"model\.zzz: unknown key.*keys allowed at `model`: .*family"
    ):
        load_settings(cfg)


def test_hyperparameters_are_checked_against_the_family_when_the_config_loads(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  family: random_forest\n  hyperparameters: {max_iter: 10}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert err.value.field == "model.hyperparameters.max_iter"
    assert "RandomForestClassifier" in err.value.rule
    # the same key is right for gradient boosting, and a near miss gets a suggestion
    cfg.write_text("model:\n  hyperparameters: {max_iter: 10}\n")
    assert load_settings(cfg).model.hyperparameters == {"max_iter": 10}
    cfg.write_text("model:\n  hyperparameters: {max_iters: 10}\n")
    with pytest.raises(ConfigError, match="did you mean `model.hyperparameters.max_iter`"):
        load_settings(cfg)


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


def test_an_unknown_use_case_is_one_line_naming_the_ones_there_are(monkeypatch) -> None:
    monkeypatch.setenv("ESTEIRA_USE_CASE", "nope")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.message.startswith("use_case: no use case 'nope'")
    assert "demand_forecasting, predictive_maintenance, sentiment_analysis" in err.value.message
    monkeypatch.setenv("ESTEIRA_USE_CASE", "demand-forecast")  # a use case's model name
    settings = load_settings()
    assert settings.use_case == "demand_forecasting" and settings.data.generator["stores"] == 10
    monkeypatch.delenv("ESTEIRA_USE_CASE")
    assert Settings().use_case == "predictive_maintenance"  # the default (usecases.yaml)
