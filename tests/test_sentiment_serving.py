"""Serving request-time text: sentiment analysis through the transformer and the predictor,
over V1 (a JSON string), V2 REST (BYTES) and gRPC, with `esteira predict`'s clients; and the
text's validation (empty, over serving.max_text_chars, not UTF-8) as 400 / INVALID_ARGUMENT.

One tiny world per module: a few products' reviews, their features published and
materialized, the text pipeline trained and registered as production, one predictor +
transformer pair (both with gRPC).
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest

from esteira_cli.commands import predict as esteira_predict
from testkit.serving import (
    answers_by_protocol,
    chain_endpoints,
    chain_servers,
    online_frame,
)

MAX_TEXT = 200  # serving.max_text_chars of this world
TEXTS = [
    "Works like a charm, highly recommend it.",
    "The battery is not great, but I returned it.",
    "Kaputt nach einer Woche. Waste of money.",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from testkit.sentiment import generate, sentiment_world

    root = tmp_path_factory.mktemp("sentiment-serving")
    raw = generate(products=12, days=90, reviews_per_day=0.4, seed=3)
    world = sentiment_world(
        root,
        raw,
        features={"max_dropped_share": 0.2},
        serving={"log_flush_rows": 1, "log_flush_seconds": 0.2, "max_text_chars": MAX_TEXT},
    )
    products = sorted(int(p) for p in raw["product_id"].unique())[:3]
    world["entities"] = [
        {"product_id": p, "review_text": t} for p, t in zip(products, TEXTS, strict=True)
    ]
    return world


@pytest.fixture(scope="module")
def servers(world: dict[str, Any]) -> Iterator[dict[str, int]]:
    with chain_servers(world["config"], world["root"]) as ports:
        yield ports


def _in_process(world: dict[str, Any], entities: list[dict[str, Any]]) -> np.ndarray:
    """The model's probability for the features the online store serves now and the text."""
    return world["model"].predict_proba(online_frame(world, entities))[:, 1]


def test_v1_v2_and_grpc_give_the_same_answer_as_the_model(world, servers) -> None:
    entities = world["entities"]
    expected = _in_process(world, entities)
    for entity, want in zip(entities, expected, strict=True):
        info = chain_endpoints(world, servers, entity)
        sample = info["sample"]
        assert {"name": "review_text", "shape": [1], "datatype": "BYTES",
                "data": [entity["review_text"]]} in sample["v2"]["inputs"]  # fmt: skip
        got = answers_by_protocol(info)
        assert len(set(got)) == 1, got  # identical, not merely close
        prediction, probability = got[0]
        assert probability == pytest.approx(float(want), rel=1e-12)
        assert prediction == int(want >= world["threshold"])
    assert expected[0] > 0.5 > expected[2]  # the text decides, not only the product


def test_v2_metadata_names_the_text_input(world, servers) -> None:
    name = world["settings"].model.name
    meta = httpx.get(f"http://127.0.0.1:{servers['transformer']}/v2/models/{name}").json()
    assert {i["name"]: i["datatype"] for i in meta["inputs"]} == {
        "product_id": "INT64",
        "review_text": "BYTES",
    }
    meta = httpx.get(f"http://127.0.0.1:{servers['predictor']}/v2/models/{name}").json()
    assert {"name": "review", "datatype": "BYTES", "shape": [-1]} in meta["inputs"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("  \n ", "is empty"),
        ("x" * (MAX_TEXT + 1), "over the limit of 200 (serving.max_text_chars)"),
        (7, "expected a string (text)"),
        (None, "expected a string (text)"),
    ],
)
def test_bad_text_over_v1_is_a_400_naming_the_field(world, servers, text, message) -> None:
    name = world["settings"].model.name
    body = {"instances": [{"product_id": world["entities"][0]["product_id"], "review_text": text}]}
    for port, field in ((servers["transformer"], "review_text"), (servers["predictor"], "review")):
        if port == servers["predictor"]:
            from esteira.online import OnlineFeatures

            row = OnlineFeatures(world["settings"]).lookup(
                {"product_id": [body["instances"][0]["product_id"]]}, {"review_text": ["ok"]}
            )
            body = {"instances": [{**{k: v[0] for k, v in row.items()}, "review": text}]}
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/models/{name}:predict", json=body)
        assert answer.status_code == 400, answer.text
        assert f"instances[0].{field}" in answer.json()["error"]
        assert message in answer.json()["error"]


def test_non_utf8_bytes_over_v2_binary_and_grpc_are_refused(world, servers) -> None:
    name = world["settings"].model.name
    product = world["entities"][0]["product_id"]
    bad = b"\xc3\x28 broken"
    header = {
        "inputs": [
            {"name": "product_id", "shape": [1], "datatype": "INT64", "data": [product]},
            {"name": "review_text", "shape": [1], "datatype": "BYTES",
             "parameters": {"binary_data_size": 4 + len(bad)}},
        ]
    }  # fmt: skip
    head = json.dumps(header).encode()
    answer = httpx.post(
        f"http://127.0.0.1:{servers['transformer']}/v2/models/{name}/infer",
        content=head + struct.pack("<I", len(bad)) + bad,
        headers={"Inference-Header-Content-Length": str(len(head))},
    )
    assert answer.status_code == 400, answer.text
    assert "inputs['review_text'].data[0]: is not valid UTF-8" in answer.json()["error"]

    InferenceGRPCClient, InferInput, InferRequest = esteira_predict._kserve_clients()
    inputs = [
        InferInput("product_id", [1], "INT64", data=[product]),
        InferInput("review_text", [1], "BYTES", data=[bad]),
    ]

    async def call() -> Any:
        url = f"127.0.0.1:{servers['transformer'] + 1}"
        client = InferenceGRPCClient(url=url, timeout=10, retries=0)
        try:
            return await client.infer(InferRequest(name, inputs))
        finally:
            await client.close()

    with pytest.raises(grpc.RpcError) as raised:
        asyncio.run(call())
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not valid UTF-8" in raised.value.details()


def test_the_prediction_log_keeps_the_text(world, servers) -> None:
    import time

    from esteira.prediction_log import read_log
    from esteira.registry import registry_for

    name = world["settings"].model.name
    entity = {**world["entities"][1], "review_text": "Ünïcode is fine: très bien!"}
    url = f"http://127.0.0.1:{servers['transformer']}/v1/models/{name}:predict"
    httpx.post(url, json={"instances": [entity]}).raise_for_status()
    storage = registry_for(world["settings"]).storage
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log = read_log(storage, name)
        if len(log) and (log.get("review") == entity["review_text"]).any():
            break
        time.sleep(0.3)
    else:
        pytest.fail("the prediction log never showed the text")
