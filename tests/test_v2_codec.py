"""serving/v2_codec.py in process: raw tensors checked, answers in the request's encoding,
the transformer's V2 signature from a contract."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import yaml
from kserve.errors import InvalidInput
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.infer_type import InferOutput, InferRequest, RequestedOutput

from esteira.contract import Contract, load_contract
from serving.v2_codec import (
    check_outputs,
    contract_signature,
    decode_raw,
    read_binary_request,
    respond,
    tensor_values,
)
from testkit.serving import ROOT


def _grpc_request(raw: bool, outputs: list[str] | None = None) -> InferRequest:
    message = pb.ModelInferRequest(model_name="m")
    tensor = message.inputs.add(name="x", datatype="FP64", shape=[2])
    if raw:
        message.raw_input_contents.append(struct.pack("<2d", 1.5, -2.0))
    else:
        tensor.contents.fp64_contents.extend([1.5, -2.0])
    for name in outputs or []:
        message.outputs.add(name=name)
    return InferRequest.from_grpc(message)


def _outputs() -> list[InferOutput]:
    return [
        InferOutput("prediction", [2], "INT64", data=[1, 0]),
        InferOutput("probability", [2], "FP64", data=[0.75, 0.125]),
    ]


def _answer(request: InferRequest) -> object:
    return respond(request, _outputs(), response_id="r", model_name="m", model_version="1")


# ---- inputs ------------------------------------------------------------------------------
def test_raw_and_typed_grpc_inputs_read_the_same_values() -> None:
    for raw in (True, False):
        assert tensor_values(_grpc_request(raw).inputs[0], "inputs['x']") == [1.5, -2.0]


@pytest.mark.parametrize(
    ("datatype", "values", "code"),
    [("INT64", [1, -(2**63)], "<2q"), ("FP32", [0.5, 2.0], "<2f"), ("UINT8", [0, 255], "<2B"),
     ("BOOL", [True, False], "<2?"), ("FP16", [0.5, -1.0], "<2e")],
)  # fmt: skip
def test_raw_values_of_every_numeric_datatype(datatype: str, values: list, code: str) -> None:
    assert decode_raw(struct.pack(code, *values), datatype, [2], "t") == values


@pytest.mark.parametrize("size", [0, 7, 9, 24])
def test_raw_bytes_that_do_not_fit_shape_and_datatype_are_invalid(size: int) -> None:
    with pytest.raises(InvalidInput, match=rf"t: raw contents hold {size} bytes; shape \[2\] of "
                       r"FP64 needs 16 \(2 x 8 bytes\)"):  # fmt: skip
        decode_raw(bytes(size), "FP64", [2], "t")


def test_raw_bytes_tensors_are_length_prefixed_and_checked() -> None:
    blob = struct.pack("<I", 3) + b"abc" + struct.pack("<I", 0)
    assert decode_raw(blob, "BYTES", [2], "t") == [b"abc", b""]
    with pytest.raises(InvalidInput, match="holds? 2 BYTES elements; shape \\[3\\] needs 3"):
        decode_raw(blob, "BYTES", [3], "t")
    with pytest.raises(InvalidInput, match="element 0 declares 9 bytes, only 3 remain"):
        decode_raw(struct.pack("<I", 9) + b"abc", "BYTES", [1], "t")
    with pytest.raises(InvalidInput, match="inside an element's 4-byte length"):
        decode_raw(blob + b"\x01", "BYTES", [3], "t")


@pytest.mark.parametrize("shape", [[-1], [1.5], [2**70, 0]])
def test_odd_shapes_and_datatypes_are_invalid(shape: list) -> None:
    with pytest.raises(InvalidInput):
        decode_raw(bytes(8), "FP64", shape, "t")
    with pytest.raises(InvalidInput, match="STRING is not a V2 datatype"):
        decode_raw(bytes(8), "STRING", [1], "t")


def test_rest_binary_body_keeps_raw_inputs_and_checks_sizes() -> None:
    head = {
        "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "parameters": {"binary_data_size": 16}},
            {"name": "b", "shape": [1], "datatype": "INT64", "data": [7]},
        ],
        "outputs": [{"name": "probability", "parameters": {"binary_data": True}}],
        "parameters": {"probabilities": True},
    }
    body = b"{...json...}" + struct.pack("<2d", 0.25, 4.0)
    request = read_binary_request(body, 12, head, "m")
    assert [tensor_values(t, t.name) for t in request.inputs] == [[0.25, 4.0], [7]]
    assert request.request_outputs[0].binary_data is True
    with pytest.raises(InvalidInput, match="16 bytes, but only 8 remain"):
        read_binary_request(body[:-8], 12, head, "m")
    with pytest.raises(InvalidInput, match="3 bytes follow the last binary input"):
        read_binary_request(body + b"xyz", 12, head, "m")
    head["inputs"][0]["parameters"]["binary_data_size"] = "16"
    with pytest.raises(InvalidInput, match=r"inputs\[0\] 'a'.parameters.binary_data_size"):
        read_binary_request(body, 12, head, "m")


# ---- outputs -----------------------------------------------------------------------------
def test_grpc_raw_inputs_get_raw_outputs_typed_get_typed() -> None:
    raw = _answer(_grpc_request(raw=True)).to_grpc()
    typed = _answer(_grpc_request(raw=False)).to_grpc()
    assert [np.frombuffer(b, "<i8" if i == 0 else "<f8").tolist()
            for i, b in enumerate(raw.raw_output_contents)] == [[1, 0], [0.75, 0.125]]  # fmt: skip
    assert not any(o.HasField("contents") for o in raw.outputs)
    assert typed.raw_output_contents == []
    assert list(typed.outputs[0].contents.int64_contents) == [1, 0]
    assert list(typed.outputs[1].contents.fp64_contents) == [0.75, 0.125]


def test_grpc_requested_outputs_are_the_ones_answered() -> None:
    answer = _answer(_grpc_request(raw=True, outputs=["probability"])).to_grpc()
    assert [o.name for o in answer.outputs] == ["probability"]
    assert len(answer.raw_output_contents) == 1


def _rest(parameters: dict | None, outputs: list[RequestedOutput] | None) -> InferRequest:
    return InferRequest("m", [], parameters=parameters, request_outputs=outputs)


def test_rest_outputs_are_json_unless_asked_binary() -> None:
    body, json_length = _answer(_rest(None, None)).to_rest()
    assert json_length is None and body["outputs"][1]["data"] == [0.75, 0.125]
    body, json_length = _answer(_rest({"binary_data_output": True}, None)).to_rest()
    assert body[json_length:] == struct.pack("<2q", 1, 0) + struct.pack("<2d", 0.75, 0.125)


def test_rest_binary_per_output_overrides_the_request_default() -> None:
    wanted = [
        RequestedOutput("probability"),  # takes binary_data_output
        RequestedOutput("prediction", {"binary_data": False}),
    ]
    body, json_length = _answer(_rest({"binary_data_output": True}, wanted)).to_rest()
    head = yaml.safe_load(body[:json_length])
    assert [o["name"] for o in head["outputs"]] == ["probability", "prediction"]
    assert head["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert head["outputs"][1]["data"] == [1, 0]
    assert body[json_length:] == struct.pack("<2d", 0.75, 0.125)


def test_rest_binary_flags_must_be_booleans_and_outputs_must_exist() -> None:
    with pytest.raises(InvalidInput, match="parameters.binary_data_output: expected true or"):
        _answer(_rest({"binary_data_output": "yes"}, None))
    with pytest.raises(InvalidInput, match=r"outputs\[0\].parameters.binary_data"):
        _answer(_rest(None, [RequestedOutput("prediction", {"binary_data": 1})]))
    with pytest.raises(InvalidInput, match=r"outputs\[1\].name: 'score' is not an output"):
        check_outputs(
            _rest(None, [RequestedOutput("prediction"), RequestedOutput("score")]),
            ["prediction", "probability"],
        )


# ---- metadata ----------------------------------------------------------------------------
def test_signature_comes_from_the_contract() -> None:
    inputs, outputs = contract_signature(
        load_contract(ROOT / "feature_repo" / "predictive_maintenance")
    )
    assert [(t["name"], t["datatype"], t["shape"]) for t in inputs] == [
        ("machine_id", "INT64", [-1]),
        ("volt_now", "FP64", [-1]),
        ("vibration_now", "FP64", [-1]),
    ]
    assert [t["name"] for t in outputs] == ["machine_id", "prediction", "probability"]


def test_another_use_case_lists_its_own_inputs() -> None:
    data = yaml.safe_load(
        (ROOT / "feature_repo" / "predictive_maintenance" / "dataset.yaml").read_text()
    )
    data["entity"] = "model"  # a string key
    data["unique"] = ["model", "timestamp"]
    data["request"] = {"age_now": "age", "pressure_now": "pressure"}
    inputs, outputs = contract_signature(Contract.model_validate(data))
    assert [(t["name"], t["datatype"]) for t in inputs] == [
        ("model", "BYTES"),
        ("age_now", "INT64"),
        ("pressure_now", "FP64"),
    ]
    assert outputs[0] == {"name": "model", "datatype": "BYTES", "shape": [-1]}
