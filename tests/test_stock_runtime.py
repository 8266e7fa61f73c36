"""Predictor-only on KServe's stock sklearn runtime (``kserve.runtime: kserve-sklearnserver``).

The transformer's request shapes and its reading of the answers are held to requests and
answers recorded from KServe's own sklearn server (``tools/record_stock_fixtures.py``,
``tests/fixtures/kserve_sklearnserver.json``, which names the KServe commit).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from esteira.config import Settings, load_settings
from esteira.deploy import build_inferenceservice
from esteira.registry import ModelVersion
from serving.stock import STOCK_RUNTIME, read_stock_answer, stock_request

FIXTURE = Path(__file__).parent / "fixtures" / "kserve_sklearnserver.json"


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())


def _build(**kserve: Any) -> dict[str, Any]:
    version = ModelVersion(
        "machine-failure",
        3,
        "s3://esteira/models/machine-failure/v3",
        {"library_versions": {"scikit-learn": "1.9.1"}, "decision_threshold": 0.0379},
        ["production"],
    )
    settings = Settings.model_validate({"kserve": kserve})
    return build_inferenceservice(settings, version, sklearn_version="1.9.1")


def test_the_fixture_names_the_kserve_commit(recorded: dict[str, Any]) -> None:
    assert len(recorded["kserve_commit"]) == 40
    int(recorded["kserve_commit"], 16)
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert recorded["kserve_commit"] in readme


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_requests_have_the_shape_the_stock_server_answered(
    recorded: dict[str, Any], protocol: str
) -> None:
    case = recorded["cases"][protocol]
    assert case["status"] == 200, case["response"]
    request = stock_request(protocol, recorded["feature_names"], recorded["features"])
    assert request == case["request"]


@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_answers_are_read_as_the_model_scores_in_process(
    recorded: dict[str, Any], protocol: str
) -> None:
    case = recorded["cases"][protocol]
    expected = recorded["expected_probabilities"]
    threshold = recorded["decision_threshold"]
    classes, probabilities, _ = read_stock_answer(
        protocol, case["response"], len(expected), threshold
    )
    assert probabilities == pytest.approx(expected, rel=0, abs=1e-12)
    assert classes == [int(p >= threshold) for p in expected]


def test_a_wrong_answer_is_refused(recorded: dict[str, Any]) -> None:
    answer = json.loads(json.dumps(recorded["cases"]["v2"]["response"]))
    answer["outputs"][0]["shape"] = [1, 2]
    with pytest.raises(ValueError, match="shape"):
        read_stock_answer("v2", answer, len(recorded["expected_probabilities"]), 0.5)
    with pytest.raises(KeyError):
        read_stock_answer("v2", {"outputs": [{"name": "prediction", "data": []}]}, 1, 0.5)


def test_our_own_shapes_are_what_the_stock_server_refuses(recorded: dict[str, Any]) -> None:
    """Why the transformer needs its stock branch: recorded, not assumed."""
    for key in ("v1_esteira", "v2_esteira", "v1_bare_objects"):
        assert recorded["cases"][key]["status"] >= 400, key


@pytest.mark.usefixtures("kserve_schemas")
def test_inferenceservice_pins_the_stock_runtime_and_asks_for_probabilities() -> None:
    from esteira.manifests import validate_inferenceservice

    obj = _build(runtime=STOCK_RUNTIME, transformer=True)
    model = obj["spec"]["predictor"]["model"]
    assert model["runtime"] == STOCK_RUNTIME
    assert model["modelFormat"]["name"] == "sklearn"
    assert {"name": "PREDICT_PROBA", "value": "true"} in model["env"]
    (container,) = obj["spec"]["transformer"]["containers"]
    assert {"name": "ESTEIRA_KSERVE__RUNTIME", "value": STOCK_RUNTIME} in container["env"]
    # the stock server answers probabilities: the transformer cuts at the version's threshold
    assert "--decision_threshold=0.0379" in container["args"]
    assert validate_inferenceservice(obj) == []


def test_the_default_runtime_sets_no_stock_fields() -> None:
    obj = _build(transformer=True)
    model = obj["spec"]["predictor"]["model"]
    assert model.get("runtime") != STOCK_RUNTIME
    assert "env" not in model
    (container,) = obj["spec"]["transformer"]["containers"]
    assert "env" not in container
    assert not any("decision_threshold" in a for a in container["args"])


def test_the_transformer_container_env_selects_the_stock_branch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serving.transformer import Transformer

    (container,) = _build(runtime=STOCK_RUNTIME, transformer=True)["spec"]["transformer"][
        "containers"
    ]
    for env in container["env"]:
        monkeypatch.setenv(env["name"], env["value"])
    settings = load_settings(None)
    assert settings.kserve.runtime == STOCK_RUNTIME
    assert Transformer(settings, predictor_host="127.0.0.1:1").stock is True
    from serving.__main__ import build_parser

    args = build_parser().parse_args(["transformer", *container["args"]])
    assert args.decision_threshold == 0.0379
    # without the version's threshold the stock branch stays unready and says why
    bare = Transformer(settings, predictor_host="127.0.0.1:1", online=object())
    assert bare.load() is False and "--decision_threshold" in bare.failure
    monkeypatch.delenv("ESTEIRA_KSERVE__RUNTIME")
    assert Transformer(load_settings(None), predictor_host="127.0.0.1:1").stock is False


def test_unknown_runtime_is_a_config_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="kserve-sklearnserver"):
        Settings.model_validate({"kserve": {"runtime": "mlserver"}})
