"""`esteira predict`: send the sample request of `esteira serve` and print the answer.

``--protocol all`` asks for the same machine through the transformer's V1 and V2
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
    parser.add_argument("--machine-id", type=int, help="default: the sample's machine")
    parser.add_argument("--protocol", choices=["v1", "v2", "grpc", "all"], default="v1")
    parser.add_argument("--endpoints", default=ENDPOINTS, help="written by `esteira serve`")
    parser.set_defaults(handler=cmd_predict)


def _load(path: str) -> dict[str, Any]:
    p = resolve_path(path)
    if not Path(p).is_file():
        raise EsteiraError("--endpoints", f"{p} does not exist", "start `make serve` first")
    return json.loads(Path(p).read_text())


def _with_machine(info: dict[str, Any], machine: int | None) -> dict[str, Any]:
    sample = json.loads(json.dumps(info["sample"]))
    if machine is not None:
        sample["machine_id"] = machine
        sample["v1"]["instances"][0]["machine_id"] = machine
        sample["v2"]["inputs"][0]["data"] = [machine]
    return sample


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


def via_v1(info: dict[str, Any], sample: dict[str, Any]) -> tuple[int, float]:
    body = _post(info["transformer"]["v1"], sample["v1"])
    return int(body["predictions"][0]), float(body["probabilities"][0])


def via_v2(info: dict[str, Any], sample: dict[str, Any]) -> tuple[int, float]:
    body = _post(info["transformer"]["v2"], sample["v2"])
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    return int(outputs["prediction"][0]), float(outputs["probability"][0])


def via_grpc(info: dict[str, Any], sample: dict[str, Any], settings: Settings) -> tuple[int, float]:
    """The predictor over gRPC, fed the same online features the transformer reads."""
    InferenceGRPCClient, InferInput, InferRequest = _kserve_clients()

    from esteira.online import OnlineFeatures

    online = OnlineFeatures(settings)
    request_values = {k: [v] for k, v in sample["v1"]["instances"][0].items() if k != "machine_id"}
    features = online.lookup([sample["machine_id"]], request_values)
    inputs = []
    for name in online.feature_names:
        value = features[name][0]
        if isinstance(value, str):
            inputs.append(InferInput(name, [1], "BYTES", data=[value.encode()]))
        else:
            kind = "INT64" if isinstance(value, int) else "FP64"
            inputs.append(InferInput(name, [1], kind, data=[value]))
    request = InferRequest(info["model_name"], inputs, parameters={"probabilities": True})

    async def call() -> Any:
        client = InferenceGRPCClient(url=info["predictor"]["grpc"], timeout=10, retries=0)
        try:
            return await client.infer(request)
        finally:
            await client.close()

    response = asyncio.run(call())
    outputs = {o.name: o.as_numpy().tolist() for o in response.outputs}
    return int(outputs["prediction"][0]), float(outputs["probability"][0])


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
    from esteira_cli.support import require_servable

    require_servable(settings, "predict")
    info = _load(args.endpoints)
    sample = _with_machine(info, args.machine_id)
    calls = {
        "v1": lambda: via_v1(info, sample),
        "v2": lambda: via_v2(info, sample),
        "grpc": lambda: via_grpc(info, sample, settings),
    }
    chosen = list(calls) if args.protocol == "all" else [args.protocol]
    answers = {name: calls[name]() for name in chosen}
    print(f"model {info['model_name']} v{info['model_version']}, machine {sample['machine_id']}")
    for name, (label, probability) in answers.items():
        print(f"  {name:5s} prediction={label} probability_of_failure={probability:.6f}")
    if len(answers) > 1:
        same = len(set(answers.values())) == 1
        print(f"  identical across {', '.join(answers)}: {'yes' if same else 'NO'}")
        return 0 if same else 1
    return 0
