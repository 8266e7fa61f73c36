"""Open Inference Protocol interop: NVIDIA's ``tritonclient`` (HTTP JSON, HTTP binary, gRPC)
against the predictor and the transformer, next to ``esteira predict``'s own clients.

tritonclient sends gRPC tensors as ``raw_input_contents`` and reads only
``raw_output_contents``; over HTTP it asks for binary outputs unless told otherwise.
One world of 64 machines (so machines 1, 17 and 63 exist) and one predictor +
transformer pair, both with gRPC, per module.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from esteira.contract import load_contract
from esteira.net import free_port
from esteira_cli.commands import predict as esteira_predict
from testkit.serving import MODEL_NAME, ROOT, ServerProcess, World, build_world

MACHINES = [1, 17, 63]
ENCODINGS = ("grpc", "http-binary", "http-json")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("interop"), machines=64)


@pytest.fixture(scope="module")
def servers(world: World) -> Iterator[dict[str, str]]:
    ports = {k: free_port() for k in ("p_http", "p_grpc", "t_http", "t_grpc")}
    config = ["--config", str(world.config_path)]
    predictor = ServerProcess(
        "predictor",
        [*config, "--http-port", str(ports["p_http"]), "--grpc-port", str(ports["p_grpc"])],
        world.root / "predictor.log",
    ).start()
    transformer = ServerProcess(
        "transformer",
        [*config, "--http-port", str(ports["t_http"]), "--grpc-port", str(ports["t_grpc"]),
         "--predictor-host", f"127.0.0.1:{ports['p_http']}"],
        world.root / "transformer.log",
    ).start()  # fmt: skip
    try:
        predictor.wait_http(f"http://127.0.0.1:{ports['p_http']}/v2/health/ready", 300)
        transformer.wait_http(f"http://127.0.0.1:{ports['t_http']}/v2/health/ready", 300)
        yield {k: f"127.0.0.1:{v}" for k, v in ports.items()}
    finally:
        transformer.stop()
        predictor.stop()


def triton(*calls: dict[str, Any]) -> list[dict[str, Any]]:
    """Results of tritonclient calls (see tests/triton_probe.py: tritonclient.grpc cannot
    share a process with kserve)."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.triton_probe"],
        input=json.dumps({"calls": list(calls)}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def _url(servers: dict[str, str], role: str, protocol: str) -> str:
    return servers[("p_" if role == "predictor" else "t_") + protocol]


def _datatype(value: Any) -> str:
    if isinstance(value, str):
        return "BYTES"
    return "INT64" if isinstance(value, int) else "FP64"


def _array(values: list[Any], datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([v.encode() for v in values], dtype=np.object_)
    return np.array(values, dtype=np.int64 if datatype == "INT64" else np.float64)


def infer_call(
    servers: dict[str, str],
    role: str,
    encoding: str,
    columns: dict[str, list[Any]],
    datatypes: dict[str, str],
    outputs: tuple[str, ...] | None = ("prediction", "probability"),
) -> dict[str, Any]:
    """A tritonclient inference in ``encoding`` (grpc, http-binary or http-json)."""
    protocol = "grpc" if encoding == "grpc" else "http"
    binary = encoding != "http-json"
    return {
        "op": "infer",
        "url": _url(servers, role, protocol),
        "protocol": protocol,
        "model": MODEL_NAME,
        "inputs": [{"name": n, "datatype": datatypes[n], "values": v} for n, v in columns.items()],
        "binary_inputs": binary,
        "outputs": None
        if outputs is None
        else [{"name": n, "binary_data": binary} for n in outputs],
        "parameters": {"probabilities": True} if role == "predictor" else None,
    }


def tensors(result: dict[str, Any]) -> dict[str, np.ndarray]:
    """The outputs of an inference result as numpy arrays (from their raw bytes)."""
    assert "error" not in result, result
    arrays = {}
    for name, out in result["outputs"].items():
        dtype = np.dtype("<i8") if out["datatype"] == "INT64" else np.dtype("<f8")
        arrays[name] = np.frombuffer(bytes.fromhex(out["hex"]), dtype=dtype)
    return arrays


def _transformer_columns(world: World, ids: list[int]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {"machine_id": ids}
    for field in world.request_values[ids[0]]:
        columns[field] = [world.request_values[i][field] for i in ids]
    return columns


def _transformer_datatypes(world: World) -> dict[str, str]:
    return {"machine_id": "INT64", **{f: "FP64" for f in world.request_values[1]}}


def _predictor_columns(world: World, ids: list[int]) -> tuple[dict[str, list], dict[str, str]]:
    """The online features the transformer would read for ``ids``, as predictor inputs."""
    from esteira.online import OnlineFeatures

    online = OnlineFeatures(world.settings)
    values = {f: [world.request_values[i][f] for i in ids] for f in world.request_values[ids[0]]}
    features = online.lookup(ids, values)
    columns = {n: list(features[n]) for n in online.feature_names}
    return columns, {n: _datatype(v[0]) for n, v in columns.items()}


def _esteira_predict(world: World, servers: dict[str, str], machine: int) -> dict[str, tuple]:
    """What ``esteira predict --protocol all`` reads for ``machine`` (its own clients)."""
    t_http, t_grpc = servers["t_http"], servers["t_grpc"]
    values = world.request_values[machine]
    info = {
        "model_name": MODEL_NAME,
        "transformer": {
            "v1": f"http://{t_http}/v1/models/{MODEL_NAME}:predict",
            "v2": f"http://{t_http}/v2/models/{MODEL_NAME}/infer",
            "grpc": t_grpc,
        },
    }
    inputs = [{"name": "machine_id", "shape": [1], "datatype": "INT64", "data": [machine]}]
    inputs += [
        {"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in values.items()
    ]
    sample = {
        "entity": {"machine_id": machine},
        "v1": {"instances": [{"machine_id": machine, **values}]},
        "v2": {"inputs": inputs},
    }
    return {
        "v1": esteira_predict.via_v1(info, sample),
        "v2": esteira_predict.via_v2(info, sample),
        "grpc": esteira_predict.via_grpc(info, sample),  # kserve's typed client
    }


# ---- health and metadata -----------------------------------------------------------------
def test_health_over_http_and_grpc(servers: dict[str, str]) -> None:
    calls = [
        {"op": "health", "url": _url(servers, role, protocol), "protocol": protocol,
         "model": MODEL_NAME}
        for role in ("predictor", "transformer")
        for protocol in ("http", "grpc")
    ]  # fmt: skip
    for result in triton(*calls):
        assert result == {"live": True, "ready": True, "model_ready": True}


def _metadata(servers: dict[str, str], role: str) -> list[dict[str, Any]]:
    calls = [
        {"op": "metadata", "url": _url(servers, role, p), "protocol": p, "model": MODEL_NAME}
        for p in ("http", "grpc")
    ]
    return triton(*calls)


def _tensors(specs: list[dict[str, Any]]) -> list[tuple[str, str, list[int]]]:
    return [(s["name"], s["datatype"], [int(d) for d in s["shape"]]) for s in specs]


def test_transformer_metadata_lists_the_contract_inputs_and_outputs(
    world: World, servers: dict[str, str]
) -> None:
    contract = load_contract(world.settings.features.repo_path)
    expected_inputs = [(contract.entity, "INT64", [-1])]
    expected_inputs += [(name, "FP64", [-1]) for name in contract.request]
    for metadata in _metadata(servers, "transformer"):  # REST, then gRPC
        inputs = _tensors(metadata["inputs"])
        assert inputs == expected_inputs
        assert [name for name, _, _ in inputs] == ["machine_id", "volt_now", "vibration_now"]
        assert _tensors(metadata["outputs"]) == [
            ("machine_id", "INT64", [-1]),
            ("prediction", "INT64", [-1]),
            ("probability", "FP64", [-1]),
        ]


def test_predictor_metadata_lists_features_and_outputs(
    world: World, servers: dict[str, str]
) -> None:
    for metadata in _metadata(servers, "predictor"):
        assert [s["name"] for s in metadata["inputs"]] == world.feature_names
        assert _tensors(metadata["outputs"]) == [
            ("prediction", "INT64", [-1]),
            ("probability", "FP64", [-1]),
        ]


# ---- inference ---------------------------------------------------------------------------
def test_machines_give_identical_answers_on_every_encoding_and_server(
    world: World, servers: dict[str, str]
) -> None:
    datatypes = _transformer_datatypes(world)
    calls, keys = [], []
    for machine in MACHINES:
        columns, feature_types = _predictor_columns(world, [machine])
        for encoding in ENCODINGS:
            t_columns = _transformer_columns(world, [machine])
            calls.append(infer_call(servers, "transformer", encoding, t_columns, datatypes))
            calls.append(infer_call(servers, "predictor", encoding, columns, feature_types))
            keys += [(machine, encoding, "transformer"), (machine, encoding, "predictor")]
    results = dict(zip(keys, triton(*calls), strict=True))
    for machine in MACHINES:
        ours = _esteira_predict(world, servers, machine)
        assert len(set(ours.values())) == 1, ours
        label, probability = ours["v1"]
        for encoding in ENCODINGS:
            for role in ("transformer", "predictor"):
                answer = tensors(results[machine, encoding, role])
                where = (machine, encoding, role)
                assert answer["prediction"].tolist() == [label], where
                # bit-identical: the same float64, not merely close
                assert answer["probability"].tobytes() == np.float64(probability).tobytes(), where


def test_hundred_rows_are_identical_across_encodings(world: World, servers: dict[str, str]) -> None:
    ids = [1 + i % len(world.machine_ids) for i in range(100)]
    columns, feature_types = _predictor_columns(world, ids)
    t_columns, t_types = _transformer_columns(world, ids), _transformer_datatypes(world)
    keys = [(r, e) for r in ("transformer", "predictor") for e in ENCODINGS]
    calls = [
        infer_call(servers, "transformer", e, t_columns, t_types)
        if r == "transformer"
        else infer_call(servers, "predictor", e, columns, feature_types)
        for r, e in keys
    ]
    answers = {k: tensors(r) for k, r in zip(keys, triton(*calls), strict=True)}
    first = answers["predictor", "http-json"]
    assert first["probability"].shape == (100,)
    for key, answer in answers.items():
        assert answer["prediction"].tobytes() == first["prediction"].tobytes(), key
        assert answer["probability"].tobytes() == first["probability"].tobytes(), key
    expected = [_esteira_predict(world, servers, i)["v1"][1] for i in ids[:3]]
    assert first["probability"][:3].tolist() == expected


def test_transformer_entity_output_and_all_outputs_by_default(
    world: World, servers: dict[str, str]
) -> None:
    columns, types = _transformer_columns(world, MACHINES), _transformer_datatypes(world)
    results = triton(
        *(infer_call(servers, "transformer", e, columns, types, outputs=None) for e in ENCODINGS)
    )
    for result in results:
        answer = tensors(result)
        assert list(answer) == ["machine_id", "prediction", "probability"]
        assert answer["machine_id"].tolist() == MACHINES


def test_http_binary_and_json_outputs_mix_per_output(world: World, servers: dict[str, str]) -> None:
    columns, types = _transformer_columns(world, MACHINES), _transformer_datatypes(world)
    mixed = infer_call(servers, "transformer", "http-json", columns, types)
    mixed["outputs"] = [
        {"name": "probability", "binary_data": True},
        {"name": "prediction", "binary_data": False},
    ]
    result, reference = triton(mixed, infer_call(servers, "transformer", "grpc", columns, types))
    by_name = {o["name"]: o for o in result["response"]["outputs"]}
    assert list(by_name) == ["probability", "prediction"]  # the requested ones, in order
    assert "data" not in by_name["probability"]
    assert by_name["probability"]["parameters"]["binary_data_size"] == 3 * 8
    assert by_name["prediction"]["data"] == tensors(result)["prediction"].tolist()
    assert tensors(result)["probability"].tobytes() == tensors(reference)["probability"].tobytes()


# ---- the gRPC answer mirrors the request's encoding --------------------------------------
def _grpc_request(columns: dict[str, list[Any]], datatypes: dict[str, str], raw: bool) -> Any:
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    request.parameters["probabilities"].bool_param = True
    for name, values in columns.items():
        tensor = request.inputs.add(name=name, datatype=datatypes[name], shape=[len(values)])
        if raw:
            array = _array(values, datatypes[name])
            if datatypes[name] == "BYTES":
                blob = b"".join(len(v).to_bytes(4, "little") + v for v in array.tolist())
            else:
                blob = array.astype(array.dtype.newbyteorder("<")).tobytes()
            request.raw_input_contents.append(blob)
        elif datatypes[name] == "BYTES":
            tensor.contents.bytes_contents.extend(v.encode() for v in values)
        elif datatypes[name] == "INT64":
            tensor.contents.int64_contents.extend(values)
        else:
            tensor.contents.fp64_contents.extend(values)
    return request


@pytest.mark.parametrize("role", ["predictor", "transformer"])
def test_grpc_raw_inputs_get_raw_outputs_and_typed_get_typed(
    world: World, servers: dict[str, str], role: str
) -> None:
    if role == "predictor":
        columns, datatypes = _predictor_columns(world, MACHINES)
        address = servers["p_grpc"]
    else:
        columns, datatypes = _transformer_columns(world, MACHINES), _transformer_datatypes(world)
        address = servers["t_grpc"]
    with grpc.insecure_channel(address) as channel:
        stub = GRPCInferenceServiceStub(channel)
        raw = stub.ModelInfer(_grpc_request(columns, datatypes, raw=True), timeout=15)
        typed = stub.ModelInfer(_grpc_request(columns, datatypes, raw=False), timeout=15)
    assert len(raw.raw_output_contents) == len(raw.outputs) >= 2
    assert all(not o.HasField("contents") for o in raw.outputs)
    assert len(typed.raw_output_contents) == 0
    decoded = {}
    for output, blob in zip(raw.outputs, raw.raw_output_contents, strict=True):
        dtype = np.int64 if output.datatype == "INT64" else np.float64
        decoded[output.name] = np.frombuffer(blob, dtype=dtype).tolist()
    for output in typed.outputs:
        contents = output.contents
        values = contents.int64_contents if output.datatype == "INT64" else contents.fp64_contents
        assert list(values) == decoded[output.name], output.name


# ---- errors carry the server's message ---------------------------------------------------
def test_errors_reach_the_client_with_the_servers_message(
    world: World, servers: dict[str, str]
) -> None:
    unknown = _transformer_columns(world, [1])
    unknown["machine_id"] = [987654]
    columns, datatypes = _predictor_columns(world, [1])
    name = next(n for n, t in datatypes.items() if t == "BYTES")  # the categorical feature
    wrong = {**columns, name: [3]}
    wrong_types = {**datatypes, name: "INT64"}
    calls = [
        infer_call(servers, "transformer", e, unknown, _transformer_datatypes(world))
        for e in ENCODINGS
    ]
    calls += [infer_call(servers, "predictor", e, wrong, wrong_types) for e in ENCODINGS]
    results = triton(*calls)
    for encoding, result in zip(ENCODINGS, results[:3], strict=True):
        assert "987654" in result["error"]["message"], result
        status = "StatusCode.NOT_FOUND" if encoding == "grpc" else "404"
        assert result["error"]["status"] == status
    for encoding, result in zip(ENCODINGS, results[3:], strict=True):
        assert f"inputs[{name!r}].datatype: INT64" in result["error"]["message"], result
        status = "StatusCode.INVALID_ARGUMENT" if encoding == "grpc" else "400"
        assert result["error"]["status"] == status


def test_unknown_requested_output_is_a_client_error(world: World, servers: dict[str, str]) -> None:
    columns, types = _transformer_columns(world, [1]), _transformer_datatypes(world)
    calls = [infer_call(servers, "transformer", e, columns, types, ("score",)) for e in ENCODINGS]
    for encoding, result in zip(ENCODINGS, triton(*calls), strict=True):
        assert "outputs[0].name: 'score' is not an output" in result["error"]["message"]
        status = "StatusCode.INVALID_ARGUMENT" if encoding == "grpc" else "400"
        assert result["error"]["status"] == status
