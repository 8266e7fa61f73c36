"""`esteira serve`: the production model behind a transformer and a predictor, locally.

Starts ``python -m serving predictor`` (REST ``serving.predictor_port``, gRPC
``serving.grpc_port``) and ``python -m serving transformer`` (REST
``serving.transformer_port``, gRPC that port + 1) as child processes, waits until
both are ready, writes ``dist/serve/endpoints.json`` (URLs, gRPC addresses and
sample V1/V2 requests with a real machine id) and stays in the foreground until
Ctrl-C or SIGTERM, then stops both cleanly (the predictor flushes the prediction log).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from esteira.config import Settings, resolve_path
from esteira.errors import EsteiraError
from esteira.registry import Registry
from esteira.storage import open_storage

OUT_DIR = "dist/serve"
ENDPOINTS = "endpoints.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the production model: transformer -> predictor (REST and gRPC)"
    )
    parser.add_argument("--version", default="production", help="version or alias to serve")
    parser.add_argument("--out", default=OUT_DIR, help="where endpoints.json and logs go")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds")
    parser.set_defaults(handler=cmd_serve)


def _check_model(settings: Settings, ref: str) -> Any:
    registry = Registry(open_storage(settings.storage), settings.model.name)
    try:
        return registry.get(ref)
    except EsteiraError:
        raise EsteiraError(
            f"model {settings.model.name!r} {ref}",
            f"there is no {ref} version to serve in {settings.storage.root}",
            "run `make run` first (it trains, registers and promotes a model)",
        ) from None


class Child:
    """One server child process with its log file."""

    def __init__(self, role: str, argv: list[str], log_path: Path) -> None:
        self.role = role
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", role, *argv],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )

    def tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def _wait_ready(children: list[tuple[Child, str]], timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    pending = list(children)
    last = ""
    while pending:
        child, url = pending[0]
        if child.proc.poll() is not None:
            raise EsteiraError(
                f"serving {child.role}",
                f"exited with code {child.proc.returncode}:\n{child.tail()}",
                f"see {child.log_path}",
            )
        try:
            response = httpx.get(url, timeout=2.0)
            if response.status_code == 200:
                pending.pop(0)
                continue
            last = response.text[:500]
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        if time.monotonic() > deadline:
            raise EsteiraError(
                f"serving {child.role}",
                f"not ready after {timeout:.0f}s ({last})",
                f"see {child.log_path}",
            )
        time.sleep(0.2)


def _sample_machine(settings: Settings) -> tuple[int, dict[str, float]]:
    """A machine id the online store knows and plausible request-time values for it."""
    import pandas as pd

    from esteira.contract import load_contract
    from esteira.feast_store import repo_dir, source_uri

    contract = load_contract(repo_dir(settings))
    table = contract.features.rolling.table
    columns = [contract.entity, "event_timestamp"]
    means = {name: f"{col}_mean_3h" for name, col in contract.request.items()}
    try:
        frame = pd.read_parquet(source_uri(settings, table), columns=columns + list(means.values()))
    except Exception:  # S3 sources or a missing file: a generic sample still works
        return 1, {name: 0.0 for name in contract.request}
    last = frame.sort_values("event_timestamp").groupby(contract.entity).tail(1)
    row = last.sort_values(contract.entity).iloc[0]
    return int(row[contract.entity]), {n: round(float(row[c]), 3) for n, c in means.items()}


def endpoints(settings: Settings, version: Any, machine: int, values: dict[str, float]) -> dict:
    s = settings.serving
    name = settings.model.name
    transformer = f"http://127.0.0.1:{s.transformer_port}"
    predictor = f"http://127.0.0.1:{s.predictor_port}"
    v2_inputs = [{"name": "machine_id", "shape": [1], "datatype": "INT64", "data": [machine]}]
    v2_inputs += [
        {"name": k, "shape": [1], "datatype": "FP64", "data": [v]} for k, v in values.items()
    ]
    return {
        "model_name": name,
        "model_version": version.version,
        "transformer": {
            "v1": f"{transformer}/v1/models/{name}:predict",
            "v2": f"{transformer}/v2/models/{name}/infer",
            "grpc": f"127.0.0.1:{s.transformer_port + 1}",
            "ready": f"{transformer}/v2/health/ready",
        },
        "predictor": {
            "v1": f"{predictor}/v1/models/{name}:predict",
            "v2": f"{predictor}/v2/models/{name}/infer",
            "metadata": f"{predictor}/v2/models/{name}",
            "grpc": f"127.0.0.1:{s.grpc_port}",
            "ready": f"{predictor}/v2/health/ready",
        },
        "sample": {
            "machine_id": machine,
            "v1": {"instances": [{"machine_id": machine, **values}]},
            "v2": {"inputs": v2_inputs},
        },
    }


def _start(settings: Settings, args: argparse.Namespace, out: Path) -> list[tuple[Child, str]]:
    s = settings.serving
    config = ["--config", args.config] if args.config else []
    predictor = Child(
        "predictor",
        [*config, "--version", args.version, "--http-port", str(s.predictor_port),
         "--grpc-port", str(s.grpc_port)],
        out / "predictor.log",
    )  # fmt: skip
    transformer = Child(
        "transformer",
        [*config, "--http-port", str(s.transformer_port), "--grpc-port",
         str(s.transformer_port + 1), "--predictor-host", f"127.0.0.1:{s.predictor_port}"],
        out / "transformer.log",
    )  # fmt: skip
    return [
        (predictor, f"http://127.0.0.1:{s.predictor_port}/v2/health/ready"),
        (transformer, f"http://127.0.0.1:{s.transformer_port}/v2/health/ready"),
    ]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    version = _check_model(settings, args.version)
    out = resolve_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    children = _start(settings, args, out)
    stop = {"now": False}

    def _signal(signum: int, _frame: Any) -> None:
        stop["now"] = True

    previous = {sig: signal.signal(sig, _signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _wait_ready(children, args.ready_timeout)
        machine, values = _sample_machine(settings)
        info = endpoints(settings, version, machine, values)
        path = out / ENDPOINTS
        path.write_text(json.dumps(info, indent=2) + "\n")
        print(f"serving {info['model_name']} v{version.version}")
        print(f"  transformer {info['transformer']['v1']}  (gRPC {info['transformer']['grpc']})")
        print(f"  predictor   {info['predictor']['v2']}  (gRPC {info['predictor']['grpc']})")
        print(f"  endpoints and sample requests: {path}; Ctrl-C stops")
        while not stop["now"]:
            for child, _ in children:
                if child.proc.poll() is not None:
                    raise EsteiraError(
                        f"serving {child.role}",
                        f"stopped unexpectedly (code {child.proc.returncode})",
                        f"see {child.log_path}",
                    )
            time.sleep(0.3)
        return 0
    finally:
        for child, _ in reversed(children):
            child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
