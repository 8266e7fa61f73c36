"""Open Inference Protocol (V2) tensor encodings, shared by the predictor and the transformer.

A V2 tensor travels in one of two encodings:

- **typed**: JSON ``data`` (REST) or gRPC ``contents`` (``fp64_contents``, ...);
- **raw**: little-endian bytes, in gRPC ``raw_input_contents`` / ``raw_output_contents``
  or, over REST, after the JSON part of the body (the binary tensor extension: header
  ``Inference-Header-Content-Length``, per tensor ``parameters.binary_data_size``).
  ``BYTES`` elements are each a 4-byte little-endian length and the bytes.

Answers mirror the request, as KServe states in ``kserve.protocol.infer_type``
(``InferRequest.use_binary_outputs``) and Triton documents for the binary extension:

- gRPC: raw inputs get ``raw_output_contents``, typed inputs get typed ``contents``;
- REST: an output is binary when its ``outputs[i].parameters.binary_data`` says so, else
  when the request's ``parameters.binary_data_output`` does; otherwise JSON ``data``.
  A request naming ``outputs`` gets those outputs, in that order.

The answer is built as KServe's own :class:`InferResponse` (which writes either encoding);
this module decides the encoding, checks raw inputs against their shape and datatype
(``InvalidInput`` naming the tensor, never an unhandled error) and reads REST binary
bodies. It also turns the dataset contract into the transformer's V2 signature.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import (
    InferInput,
    InferOutput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    to_http_parameters,
)

from esteira.errors import brief

# V2 datatype -> little-endian numpy dtype of its raw encoding (BYTES is length-prefixed)
RAW_DTYPES: dict[str, np.dtype] = {
    name: np.dtype(code)
    for name, code in {
        "BOOL": "?", "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
        "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
        "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
    }.items()
}  # fmt: skip
# contract dtype (esteira.contract.DType) -> V2 datatype
CONTRACT_DATATYPES = {"int": "INT64", "float": "FP64", "string": "BYTES", "bool": "BOOL"}


# ---- inputs ------------------------------------------------------------------------------
def is_raw(tensor: Any) -> bool:
    """Whether ``tensor`` arrived raw (gRPC raw_input_contents or a REST binary part)."""
    return getattr(tensor, "_raw_data", None) is not None


def tensor_values(tensor: Any, where: str) -> list[Any]:
    """The values of an input tensor, flat, whichever encoding it came in; InvalidInput
    naming ``where`` when they do not fit its shape and datatype."""
    datatype = (tensor.datatype or "").upper()
    shape = list(tensor.shape or [])
    if is_raw(tensor):
        return decode_raw(tensor._raw_data, datatype, shape, where)
    try:
        return tensor.as_numpy().reshape(-1).tolist()
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"{where}.data: does not match datatype {datatype} and shape {shape} ({exc})"
        ) from None


def element_count(shape: list[Any], where: str) -> int:
    if not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(f"{where}.shape: {shape} must be non-negative integers")
    return math.prod(shape)


def decode_raw(raw: bytes, datatype: str, shape: list[Any], where: str) -> list[Any]:
    """Raw tensor bytes as a flat list, after checking their length against shape and datatype."""
    count = element_count(shape, where)
    if datatype == "BYTES":
        items = split_bytes(raw, where)
        if len(items) != count:
            raise InvalidInput(
                f"{where}: raw contents hold {len(items)} BYTES elements; shape {shape} needs "
                f"{count}"
            )
        return items
    dtype = RAW_DTYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(
            f"{where}.datatype: {datatype or 'missing'} is not a V2 datatype; use one of "
            f"{', '.join([*RAW_DTYPES, 'BYTES'])}"
        )
    need = count * dtype.itemsize
    if len(raw) != need:
        raise InvalidInput(
            f"{where}: raw contents hold {len(raw)} bytes; shape {shape} of {datatype} "
            f"needs {need} ({count} x {dtype.itemsize} bytes)"
        )
    return np.frombuffer(raw, dtype=dtype).tolist()


def split_bytes(raw: bytes, where: str) -> list[bytes]:
    """The elements of a raw BYTES tensor (each a 4-byte little-endian length, then bytes)."""
    items: list[bytes] = []
    offset, size = 0, len(raw)
    while offset < size:
        if offset + 4 > size:
            raise InvalidInput(
                f"{where}: raw BYTES contents end inside an element's 4-byte length "
                f"(at byte {offset} of {size})"
            )
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > size:
            raise InvalidInput(
                f"{where}: raw BYTES element {len(items)} declares {length} bytes, only "
                f"{size - offset} remain"
            )
        items.append(bytes(raw[offset : offset + length]))
        offset += length
    return items


def read_binary_request(
    body: bytes, json_length: int, head: dict[str, Any], model_name: str
) -> InferRequest:
    """A REST request in the binary tensor extension: ``head`` is its JSON part (already
    parsed and validated), the tensors' bytes follow it in input order. Raw inputs stay
    raw (checked when read, by :func:`tensor_values`)."""
    offset, size = json_length, len(body)
    inputs: list[InferInput] = []
    for j, spec in enumerate(head["inputs"]):
        name = spec["name"]
        parameters = dict(spec.get("parameters") or {})
        tensor = InferInput(name, spec["shape"], spec["datatype"], parameters=parameters)
        if "data" in spec:
            tensor.data = spec["data"]
        else:
            where = f"inputs[{j}] {name!r}.parameters.binary_data_size"
            length = parameters.get("binary_data_size")
            if type(length) is not int or length < 0:
                raise InvalidInput(
                    f"{where}: expected the byte length of the input's binary data, got "
                    f"{brief(length)}; send data or binary_data_size"
                )
            if offset + length > size:
                raise InvalidInput(
                    f"{where}: {length} bytes, but only {size - offset} remain in the body"
                )
            tensor._raw_data = body[offset : offset + length]
            offset += length
        inputs.append(tensor)
    if offset != size:
        raise InvalidInput(
            f"body: {size - offset} bytes follow the last binary input; the inputs' "
            "binary_data_size must add up to the body after the JSON part"
        )
    outputs = [
        RequestedOutput(o["name"], parameters=o.get("parameters"))
        for o in head.get("outputs") or []
    ]
    return InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=head.get("id"),
        parameters=head.get("parameters"),
        request_outputs=outputs or None,
    )


# ---- outputs -----------------------------------------------------------------------------
def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{where}: expected true or false, got {brief(value)}")
    return value


def _parameters(parameters: Any) -> dict[str, Any]:
    if not parameters:
        return {}
    return parameters if isinstance(parameters, dict) else to_http_parameters(parameters)


def requested_names(request: InferRequest) -> list[str] | None:
    """The outputs the request names (``outputs``), or None for all of them."""
    outputs = request.request_outputs or []
    return [o.name for o in outputs] or None


def check_outputs(request: InferRequest, names: list[str]) -> None:
    """InvalidInput unless every output the request names is one of ``names`` (checked
    before inference, so a typo costs no model call)."""
    for i, wanted in enumerate(request.request_outputs or []):
        if wanted.name not in names:
            raise InvalidInput(
                f"outputs[{i}].name: {wanted.name!r} is not an output of the model; "
                f"its outputs: {', '.join(names)}"
            )


def respond(
    request: InferRequest,
    outputs: list[InferOutput],
    *,
    response_id: str,
    model_name: str,
    model_version: str | None,
) -> InferResponse:
    """The answer to ``request`` with ``outputs`` (typed data), in the request's encoding."""
    available = {o.name: o for o in outputs}
    check_outputs(request, list(available))
    requested = request.request_outputs or []
    chosen: list[RequestedOutput] = []
    if request.from_grpc:
        # KServe's rule: raw inputs get raw outputs (parameters do not change it)
        raw = request.use_binary_outputs
        if requested:
            outputs = [available[o.name] for o in requested]
        return InferResponse(
            response_id=response_id,
            model_name=model_name,
            model_version=model_version,
            infer_outputs=outputs,
            use_binary_outputs=raw,
        )
    default = _flag(
        _parameters(request.parameters).get("binary_data_output", False),
        "parameters.binary_data_output",
    )
    for i, wanted in enumerate(requested):
        params = _parameters(wanted.parameters)
        binary = _flag(params.get("binary_data", default), f"outputs[{i}].parameters.binary_data")
        chosen.append(RequestedOutput(wanted.name, parameters={**params, "binary_data": binary}))
    return InferResponse(
        response_id=response_id,
        model_name=model_name,
        model_version=model_version,
        infer_outputs=outputs,
        use_binary_outputs=default,
        requested_outputs=chosen or None,
    )


# ---- metadata ----------------------------------------------------------------------------
def tensor_spec(name: str, datatype: str) -> dict[str, Any]:
    """A V2 metadata tensor: one value per row, any number of rows."""
    return {"name": name, "datatype": datatype, "shape": [-1]}


def contract_signature(contract: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The transformer's V2 inputs and outputs, from the dataset contract: the join keys and
    the request-time values (with their raw column's datatype) in; the join keys and the
    prediction out (the class and its probability for a classification, a value for a
    regression)."""

    def datatype(column: str) -> str:
        return CONTRACT_DATATYPES.get(contract.columns[column].dtype, "BYTES")

    keys = [tensor_spec(key, datatype(key)) for key in contract.keys]
    inputs = keys + [
        tensor_spec(n, "BYTES" if n in contract.text_requests else datatype(column))
        for n, column in contract.request.items()
    ]
    if contract.task == "classification":
        answer = [tensor_spec("prediction", "INT64"), tensor_spec("probability", "FP64")]
    else:
        answer = [tensor_spec("prediction", "FP64")]
    return inputs, keys + answer
