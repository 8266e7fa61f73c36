"""Fuzzing, the fast subset: the generators of ``testkit.fuzz`` against a live predictor and
transformer (a few hundred requests), plus regression tests for what the full run found.

One world and one predictor + transformer pair per module, with a 1 MiB body limit so
that the oversized bodies are cheap. ``make fuzz`` runs the full campaign.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.fuzz import (
    BINARY_HEADER,
    ROUTES,
    Endpoint,
    MiB,
    Schema,
    Servers,
    answer_problem,
    failures,
    fuzz,
    grpc_messages,
    log_findings,
    mutate,
    pack_tensor,
    paths,
    start_servers,
)
from testkit.serving import World, build_world

REQUESTS = 400


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture(scope="module")
def schema(world: World) -> Schema:
    return Schema.from_world(world)


@pytest.fixture(scope="module")
def servers(world: World) -> Iterator[Servers]:
    with start_servers(world, world.root, ["--max-body-bytes", str(MiB)]) as pair:
        yield pair


def _post(url: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = headers or {"content-type": "application/json"}
    return httpx.post(url, content=content, headers=headers, timeout=15)


def _v1(server: Any, schema: Schema) -> str:
    return f"{server.url}/v1/models/{schema.model_name}:predict"


def _v2(server: Any, schema: Schema) -> str:
    return f"{server.url}/v2/models/{schema.model_name}/infer"


def _v2_inputs(schema: Schema, **override: Any) -> list[dict[str, Any]]:
    row = schema.rows[0]
    return [
        {"name": f, "shape": [1], "datatype": schema.datatype(f), "data": [override.get(f, row[f])]}
        for f in schema.features
    ]


def _transformer_v2(schema: Schema, machine_id: Any = None, **values: Any) -> dict[str, Any]:
    ident = schema.machine_ids[0] if machine_id is None else machine_id
    inputs = [{"name": "machine_id", "shape": [1], "datatype": "INT64", "data": [ident]}]
    inputs += [
        {"name": f, "shape": [1], "datatype": "FP64", "data": [values.get(f, 1.0)]}
        for f in schema.fields
    ]
    return {"inputs": inputs}


def _assert_client_error(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    assert all(w in message for w in words), message


# ---- the generators against the servers ------------------------------------------------
def test_generated_requests_get_2xx_or_4xx_with_a_message(servers: Servers, schema: Schema):
    summary = fuzz(servers, schema, REQUESTS, seed_value=1, max_seconds=45, oversized_limit=MiB)

    assert summary["requests_sent"] >= REQUESTS
    assert set(summary["by_server"]) == {"predictor", "transformer"}
    assert {"predictor.grpc", "transformer.grpc"} <= set(summary["by_endpoint"])
    assert summary["by_generator"]["grpc_valid"].get("2xx", 0) > 0
    assert summary["five_xx"] == 0, summary["five_xx_examples"]
    assert summary["bad_answers"] == 0, summary["bad_answer_examples"]
    assert summary["unanswered"] == 0, summary["unanswered_examples"]
    assert summary["valid_rejected"] == 0, summary["valid_rejected_examples"]
    assert summary["crashes"] == 0, summary["crash_details"]
    assert all(summary["servers_alive_at_end"].values())
    assert [o["status"] for o in summary["oversized"]] == [413, 413, 413]
    routes = {
        k: v
        for k, v in summary["by_endpoint"].items()
        if k.split(".")[1] not in ("v1", "v2", "grpc")
    }
    assert routes, "no request went to the repository, explain or versioned routes"
    assert all(set(counts) == {"4xx"} for counts in routes.values()), routes
    assert failures(summary) == []


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.key)
def test_routes_nobody_may_use_are_4xx_with_a_message(
    servers: Servers, schema: Schema, route: Endpoint
) -> None:
    url = servers.by_role(route.server).url + route.path(schema.model_name)
    answer = _post(url, b"{}")
    assert answer.status_code == (403 if route.protocol in ("load", "unload") else 404)
    assert answer_problem(answer.status_code, answer.content) is None, answer.text
    assert servers.by_role(route.server).ready() is None  # still serving


# ---- regressions: each was a 500 (or a poisoned prediction log) before the fix ----------
@pytest.mark.parametrize("value", [3.5e38, 2**63, -1e19])
def test_transformer_rejects_machine_ids_beyond_int64(servers: Servers, schema: Schema, value):
    # was 500 "ValueError: Value out of range" from Feast's entity-key serialisation
    instance = {"machine_id": value, **dict.fromkeys(schema.fields, 1.0)}
    response = _post(_v1(servers.transformer, schema), {"instances": [instance]})
    _assert_client_error(response, "instances[0].machine_id", "64-bit")


def test_transformer_rejects_numbers_too_large_for_a_float(servers: Servers, schema: Schema):
    body = _transformer_v2(schema, **{schema.fields[0]: 10**400})
    response = _post(_v2(servers.transformer, schema), body)
    _assert_client_error(response, schema.fields[0])


@pytest.mark.parametrize("value", [2**63, 1e30, -1e300])
def test_predictor_rejects_integer_features_beyond_int64(servers: Servers, schema: Schema, value):
    # was 500 "OverflowError: Python int too large to convert to C long"
    name = next(f for f in schema.features if schema.kinds[f] == "int")
    row = {**schema.rows[0], name: value}
    _assert_client_error(_post(_v1(servers.predictor, schema), {"instances": [row]}), name)
    body = {"inputs": _v2_inputs(schema, **{name: value})}
    _assert_client_error(_post(_v2(servers.predictor, schema), body), name)


def test_predictor_rejects_numbers_too_large_for_a_float(servers: Servers, schema: Schema):
    name = next(f for f in schema.features if schema.kinds[f] == "float")
    body = {"inputs": _v2_inputs(schema, **{name: 10**400})}
    _assert_client_error(_post(_v2(servers.predictor, schema), body), name, "finite")


def test_predictor_refuses_what_the_prediction_log_cannot_store(servers: Servers, schema: Schema):
    """Huge machine ids and lone surrogates were answered 200, then every flush of the
    prediction log failed (OverflowError / UnicodeEncodeError) and retried forever."""
    category = next(f for f in schema.features if schema.kinds[f] == "category")
    big_ids = {"instances": [schema.rows[0]], "parameters": {"machine_ids": "9" * 25}}
    _assert_client_error(_post(_v1(servers.predictor, schema), big_ids), "machine_ids")
    surrogate = {"inputs": _v2_inputs(schema, **{category: "\ud800"})}
    _assert_client_error(_post(_v2(servers.predictor, schema), surrogate), category, "surrogate")
    bad_id = {"id": "\udc00", "inputs": _v2_inputs(schema)}
    _assert_client_error(_post(_v2(servers.predictor, schema), bad_id), "id")
    ok = _post(_v1(servers.predictor, schema), {"instances": [schema.rows[0]]})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("length", "body"),
    [("abc", b"{}"), ("1e3", b'{"inputs": []}'), ("-1", b"{}"), ("99", b"{}"), ("2", b"{}"),
     ("2", b"[]"), ("15", b'{"inputs": [1]}'), ("11", b'{"inputs":7}')],
)  # fmt: skip
def test_binary_extension_garbage_is_a_400(servers: Servers, schema: Schema, length, body):
    # was 500: int() of the header, then KeyError/TypeError inside KServe's from_bytes
    headers = {"content-type": "application/octet-stream", BINARY_HEADER: length}
    for server in servers:
        response = _post(_v2(server, schema), body, headers)
        assert response.status_code == 400, (server.role, response.text)
        assert response.json()["error"]


def test_binary_extension_tensor_that_does_not_match_its_size_is_a_400(
    servers: Servers, schema: Schema
):
    inputs = _v2_inputs(schema)
    inputs[0].pop("data")
    inputs[0]["parameters"] = {"binary_data_size": 3}  # 3 bytes cannot hold one FP64
    head = json.dumps({"inputs": inputs}).encode()
    headers = {"content-type": "application/octet-stream", BINARY_HEADER: str(len(head))}
    response = _post(_v2(servers.predictor, schema), head + b"\x00\x00\x00", headers)
    assert response.status_code == 400, response.text


def test_binary_extension_valid_request_is_answered(servers: Servers, schema: Schema):
    inputs = _v2_inputs(schema)
    raw = b""
    for tensor in inputs[:3]:
        data = pack_tensor(tensor["datatype"], tensor.pop("data"))
        tensor["parameters"] = {"binary_data_size": len(data)}
        raw += data
    head = json.dumps({"inputs": inputs}).encode()
    headers = {"content-type": "application/octet-stream", BINARY_HEADER: str(len(head))}
    response = _post(_v2(servers.predictor, schema), head + raw, headers)
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["name"] == "prediction"


# ---- gRPC raw tensors (tritonclient's encoding) -----------------------------------------
def _grpc_request(schema: Schema, server: str, raw: bool = True) -> Any:
    pb = grpc_messages()
    request = pb.ModelInferRequest(model_name=schema.model_name)
    if server == "predictor":
        inputs = _v2_inputs(schema)
        request.parameters["probabilities"].bool_param = True
    else:
        inputs = _transformer_v2(schema)["inputs"]
    for spec in inputs:
        tensor = request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=[1])
        if raw:
            request.raw_input_contents.append(pack_tensor(spec["datatype"], spec["data"]))
        elif spec["datatype"] == "BYTES":
            tensor.contents.bytes_contents.append(str(spec["data"][0]).encode())
        elif spec["datatype"] == "INT64":
            tensor.contents.int64_contents.append(spec["data"][0])
        else:
            tensor.contents.fp64_contents.append(spec["data"][0])
    return request


def _model_infer(server: Any, request: Any) -> Any:
    import grpc
    from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

    with grpc.insecure_channel(server.grpc_address) as channel:
        return GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=15)


def _grpc_error(server: Any, request: Any) -> Any:
    import grpc

    with pytest.raises(grpc.RpcError) as info:
        _model_infer(server, request)
    return info.value


@pytest.mark.parametrize("role", ["predictor", "transformer"])
def test_grpc_raw_request_gets_raw_answer_typed_gets_typed(
    servers: Servers, schema: Schema, role: str
):
    server = servers.by_role(role)
    raw = _model_infer(server, _grpc_request(schema, role, raw=True))
    typed = _model_infer(server, _grpc_request(schema, role, raw=False))
    assert len(raw.raw_output_contents) == len(raw.outputs) > 0
    assert not any(o.HasField("contents") for o in raw.outputs)
    assert len(typed.raw_output_contents) == 0
    assert all(o.HasField("contents") for o in typed.outputs)


@pytest.mark.parametrize("role", ["predictor", "transformer"])
@pytest.mark.parametrize("change", [-3, -1, 1, 8])
def test_grpc_raw_contents_of_the_wrong_length_are_invalid_argument(
    servers: Servers, schema: Schema, role: str, change: int
):
    import grpc

    request = _grpc_request(schema, role)
    i = next(j for j, t in enumerate(request.inputs) if t.datatype != "BYTES")
    blob = bytes(request.raw_input_contents[i])
    request.raw_input_contents[i] = blob[:change] if change < 0 else blob + bytes(change)
    error = _grpc_error(servers.by_role(role), request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    name = request.inputs[i].name
    assert f"inputs[{name!r}]: raw contents hold {len(blob) + change} bytes" in error.details()
    assert "needs 8" in error.details()


def test_grpc_raw_bytes_with_a_corrupt_length_prefix_is_invalid_argument(
    servers: Servers, schema: Schema
):
    import grpc

    request = _grpc_request(schema, "predictor")
    i = next(j for j, t in enumerate(request.inputs) if t.datatype == "BYTES")
    request.raw_input_contents[i] = b"\xff\xff\xff\x7f" + b"model3"
    error = _grpc_error(servers.predictor, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw BYTES element 0 declares 2147483647 bytes" in error.details()


@pytest.mark.parametrize("role", ["predictor", "transformer"])
def test_grpc_raw_contents_for_fewer_inputs_or_with_typed_contents_are_invalid(
    servers: Servers, schema: Schema, role: str
):
    import grpc

    fewer = _grpc_request(schema, role)
    del fewer.raw_input_contents[-1]
    both = _grpc_request(schema, role)
    both.inputs[0].contents.fp64_contents.append(1.0)
    for request, words in ((fewer, "raw input contents"), (both, "contents field")):
        error = _grpc_error(servers.by_role(role), request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in error.details()


def test_logs_show_no_unexpected_tracebacks_nor_log_write_failures(servers: Servers):
    # runs last in the module: covers every request the tests above sent
    for role, found in log_findings(servers).items():
        assert found["unexpected_tracebacks"] == [], role
        assert found["prediction_log_failures"] == 0, role


# ---- the harness itself ------------------------------------------------------------------
def test_answer_contract() -> None:
    assert answer_problem(200, b'{"predictions": [1]}') is None
    assert answer_problem(200, b"[1]") == "2xx without a JSON object"
    assert answer_problem(400, b'{"error": "instances: missing"}') is None
    assert answer_problem(404, b"Not Found") is None
    assert answer_problem(400, b'{"error": ""}') == "400 without a message"
    assert answer_problem(422, b"") == "422 without a message"
    assert answer_problem(500, b"boom") is None  # counted as 5xx, not as a bad answer
    assert answer_problem(302, b"") == "unexpected status 302"


def test_mutations_change_one_place_and_leave_the_original_alone(tmp_path: Path) -> None:
    base = {"instances": [{"a": 1, "b": [2, 3]}], "parameters": {"probabilities": True}}
    every = list(paths(base))
    assert () in every and ("instances", 0, "b", 1) in every
    changed = mutate(base, ("instances", 0, "a"), "replace", float("nan"), "k")
    assert changed["instances"][0]["a"] != changed["instances"][0]["a"]  # NaN
    assert mutate(base, ("parameters",), "delete", None, "k") == {"instances": base["instances"]}
    assert (
        mutate(base, ("instances", 0, "b"), "stringify", None, "k")["instances"][0]["b"] == "[2, 3]"
    )
    assert base == {"instances": [{"a": 1, "b": [2, 3]}], "parameters": {"probabilities": True}}


# found by `make fuzz` (12,000 requests) after the interop and lockdown work
@pytest.mark.parametrize("role", ["predictor", "transformer"])
def test_a_cloudevent_without_data_is_400(servers: Servers, schema: Schema, role: str):
    # was 500 "'NoneType' object has no attribute 'decode'": KServe reads the missing data as None
    ce = {"ce-type": "t", "ce-source": "s", "ce-id": "1", "ce-specversion": "1.0"}
    response = _post(
        _v1(servers.by_role(role), schema), b"", {"content-type": "application/json", **ce}
    )
    _assert_client_error(response, "body", "empty")


def test_a_lone_surrogate_quoted_in_an_error_is_escaped_not_a_500(servers: Servers, schema: Schema):
    # was 500 (or a reset connection): the 400's message quoted the datatype, which JSON
    # could not encode
    body = _transformer_v2(schema)
    body["inputs"][1]["datatype"] = "\ud800"
    content = json.dumps(body).encode()  # the escape \ud800 travels as ASCII
    response = _post(_v2(servers.transformer, schema), content)
    _assert_client_error(response, "datatype", "\\ud800")


# found by `make fuzz` on 2026-11-30: a document nested 1,024 deep parses (orjson's limit),
# and quoting it in the 400 hit Python's recursion limit: "RecursionError ... repr", a 500
def _nested(depth: int) -> bytes:
    return b"[" * depth + b"1" + b"]" * depth


@pytest.mark.parametrize("role", ["predictor", "transformer"])
def test_a_deeply_nested_document_quoted_in_an_error_is_400(
    servers: Servers, schema: Schema, role: str
):
    server = servers.by_role(role)
    _assert_client_error(_post(_v1(server, schema), _nested(1024)), "body")
    rows = b'{"instances": %s}' % _nested(1023)  # 1,024 deep with the object
    _assert_client_error(_post(_v1(server, schema), rows), "instances")
    body = _transformer_v2(schema) if role == "transformer" else {"inputs": _v2_inputs(schema)}
    body["inputs"][1]["data"] = "@"  # replaced by the raw document below
    content = json.dumps(body).encode().replace(b'"@"', _nested(1020))
    _assert_client_error(_post(_v2(server, schema), content), "body", "nested too deep")


def test_brief_quotes_any_value_without_failing():
    from esteira.errors import brief

    nested: list = [1]
    for _ in range(5000):
        nested = [nested]
    assert brief(nested) == "[[[[...]]]]"
    long = brief("x" * 1000)
    assert long.startswith("'xxx") and len(long) == 43 and long.endswith("...")
    assert brief("\ud800") == "'\\ud800'"
    assert brief({"a": [1, 2]}, 100) == "{'a': [1, 2]}"
