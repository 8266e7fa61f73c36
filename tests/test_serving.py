"""Serving end to end: predictor (V1, V2 REST, V2 gRPC) and transformer (Feast) on loopback.

One world per module (a registered model and a materialized SQLite online store)
and one predictor + transformer pair started as child processes on free ports.
"""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pandas as pd
import pytest

from esteira.net import free_port
from testkit.serving import (
    MODEL_NAME,
    ServerProcess,
    World,
    build_world,
    expected_from_online,
)

ANSWERED: list[str] = []  # request ids the predictor answered with 200


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def servers(world: World):
    ports = {"predictor": free_port(), "grpc": free_port(), "transformer": free_port()}
    config = ["--config", str(world.config_path)]
    predictor = ServerProcess(
        "predictor",
        [*config, "--http-port", str(ports["predictor"]), "--grpc-port", str(ports["grpc"])],
        world.root / "predictor.log",
    ).start()
    transformer = ServerProcess(
        "transformer",
        [*config, "--http-port", str(ports["transformer"]), "--grpc-port", "0",
         "--predictor-host", f"127.0.0.1:{ports['predictor']}"],
        world.root / "transformer.log",
    ).start()  # fmt: skip
    try:
        predictor.wait_http(f"http://127.0.0.1:{ports['predictor']}/v2/health/ready", 120)
        transformer.wait_http(f"http://127.0.0.1:{ports['transformer']}/v2/health/ready", 120)
        yield {
            "predictor": f"http://127.0.0.1:{ports['predictor']}",
            "transformer": f"http://127.0.0.1:{ports['transformer']}",
            "grpc": f"127.0.0.1:{ports['grpc']}",
            "predictor_process": predictor,
        }
    finally:
        transformer.stop()
        predictor.stop()


def _v1_url(base: str, name: str = MODEL_NAME) -> str:
    return f"{base}/v1/models/{name}:predict"


def _v2_url(base: str, name: str = MODEL_NAME) -> str:
    return f"{base}/v2/models/{name}/infer"


def _post(url: str, **kwargs: Any) -> httpx.Response:
    request_id = uuid.uuid4().hex
    headers = {"x-request-id": request_id, **kwargs.pop("headers", {})}
    response = httpx.post(url, headers=headers, timeout=10, **kwargs)
    if response.status_code == 200:
        ANSWERED.append(request_id)
    return response


def _datatype(world: World, name: str) -> str:
    kind = world.metadata["feature_types"][name]
    return "BYTES" if kind == "string" else ("INT64" if kind.startswith("int") else "FP64")


def _v2_inputs(world: World, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": n,
            "shape": [len(rows)],
            "datatype": _datatype(world, n),
            "data": [r[n] for r in rows],
        }
        for n in world.feature_names
    ]


def _expected(world: World, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(classes at the version's decision_threshold, probabilities) computed in-process."""
    frame = pd.DataFrame(rows, columns=world.feature_names).astype(world.metadata["feature_types"])
    proba = world.model.predict_proba(frame)[:, 1]
    return (proba >= world.decision_threshold).astype(int), proba


# ---- same answers everywhere ------------------------------------------------------------
def test_v1_matches_the_model_in_process(world: World, servers: dict) -> None:
    rows = world.rows(6)
    labels, proba = _expected(world, rows)
    as_objects = _post(
        _v1_url(servers["predictor"]),
        json={"instances": rows, "parameters": {"probabilities": True}},
    )
    as_lists = _post(
        _v1_url(servers["predictor"]),
        json={"instances": [[r[n] for n in world.feature_names] for r in rows]},
    )
    assert as_objects.status_code == 200, as_objects.text
    body = as_objects.json()
    assert body["predictions"] == labels.tolist()
    np.testing.assert_allclose(body["probabilities"], proba, rtol=0, atol=1e-12)
    assert body["model_version"] == str(world.version)
    assert as_lists.json()["predictions"] == labels.tolist()
    assert "probabilities" not in as_lists.json()


def test_v2_rest_matches_the_model_in_process(world: World, servers: dict) -> None:
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

    rows = world.rows(6)
    labels, proba = _expected(world, rows)
    inputs = [
        InferInput(i["name"], i["shape"], i["datatype"], data=i["data"])
        for i in _v2_inputs(world, rows)
    ]
    request = InferRequest(MODEL_NAME, inputs, parameters={"probabilities": True})

    async def call() -> Any:
        client = InferenceRESTClient(RESTConfig(protocol="v2", timeout=10))
        return await client.infer(servers["predictor"], request, model_name=MODEL_NAME)

    response = asyncio.run(call())
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    assert outputs["prediction"].tolist() == labels.tolist()
    np.testing.assert_allclose(outputs["probability"], proba, rtol=0, atol=1e-12)


def _grpc_request(world: World, rows: list[dict[str, Any]], **params: Any) -> Any:
    from kserve import InferInput, InferRequest

    inputs = []
    for spec in _v2_inputs(world, rows):
        data = spec["data"]
        if spec["datatype"] == "BYTES":
            data = [str(v).encode() for v in data]
        inputs.append(InferInput(spec["name"], spec["shape"], spec["datatype"], data=data))
    return InferRequest(MODEL_NAME, inputs, parameters=params or None)


async def _grpc_infer(address: str, request: Any) -> Any:
    from kserve import InferenceGRPCClient

    client = InferenceGRPCClient(url=address, timeout=10, retries=0)
    try:
        return await client.infer(request)
    finally:
        await client.close()


def test_v2_grpc_matches_the_model_in_process(world: World, servers: dict) -> None:
    rows = world.rows(6)
    labels, proba = _expected(world, rows)
    request = _grpc_request(world, rows, probabilities=True)
    response = asyncio.run(_grpc_infer(servers["grpc"], request))
    outputs = {o.name: o.as_numpy() for o in response.outputs}
    assert outputs["prediction"].tolist() == labels.tolist()
    np.testing.assert_allclose(outputs["probability"], proba, rtol=0, atol=1e-12)


def test_every_protocol_and_batch_cut_at_the_stored_threshold(world: World, servers: dict) -> None:
    """prediction == probability >= metadata.decision_threshold on V1, V2 REST, gRPC and in
    batch prediction, for the same rows; rows between it and 0.5 make a 0.5 cut fail."""
    from components.batch_predict.logic import load_production_model, predict_frame
    from esteira.registry import registry_for

    t = world.decision_threshold
    _, proba = _expected(world, world.rows_at(list(range(len(world.frame)))))
    between = np.flatnonzero((proba >= t) & (proba < 0.5))[:4]
    under = np.flatnonzero(proba < t)[:3]
    over = np.flatnonzero(proba >= 0.5)[:2]
    positions = sorted(int(i) for i in (*between, *under, *over))
    assert len(between) and len(under), "the world's threshold must split its rows"
    rows = world.rows_at(positions)
    want = (proba[positions] >= t).astype(int).tolist()
    assert want != (proba[positions] >= 0.5).astype(int).tolist()

    v1 = _post(_v1_url(servers["predictor"]), json={"instances": rows}).json()["predictions"]
    v2 = _post(_v2_url(servers["predictor"]), json={"inputs": _v2_inputs(world, rows)}).json()
    v2_rest = next(o["data"] for o in v2["outputs"] if o["name"] == "prediction")
    response = asyncio.run(_grpc_infer(servers["grpc"], _grpc_request(world, rows)))
    grpc_out = {o.name: o.as_numpy() for o in response.outputs}["prediction"].tolist()
    model = load_production_model(registry_for(world.settings))
    assert model.threshold == t
    batch = predict_frame(
        model, world.frame.iloc[positions], entity="machine_id", run_id="t", progress=None
    )["prediction"].tolist()
    assert v1 == v2_rest == grpc_out == batch == want
    # the transformer passes the predictor's classes on, for every machine it serves
    ids = world.machine_ids
    instances = [{"machine_id": m, **world.request_values[m]} for m in ids]
    body = _post(_v1_url(servers["transformer"]), json={"instances": instances}).json()
    assert body["predictions"] == [int(p >= t) for p in body["probabilities"]]
    assert body["predictions"] == [expected_from_online(world, m)[0] for m in ids]


def test_transformer_v1_and_v2_match_online_features_in_process(
    world: World, servers: dict
) -> None:
    ids = world.machine_ids[:3]
    expected = [expected_from_online(world, m) for m in ids]
    instances = [{"machine_id": m, **world.request_values[m]} for m in ids]
    v1 = httpx.post(_v1_url(servers["transformer"]), json={"instances": instances}, timeout=10)
    assert v1.status_code == 200, v1.text
    body = v1.json()
    assert body["machine_ids"] == ids
    assert body["predictions"] == [e[0] for e in expected]
    np.testing.assert_allclose(body["probabilities"], [e[1] for e in expected], atol=1e-12)

    fields = list(world.request_values[ids[0]])
    v2 = httpx.post(
        _v2_url(servers["transformer"]),
        json={
            "inputs": [
                {"name": "machine_id", "shape": [3], "datatype": "INT64", "data": ids},
                *(
                    {"name": f, "shape": [3], "datatype": "FP64",
                     "data": [world.request_values[m][f] for m in ids]}
                    for f in fields
                ),
            ]
        },
        timeout=10,
    )  # fmt: skip
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["machine_id"] == ids
    assert outputs["prediction"] == body["predictions"]
    assert outputs["probability"] == body["probabilities"]


def test_model_metadata_lists_inputs_from_the_registry(world: World, servers: dict) -> None:
    meta = httpx.get(f"{servers['predictor']}/v2/models/{MODEL_NAME}", timeout=5).json()
    assert [i["name"] for i in meta["inputs"]] == world.feature_names
    types = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert types["model"] == "BYTES" and types["age"] == "INT64"
    assert types["volt_mean_24h"] == "FP64"
    assert [o["name"] for o in meta["outputs"]] == ["prediction", "probability"]
    ready = httpx.get(f"{servers['predictor']}/v2/models/{MODEL_NAME}/ready", timeout=5)
    assert ready.json() == {"name": MODEL_NAME, "ready": True}


def test_version_directory_has_the_shape_kserve_sklearn_loads(world: World) -> None:
    """KServe's sklearn runtime loads the single .joblib/.pkl/.pickle of the storageUri."""
    from esteira.registry import Registry
    from esteira.safe_load import load_model
    from esteira.storage import LocalStorage

    registry = Registry(LocalStorage(world.settings.storage.root), MODEL_NAME)
    directory = Path(registry.version_uri("production"))
    models = [p.name for p in directory.iterdir() if p.suffix in (".joblib", ".pkl", ".pickle")]
    assert models == ["model.joblib"]
    loaded = load_model(directory / "model.joblib")
    frame = pd.DataFrame(world.rows(3)).astype(world.metadata["feature_types"])
    assert loaded.predict(frame).tolist() == world.model.predict(frame).tolist()


# ---- client mistakes are 4xx with the field named ----------------------------------------
def _row(world: World, **changes: Any) -> dict[str, Any]:
    row = world.rows(1)[0]
    row.update(changes)
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()


PREDICTOR_CASES = {
    "invalid-json-v1": (lambda w: {"content": b'{"instances": [1,'}, "v1", 400, "not valid JSON"),
    "invalid-json-v2": (lambda w: {"content": b"{nope"}, "v2", 400, "not valid JSON"),
    "not-an-object": (lambda w: {"json": [1, 2]}, "v1", 400, "body"),
    "missing-instances": (lambda w: {"json": {"rows": []}}, "v1", 400, "rows"),
    "empty-instances": (lambda w: {"json": {"instances": []}}, "v1", 400, "instances"),
    "wrong-type": (
        lambda w: {"json": {"instances": [_row(w, age="old")]}}, "v1", 400, "instances[0].age"),
    "string-for-float": (
        lambda w: {"json": {"instances": [_row(w, volt_mean_3h="171")]}},
        "v1", 400, "instances[0].volt_mean_3h"),
    "bool-for-float": (
        lambda w: {"json": {"instances": [_row(w, volt_mean_3h=True)]}},
        "v1", 400, "volt_mean_3h"),
    "number-for-category": (
        lambda w: {"json": {"instances": [_row(w, model=3)]}}, "v1", 400, "instances[0].model"),
    "missing-feature": (
        lambda w: {"json": {"instances": [_row(w, age=_DROP)]}}, "v1", 400, "age"),
    "extra-feature": (
        lambda w: {"json": {"instances": [_row(w, colour="red")]}}, "v1", 400, "colour"),
    "short-list": (lambda w: {"json": {"instances": [[1.0, 2.0]]}}, "v1", 400, "instances[0]"),
    "null-value": (
        lambda w: {"json": {"instances": [_row(w, volt_std_3h=None)]}},
        "v1", 400, "volt_std_3h"),
    "nan-literal": (
        lambda w: {"content": json.dumps({"instances": [_row(w, volt_std_3h=float("nan"))]})},
        "v1", 400, "JSON"),
    "unknown-parameter": (
        lambda w: {"json": {"instances": [_row(w)], "parameters": {"probability": True}}},
        "v1", 400, "parameters.probability"),
    "unknown-top-level": (
        lambda w: {"json": {"instances": [_row(w)], "instance": 1}}, "v1", 400, "instance"),
    "too-many-rows": (
        lambda w: {"json": {"instances": [_row(w)] * 1001}}, "v1", 400, "serving.max_batch"),
    "oversized-payload": (
        lambda w: {"content": b'{"instances": [' + b"1.0," * 5_000_000 + b"1.0]}"},
        "v1", 413, "body"),
    "v2-not-a-request": (lambda w: {"json": {"inputs": 3}}, "v2", 400, "inputs"),
    "v2-single-2d-tensor": (
        lambda w: {"json": {"inputs": [{"name": "input-0", "shape": [1, 39], "datatype": "FP64",
                                        "data": [[1.0] * 39]}]}},
        "v2", 400, "input-0"),
    "v2-missing-input": (
        lambda w: {"json": {"inputs": _v2_inputs(w, w.rows(1))[1:]}}, "v2", 400,
        "volt_mean_3h"),
    "v2-wrong-datatype": (
        lambda w: {"json": {"inputs": [
            {**i, "datatype": "BYTES", "data": ["x"]} if i["name"] == "age" else i
            for i in _v2_inputs(w, w.rows(1))]}},
        "v2", 400, "inputs['age'].datatype"),
    "v2-wrong-shape": (
        lambda w: {"json": {"inputs": [
            {**i, "shape": [2]} if i["name"] == "age" else i for i in _v2_inputs(w, w.rows(1))]}},
        "v2", 400, "inputs['age']"),
    "v2-string-in-fp64": (
        lambda w: {"json": {"inputs": [
            {**i, "data": ["high"]} if i["name"] == "volt_mean_3h" else i
            for i in _v2_inputs(w, w.rows(1))]}},
        "v2", 400, "inputs['volt_mean_3h'].data[0]"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(PREDICTOR_CASES))
def test_predictor_answers_client_mistakes_with_4xx_naming_the_field(
    world: World, servers: dict, case: str
) -> None:
    build, protocol, status, field = PREDICTOR_CASES[case]
    url = (_v1_url if protocol == "v1" else _v2_url)(servers["predictor"])
    kwargs = build(world)
    if "content" in kwargs:
        kwargs["headers"] = {"content-type": "application/json"}
    response = _post(url, **kwargs)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/v1/models/no-such-model:predict", 404),
        ("/v2/models/no-such-model/infer", 404),
        ("/v2/models/no-such-model", 404),
    ],
)
def test_unknown_model_is_404(world: World, servers: dict, url: str, status: int) -> None:
    body = {"inputs": _v2_inputs(world, world.rows(1))} if "/v2/" in url else {"instances": []}
    response = httpx.post(servers["predictor"] + url, json=body)
    if url.endswith("no-such-model"):
        response = httpx.get(servers["predictor"] + url)
    assert response.status_code == status
    assert "no-such-model" in response.json()["error"]


def test_grpc_invalid_request_is_invalid_argument_naming_the_field(
    world: World, servers: dict
) -> None:
    rows = world.rows(1)
    request = _grpc_request(world, rows)
    request.inputs = [i for i in request.inputs if i.name != "age"]
    with pytest.raises(grpc.RpcError) as info:
        asyncio.run(_grpc_infer(servers["grpc"], request))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "age" in info.value.details()


TRANSFORMER_CASES = {
    "unknown-machine": ({"instances": [{"machine_id": 424242, "volt_now": 1.0,
                                        "vibration_now": 1.0}]}, 404, "424242"),
    "missing-field": ({"instances": [{"machine_id": 1, "volt_now": 1.0}]}, 400, "vibration_now"),
    "extra-field": ({"instances": [{"machine_id": 1, "volt_now": 1.0, "vibration_now": 1.0,
                                    "rpm": 3}]}, 400, "rpm"),
    "id-not-integer": ({"instances": [{"machine_id": "seven", "volt_now": 1.0,
                                       "vibration_now": 1.0}]}, 400, "instances[0].machine_id"),
    "value-not-number": ({"instances": [{"machine_id": 1, "volt_now": "hi",
                                         "vibration_now": 1.0}]}, 400, "instances[0].volt_now"),
    "empty": ({"instances": []}, 400, "instances"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(TRANSFORMER_CASES))
def test_transformer_answers_client_mistakes_with_4xx(
    world: World, servers: dict, case: str
) -> None:
    body, status, field = TRANSFORMER_CASES[case]
    response = httpx.post(_v1_url(servers["transformer"]), json=body, timeout=10)
    assert response.status_code == status, response.text
    assert field in response.json()["error"]


# ---- the prediction log (last: it stops the predictor to flush) -------------------------
def test_prediction_log_holds_every_answered_request(world: World, servers: dict) -> None:
    from esteira.prediction_log import read_log
    from esteira.storage import LocalStorage

    for _ in range(5):
        response = _post(
            _v1_url(servers["predictor"]),
            json={"instances": world.rows(2), "parameters": {"machine_ids": [1, 2],
                                                            "event_timestamp": "2025-01-10T12:00:00"}},
        )  # fmt: skip
        assert response.status_code == 200
    process: ServerProcess = servers["predictor_process"]
    process.proc.send_signal(signal.SIGTERM)
    process.proc.wait(timeout=30)
    frame = read_log(LocalStorage(world.settings.storage.root), MODEL_NAME)
    assert set(ANSWERED) <= set(frame["request_id"]), "answered requests missing from the log"
    assert set(frame["request_id"]) <= set(ANSWERED) | set(
        frame["request_id"][frame["source"] == "online"]
    )
    assert frame["model_version"].eq(world.version).all()
    assert set(world.feature_names) <= set(frame.columns)
    tagged = frame[frame["machine_id"].notna()]
    assert len(tagged) >= 10 and set(tagged["machine_id"].astype(int)) >= {1, 2}
    assert frame["prediction"].notna().all() and frame["probability"].notna().all()


# ---- the prediction logger alone --------------------------------------------------------
def test_prediction_logger_writes_everything_from_many_threads(tmp_path: Path) -> None:
    import threading
    from datetime import UTC, datetime

    from esteira.prediction_log import read_log
    from esteira.storage import LocalStorage
    from serving.prediction_logger import PredictionLogger, Record

    storage = LocalStorage(tmp_path)
    logger = PredictionLogger(storage, "m", flush_rows=7, flush_seconds=0.05)

    def work(thread: int) -> None:
        for i in range(50):
            constants = {"request_id": f"{thread}-{i}", "served_at": datetime.now(UTC),
                         "model_name": "m", "model_version": 1, "source": "online"}  # fmt: skip
            logger.log(Record({"x": [1.0, 2.0], "prediction": [0, 1]}, constants, 2))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logger.close()
    frame = read_log(storage, "m")
    assert len(frame) == 400 and frame["request_id"].nunique() == 200
    assert logger.written_rows == 400 and logger.dropped_rows == 0


def test_prediction_logger_keeps_rows_while_storage_fails(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from esteira.prediction_log import read_log
    from esteira.storage import LocalStorage
    from serving.prediction_logger import PredictionLogger

    storage = LocalStorage(tmp_path)
    real_put = storage.put_bytes
    failing = {"on": True}

    def put(key: str, data: bytes) -> None:
        if failing["on"]:
            raise ConnectionError("storage down")
        real_put(key, data)

    storage.put_bytes = put  # type: ignore[method-assign]
    logger = PredictionLogger(storage, "m", flush_rows=1000, flush_seconds=60)
    row = {"request_id": "r1", "served_at": datetime.now(UTC), "model_name": "m",
           "model_version": 1, "source": "online", "prediction": 1}  # fmt: skip
    logger.log([row])
    with pytest.raises(ConnectionError):
        logger.flush()
    assert logger.pending_rows == 1
    failing["on"] = False
    logger.close()
    assert read_log(storage, "m")["request_id"].tolist() == ["r1"]


def test_logged_rows_keep_order_types_nulls_and_constants() -> None:
    from datetime import UTC, datetime

    from serving.prediction_logger import Record, encode_rows, lines_to_table

    served = datetime(2025, 1, 10, 12, 30, tzinfo=UTC)
    records = [
        Record({"a": np.asarray([1.5]), "b": np.asarray(["x"], dtype=object)}, {"v": 1}, 1),
        Record({"a": np.asarray([2.0, 3.0]), "b": np.asarray(["y", "z"], dtype=object)}, {"v": 2}),
        Record({"a": [4.0]}, {"v": 3, "source": "batch"}),  # no b; a list, not an array
        Record({"a": np.asarray([5.0]), "b": np.asarray(["w"], dtype=object)}, {"v": 4}),
    ]
    for record in records:
        record.constants["served_at"] = served
    table = lines_to_table(b"".join(encode_rows(r) for r in records))
    assert sorted(table.column_names) == ["a", "b", "served_at", "source", "v"]
    frame = table.to_pandas()
    assert frame["a"].tolist() == [1.5, 2.0, 3.0, 4.0, 5.0]
    assert frame["b"].tolist() == ["x", "y", "z", None, "w"]
    assert frame["v"].tolist() == [1, 2, 2, 3, 4]
    assert frame["source"].tolist() == [None, None, None, "batch", None]
    assert (frame["served_at"] == pd.Timestamp(served)).all()
    assert str(table.schema.field("served_at").type) == "timestamp[us, tz=UTC]"


def test_a_column_changing_type_between_rows_is_still_logged() -> None:
    from datetime import UTC, datetime

    from serving.prediction_logger import Record, encode_rows, lines_to_table

    now = {"served_at": datetime.now(UTC)}
    lines = encode_rows(Record({"x": [1.0]}, now)) + encode_rows(Record({"x": ["one"]}, now))
    assert lines_to_table(lines).to_pandas()["x"].tolist() == ["1.0", "one"]
