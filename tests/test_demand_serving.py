"""Serving a regression with a composite entity key: demand forecasting through the
transformer and the predictor, over V1, V2 REST and gRPC, with `esteira predict`'s clients.

One tiny world per module: the use case's data (2 stores x 3 items x 60 days), its
features published and materialized, a plain scikit-learn regressor registered as the
production version, and one predictor + transformer pair (both with gRPC).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from testkit.serving import (
    answers_by_protocol,
    chain_endpoints,
    chain_servers,
    online_frame,
)

STORES, ITEMS = 2, 3


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from components.train.logic import build_pipeline
    from esteira.feast_repo import build_training_set, materialize
    from esteira.features import label_frame
    from esteira.registry import MODEL_FILE, registry_for
    from esteira.safe_load import dump_model
    from testkit.demand import demand_store, generate

    root = tmp_path_factory.mktemp("demand-serving")
    raw = generate(stores=STORES, items=ITEMS, days=60, seed=11)
    settings, contract = demand_store(
        root,
        raw,
        serving={"log_flush_rows": 1, "log_flush_seconds": 0.2, "timeout_seconds": 5.0},
    )
    training = build_training_set(label_frame(raw, contract, 24), settings)
    frame, features = training.frame, training.feature_names
    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in features if c not in categorical]
    model = build_pipeline(settings.model, numeric, categorical)
    model.fit(frame[features], frame[contract.label.name])
    registry = registry_for(settings)
    version = registry.register(
        {MODEL_FILE: dump_model(model), "reference.json": b"{}"},
        {
            "feature_names": features,
            "categorical_features": categorical,
            "feature_types": {c: str(frame[c].dtype) for c in features},
            "label": contract.label.name,
            "task": "regression",
            "family": settings.model.family,
            "entity_keys": contract.key_kinds,
            "nullable_features": [c for c in features if frame[c].isna().any()],
            "metrics": {"wape": 0.4},
        },
    )
    registry.set_alias("production", version.version)
    materialize(settings)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    last = raw.sort_values(contract.timestamp).groupby(contract.keys).tail(1)
    return {
        "root": root,
        "config": config,
        "settings": settings,
        "contract": contract,
        "model": model,
        "features": features,
        "types": {c: frame[c].dtype for c in features},
        "version": version.version,
        "entities": [
            {
                "store_id": int(r.store_id),
                "item_id": int(r.item_id),
                "price": float(r.price),
                "promo": float(r.promo),
            }
            for r in last.itertuples()
        ],  # fmt: skip
    }


@pytest.fixture(scope="module")
def servers(world: dict[str, Any]) -> Iterator[dict[str, int]]:
    with chain_servers(world["config"], world["root"]) as ports:
        yield ports


def _in_process(world: dict[str, Any], entities: list[dict[str, Any]]) -> np.ndarray:
    """The model's forecast for the features the online store serves now."""
    return world["model"].predict(online_frame(world, entities).astype(world["types"]))


def test_v1_v2_and_grpc_give_the_same_forecast_as_the_model(world, servers) -> None:
    entities = world["entities"][:3]
    expected = _in_process(world, entities)
    answers = []
    for entity, want in zip(entities, expected, strict=True):
        info = chain_endpoints(world, servers, entity)
        got = answers_by_protocol(info)
        assert len(set(got)) == 1, got  # identical, not merely close
        prediction, probability = got[0]
        assert probability is None  # a regression answers no probability
        assert prediction == pytest.approx(float(want), rel=1e-9, abs=1e-9)
        answers.append(prediction)
    assert len(set(answers)) > 1  # different entities, different forecasts


def test_a_batch_echoes_both_keys_and_v2_metadata_names_them(world, servers) -> None:
    url = f"http://127.0.0.1:{servers['transformer']}"
    name = world["settings"].model.name
    entities = world["entities"]
    body = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": entities}).json()
    assert body["store_ids"] == [e["store_id"] for e in entities]
    assert body["item_ids"] == [e["item_id"] for e in entities]
    assert "probabilities" not in body
    np.testing.assert_allclose(body["predictions"], _in_process(world, entities), rtol=1e-9)

    meta = httpx.get(f"{url}/v2/models/{name}").json()
    assert [i["name"] for i in meta["inputs"]] == ["store_id", "item_id", "price", "promo"]
    outputs = {o["name"]: o["datatype"] for o in meta["outputs"]}
    assert outputs == {"store_id": "INT64", "item_id": "INT64", "prediction": "FP64"}


def test_a_v2_request_typed_as_the_metadata_says_is_answered(world, servers) -> None:
    """A generic V2 client types each input as GET /v2/models/<name> advertises (the int
    promotion flag as INT64): the transformer takes what it advertises."""
    url = f"http://127.0.0.1:{servers['transformer']}"
    name = world["settings"].model.name
    entities = world["entities"][:2]
    meta = httpx.get(f"{url}/v2/models/{name}").json()
    inputs = [
        {"name": i["name"], "shape": [len(entities)], "datatype": i["datatype"],
         "data": [e[i["name"]] for e in entities]}
        for i in meta["inputs"]
    ]  # fmt: skip
    assert {i["name"]: i["datatype"] for i in inputs}["promo"] == "INT64"
    answer = httpx.post(f"{url}/v2/models/{name}/infer", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    got = {o["name"]: o["data"] for o in answer.json()["outputs"]}
    np.testing.assert_allclose(got["prediction"], _in_process(world, entities), rtol=1e-9)


def test_client_mistakes_name_the_key(world, servers) -> None:
    url = f"http://127.0.0.1:{servers['transformer']}"
    name = world["settings"].model.name
    entity = world["entities"][0]
    unknown = {**entity, "item_id": 999}
    answer = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [unknown]})
    assert answer.status_code == 404
    assert "store_id, item_id" in answer.json()["error"] and "999" in answer.json()["error"]

    missing = {k: v for k, v in entity.items() if k != "item_id"}
    answer = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [missing]})
    assert answer.status_code == 400 and "item_id" in answer.json()["error"]

    wrong = {**entity, "store_id": "three"}
    answer = httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [wrong]})
    assert answer.status_code == 400 and "instances[0].store_id" in answer.json()["error"]


def test_the_prediction_log_keeps_both_keys(world, servers) -> None:
    from esteira.prediction_log import read_log
    from esteira.registry import registry_for

    url = f"http://127.0.0.1:{servers['transformer']}"
    name = world["settings"].model.name
    entity = world["entities"][-1]
    httpx.post(f"{url}/v1/models/{name}:predict", json={"instances": [entity]}).raise_for_status()
    storage = registry_for(world["settings"]).storage
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = read_log(storage, name)
        mine = log.loc[(log["store_id"] == entity["store_id"])] if len(log) else log
        if len(mine) and (mine["item_id"] == entity["item_id"]).any():
            break
        time.sleep(0.3)
    else:
        pytest.fail("the prediction log never showed the request")
    row = mine.loc[mine["item_id"] == entity["item_id"]].iloc[-1]
    assert pd.isna(row["probability"])  # a regression has no probability
    assert row["prediction"] == pytest.approx(float(_in_process(world, [entity])[0]), rel=1e-9)


def test_null_is_a_missing_value_only_where_training_had_missing_values(world, servers) -> None:
    from esteira.online import OnlineFeatures

    meta_url = f"http://127.0.0.1:{servers['predictor']}"
    name = world["settings"].model.name
    entity = world["entities"][0]
    online = OnlineFeatures(world["settings"])
    keys = {k: [entity[k]] for k in ("store_id", "item_id")}
    row = {k: v[0] for k, v in online.lookup(keys, {"price": [1.0], "promo": [0.0]}).items()}
    nullable = [c for c in world["features"] if "lag_28" in c]
    assert nullable, "the lags of a new item's first weeks are missing in training"
    strict = next(
        c for c in world["features"] if c not in nullable and world["types"][c].kind == "f"
    )
    url = f"{meta_url}/v1/models/{name}:predict"
    assert httpx.post(url, json={"instances": [{**row, nullable[0]: None}]}).status_code == 200
    answer = httpx.post(url, json={"instances": [{**row, strict: None}]})
    assert answer.status_code == 400 and strict in answer.json()["error"]
