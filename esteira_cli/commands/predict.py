"""`esteira predict`: send the sample request of `esteira serve` and print the answer.

``--protocol all`` asks for the same entity through the transformer's V1 and V2
REST endpoints and through the predictor's V2 gRPC endpoint (with the features the
transformer would read from the online store), and checks the numbers are identical.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from esteira.config import Settings, resolve_path
from esteira.errors import EsteiraError

ENDPOINTS = "dist/serve/endpoints.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="send a sample request to `esteira serve`")
    parser.add_argument(
        "--entity", action="append", default=[], metavar="KEY=VALUE",
        help="a join key's value (repeat for a composite key); default: the sample's entity",
    )  # fmt: skip
    parser.add_argument("--machine-id", type=int, help=argparse.SUPPRESS)  # the old spelling
    parser.add_argument("--protocol", choices=["v1", "v2", "grpc", "all"], default="v1")
    parser.add_argument("--endpoints", default=ENDPOINTS, help="written by `esteira serve`")
    parser.set_defaults(handler=cmd_predict)


def _load(path: str) -> dict[str, Any]:
    p = resolve_path(path)
    if not Path(p).is_file():
        raise EsteiraError("--endpoints", f"{p} does not exist", "start `make serve` first")
    return json.loads(Path(p).read_text())


def _with_entity(info: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """The sample request, for the entity ``given`` (join key -> value) where set."""
    sample = json.loads(json.dumps(info["sample"]))
    entity = sample["entity"]
    unknown = sorted(set(given) - set(entity))
    if unknown:
        raise EsteiraError("--entity", f"{unknown} are not join keys", f"use {sorted(entity)}")
    for key, text in given.items():
        if isinstance(entity[key], int):
            try:
                entity[key] = int(text)
            except ValueError:
                raise EsteiraError("--entity", f"{key}={text} is not an integer", "") from None
        else:
            entity[key] = text
    sample["v1"]["instances"][0].update(entity)
    for tensor in sample["v2"]["inputs"]:
        if tensor["name"] in entity:
            tensor["data"] = [entity[tensor["name"]]]
    return sample


def _entity_args(args: argparse.Namespace, info: dict[str, Any]) -> dict[str, str]:
    given = {}
    for item in args.entity:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EsteiraError("--entity", f"{item!r} is not KEY=VALUE", "e.g. --entity key=7")
        given[key] = value
    if args.machine_id is not None:  # the single key's value, as --entity had it
        given[next(iter(info["sample"]["entity"]))] = str(args.machine_id)
    return given


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    import httpx

    try:
        response = httpx.post(url, json=body, timeout=10)
    except httpx.HTTPError as exc:
        raise EsteiraError(
            url, f"unreachable ({type(exc).__name__})", "start `make serve`"
        ) from None
    if response.status_code != 200:
        try:
            detail = response.json().get("error", response.text)
        except ValueError:
            detail = response.text
        raise EsteiraError(url, f"answered HTTP {response.status_code}: {detail}")
    return response.json()


Answer = tuple[Any, float | None]  # (prediction, probability of the positive class or None)


def _answer(predictions: list[Any], probabilities: list[Any] | None) -> Answer:
    probability = float(probabilities[0]) if probabilities else None
    return predictions[0], probability


def via_v1(info: dict[str, Any], sample: dict[str, Any]) -> Answer:
    body = _post(info["transformer"]["v1"], sample["v1"])
    return _answer(body["predictions"], body.get("probabilities"))


def via_v2(info: dict[str, Any], sample: dict[str, Any]) -> Answer:
    body = _post(info["transformer"]["v2"], sample["v2"])
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    return _answer(outputs["prediction"], outputs.get("probability"))


def via_grpc(info: dict[str, Any], sample: dict[str, Any]) -> Answer:
    """The sample's V2 request over the transformer's gRPC endpoint (KServe's own client)."""
    InferenceGRPCClient, InferInput, InferRequest = _kserve_clients()
    inputs = []
    for tensor in sample["v2"]["inputs"]:
        data = tensor["data"]
        if tensor["datatype"] == "BYTES":
            data = [str(v).encode() for v in data]
        inputs.append(InferInput(tensor["name"], tensor["shape"], tensor["datatype"], data=data))
    request = InferRequest(info["model_name"], inputs)

    async def call() -> Any:
        client = InferenceGRPCClient(url=info["transformer"]["grpc"], timeout=10, retries=0)
        try:
            return await client.infer(request)
        finally:
            await client.close()

    try:
        response = asyncio.run(call())
    except Exception as exc:  # grpc.aio errors: unreachable, or the server's answer
        detail = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
        raise EsteiraError(
            info["transformer"]["grpc"], f"gRPC: {detail}", "start `make serve`"
        ) from None
    outputs = {o.name: o.as_numpy().tolist() for o in response.outputs}
    return _answer(outputs["prediction"], outputs.get("probability"))


def _kserve_clients() -> tuple[Any, Any, Any]:
    """kserve's gRPC client classes; kserve parses sys.argv on import (and would read
    esteira's `--config` as its `--configure_logging`), so it sees no arguments."""
    saved = sys.argv
    sys.argv = sys.argv[:1]
    try:
        from kserve import InferenceGRPCClient, InferInput, InferRequest
    finally:
        sys.argv = saved
    return InferenceGRPCClient, InferInput, InferRequest


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    info = _load(args.endpoints)
    sample = _with_entity(info, _entity_args(args, info))
    calls = {
        "v1": lambda: via_v1(info, sample),
        "v2": lambda: via_v2(info, sample),
        "grpc": lambda: via_grpc(info, sample),
    }
    chosen = list(calls) if args.protocol == "all" else [args.protocol]
    answers = {name: calls[name]() for name in chosen}
    entity = ", ".join(f"{k}={v}" for k, v in sample["entity"].items())
    print(f"model {info['model_name']} v{info['model_version']}, {entity}")
    for name, (prediction, probability) in answers.items():
        shown = f"  {name:5s} prediction={prediction}"
        if probability is not None:
            shown += f" probability={probability:.6f}"
        print(shown)
    if len(answers) > 1:
        same = len(set(answers.values())) == 1
        print(f"  identical across {', '.join(answers)}: {'yes' if same else 'NO'}")
        return 0 if same else 1
    return 0
