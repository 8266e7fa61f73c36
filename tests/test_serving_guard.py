"""Endpoints a stranger can't switch off (serving/guard.py), on real servers.

The model repository (load/unload) is refused over REST and gRPC and predictions keep
working; routes not served answer 404 with a message, never 501 (the transformer's routes
are checked in tests/test_fuzz.py, on its live pair); a predictor whose model cannot be
read is unready on every readiness endpoint (REST 503, gRPC ``ready: false``) and answers
predictions 503 / UNAVAILABLE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

from esteira.net import free_port
from testkit.serving import MODEL_NAME, ServerProcess, World, build_world, write_config


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("guard"))


@pytest.fixture(scope="module")
def unreadable_store(tmp_path_factory: pytest.TempPathFactory, world: World) -> Path:
    """A store whose production model.joblib is the real one, truncated."""
    from esteira.registry import MODEL_FILE, Registry
    from esteira.storage import LocalStorage

    root = tmp_path_factory.mktemp("unreadable")
    write_config(root)
    good = Registry(LocalStorage(world.settings.storage.root), MODEL_NAME)
    data = good.read_file("production", MODEL_FILE)
    bad = Registry(LocalStorage(root / "store"), MODEL_NAME)
    version = bad.register({MODEL_FILE: data[: len(data) // 3]}, world.metadata)
    bad.set_alias("production", version.version)
    return root


@pytest.fixture(scope="module")
def servers(world: World, unreadable_store: Path) -> Iterator[dict[str, Any]]:
    ports = {k: free_port() for k in ("p", "pg", "u", "ug")}
    config = ["--config", str(world.config_path)]
    predictor = ServerProcess(
        "predictor",
        [*config, "--http-port", str(ports["p"]), "--grpc-port", str(ports["pg"])],
        world.root / "guard-predictor.log",
    ).start()
    unready = ServerProcess(
        "predictor",
        ["--config", str(unreadable_store / "config.yaml"), "--http-port", str(ports["u"]),
         "--grpc-port", str(ports["ug"])],
        unreadable_store / "predictor.log",
    ).start()  # fmt: skip
    http = {k: f"http://127.0.0.1:{ports[k]}" for k in ("p", "u")}
    try:
        predictor.wait_http(f"{http['p']}/v2/health/ready", 400)
        unready.wait_http(f"{http['u']}/v2/health/live", 400)
        yield {
            "predictor": http["p"],
            "unready": http["u"],
            "grpc": {
                "predictor": f"127.0.0.1:{ports['pg']}",
                "unready": f"127.0.0.1:{ports['ug']}",
            },
        }
    finally:
        for process in (predictor, unready):
            process.stop()


def _predictor_v1(world: World) -> dict[str, Any]:
    return {"instances": world.rows(2)}


def _transformer_v1(world: World) -> dict[str, Any]:
    machine = world.machine_ids[0]
    return {"instances": [{"machine_id": machine, **world.request_values[machine]}]}


def _body(world: World, role: str) -> dict[str, Any]:
    return _transformer_v1(world) if role == "transformer" else _predictor_v1(world)


def _stub(address: str) -> tuple[grpc.Channel, Any]:
    channel = grpc.insecure_channel(address)
    return channel, pb_grpc.GRPCInferenceServiceStub(channel)


@pytest.mark.parametrize("role", ["predictor"])
def test_model_repository_is_refused_and_predictions_still_succeed(
    world: World, servers: dict, role: str
) -> None:
    base = servers[role]
    for action in ("unload", "load"):
        answer = httpx.post(f"{base}/v2/repository/models/{MODEL_NAME}/{action}", timeout=10)
        assert answer.status_code == 403, answer.text
        assert "serving.allow_model_repository" in answer.json()["error"]
    channel, stub = _stub(servers["grpc"][role])
    with channel:
        for call, request in (
            (stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=MODEL_NAME)),
            (stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=MODEL_NAME)),
        ):
            with pytest.raises(grpc.RpcError) as info:
                call(request, timeout=10)
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "serving.allow_model_repository" in info.value.details()
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready is True
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready is True
    assert httpx.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
    answer = httpx.post(
        f"{base}/v1/models/{MODEL_NAME}:predict", json=_body(world, role), timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"]


@pytest.mark.parametrize("role", ["predictor"])
@pytest.mark.parametrize(
    ("path", "hint"),
    [
        (f"/v1/models/{MODEL_NAME}:explain", f"/v1/models/{MODEL_NAME}:predict"),
        (f"/v2/models/{MODEL_NAME}/versions/1/infer", f"/v2/models/{MODEL_NAME}/infer"),
        (f"/v2/models/{MODEL_NAME}/versions/1/ready", f"/v2/models/{MODEL_NAME}/ready"),
        (f"/v2/models/{MODEL_NAME}/versions/1", f"/v2/models/{MODEL_NAME} "),
    ],
)
def test_routes_not_served_are_404_with_a_message(
    world: World, servers: dict, role: str, path: str, hint: str
) -> None:
    base = servers[role]
    if path.endswith(("infer", "explain")):
        answer = httpx.post(f"{base}{path}", json=_body(world, role), timeout=10)
    else:
        answer = httpx.get(f"{base}{path}", timeout=10)
    assert answer.status_code == 404, answer.text
    assert hint in answer.json()["error"] + " "


def test_unreadable_model_is_unready_everywhere_and_predictions_answer_503(
    world: World, servers: dict
) -> None:
    base = servers["unready"]
    for path in ("/v2/health/ready", f"/v1/models/{MODEL_NAME}", f"/v2/models/{MODEL_NAME}/ready"):
        answer = httpx.get(f"{base}{path}", timeout=10)
        assert answer.status_code == 503, (path, answer.text)
        assert "could not be loaded" in answer.json()["error"]
    assert httpx.get(f"{base}/v2/health/live", timeout=10).status_code == 200
    v1 = httpx.post(f"{base}/v1/models/{MODEL_NAME}:predict", json=_predictor_v1(world), timeout=10)
    assert v1.status_code == 503, v1.text
    row = world.rows(1)[0]
    inputs = [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64",
         "data": [v]}
        for k, v in row.items()
    ]  # fmt: skip
    v2 = httpx.post(f"{base}/v2/models/{MODEL_NAME}/infer", json={"inputs": inputs}, timeout=10)
    assert v2.status_code == 503, v2.text
    channel, stub = _stub(servers["grpc"]["unready"])
    with channel:
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready is False
        assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready is False
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live is True
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(pb.ModelInferRequest(model_name=MODEL_NAME), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_allowed_unload_makes_every_readiness_endpoint_unready(
    world: World, tmp_path: Path
) -> None:
    """Opted in, an unload works, and the server then says it is not ready (not 200)."""
    http, grpc_port = free_port(), free_port()
    server = ServerProcess(
        "predictor",
        ["--config", str(world.config_path), "--http-port", str(http),
         "--grpc-port", str(grpc_port)],
        tmp_path / "allowed.log",
        env={"ESTEIRA_SERVING__ALLOW_MODEL_REPOSITORY": "true"},
    ).start()  # fmt: skip
    base = f"http://127.0.0.1:{http}"
    try:
        server.wait_http(f"{base}/v2/health/ready", 400)
        answer = httpx.post(f"{base}/v2/repository/models/{MODEL_NAME}/unload", timeout=10)
        assert answer.status_code == 200, answer.text
        ready = httpx.get(f"{base}/v2/health/ready", timeout=10)
        assert ready.status_code == 503, ready.text
        assert "no model" in ready.json()["error"]
        assert httpx.get(f"{base}/v1/models/{MODEL_NAME}", timeout=10).status_code == 404
        channel, stub = _stub(f"127.0.0.1:{grpc_port}")
        with channel:
            assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready is False
            assert stub.ModelReady(pb.ModelReadyRequest(name=MODEL_NAME), timeout=10).ready is False
    finally:
        server.stop()
