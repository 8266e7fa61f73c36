"""Calls made with NVIDIA's ``tritonclient``, in a process of their own.

``python -m tests.triton_probe`` reads ``{"calls": [...]}`` as JSON on stdin and writes
one result per call as JSON on stdout. It runs apart from the tests because
``tritonclient.grpc`` and ``kserve`` both register the ``inference.*`` protobuf messages
and one process cannot import both. Tensors come back as hex of their raw little-endian
bytes, so a comparison is bit for bit.

A call is one of::

    {"op": "health", "url": "127.0.0.1:8080", "protocol": "http" | "grpc", "model": name}
    {"op": "metadata", "url": ..., "protocol": ..., "model": name}
    {"op": "infer", "url": ..., "protocol": ..., "model": name,
     "inputs": [{"name", "datatype", "values"}], "binary_inputs": bool,
     "outputs": [{"name", "binary_data"}] | null, "parameters": {...} | null}

An inference answers ``{"outputs": {name: {"datatype", "shape", "hex"}}, "response":
<HTTP JSON part or null>}``; a failed call ``{"error": {"message", "status"}}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

NUMPY = {"INT64": np.int64, "FP64": np.float64, "INT32": np.int32, "FP32": np.float32}


def _client(call: dict[str, Any]) -> Any:
    if call["protocol"] == "grpc":
        return tgrpc.InferenceServerClient(call["url"])
    return thttp.InferenceServerClient(call["url"], network_timeout=15.0)


def _array(values: list[Any], datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([str(v).encode() for v in values], dtype=np.object_)
    return np.array(values, dtype=NUMPY[datatype])


def health(call: dict[str, Any]) -> dict[str, Any]:
    client = _client(call)
    return {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(call["model"]),
    }


def metadata(call: dict[str, Any]) -> dict[str, Any]:
    client = _client(call)
    if call["protocol"] == "grpc":
        return client.get_model_metadata(call["model"], as_json=True)
    return client.get_model_metadata(call["model"])


def infer(call: dict[str, Any]) -> dict[str, Any]:
    grpc = call["protocol"] == "grpc"
    module = tgrpc if grpc else thttp
    inputs = []
    for spec in call["inputs"]:
        tensor = module.InferInput(spec["name"], [len(spec["values"])], spec["datatype"])
        array = _array(spec["values"], spec["datatype"])
        if grpc:
            tensor.set_data_from_numpy(array)
        else:
            tensor.set_data_from_numpy(array, binary_data=call.get("binary_inputs", False))
        inputs.append(tensor)
    outputs = None
    if call.get("outputs") is not None:
        outputs = [
            tgrpc.InferRequestedOutput(o["name"])
            if grpc
            else thttp.InferRequestedOutput(o["name"], binary_data=o.get("binary_data", True))
            for o in call["outputs"]
        ]
    result = _client(call).infer(
        call["model"], inputs, outputs=outputs, parameters=call.get("parameters")
    )
    response = result.get_response(as_json=True) if grpc else result.get_response()
    answer: dict[str, Any] = {}
    for output in response["outputs"]:
        array = result.as_numpy(output["name"])
        answer[output["name"]] = {
            "datatype": output["datatype"],
            "shape": [int(d) for d in output["shape"]],
            "hex": np.ascontiguousarray(array)
            .astype(array.dtype.newbyteorder("<"))
            .tobytes()
            .hex(),
        }
    return {"outputs": answer, "response": None if grpc else response}


def run(call: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"health": health, "metadata": metadata, "infer": infer}[call["op"]](call)
    except InferenceServerException as exc:
        return {"error": {"message": exc.message(), "status": str(exc.status())}}


def main() -> int:
    calls = json.load(sys.stdin)["calls"]
    json.dump([run(call) for call in calls], sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
