"""`esteira serve`: the production model behind a transformer and a predictor, locally.

It runs what the cluster runs (esteira/launch.py): the manifests are rendered with
kustomize, the predictor's command line comes from the ``esteira-sklearn`` ServingRuntime
and the transformer's from the InferenceService plus what KServe's controller appends,
with only the listed substitutions (local models directory, local ports, predictor host).
A storage-initializer step first fills ``<out>/models`` from the registry, as KServe's
fills /mnt/models. ``--runtime docker`` runs the same command lines in the serving image
with that directory mounted at /mnt/models.

The servers run under a supervisor (esteira/supervisor.py) that restarts one that dies,
with backoff, as a kubelet does. Once both are ready it writes ``dist/serve/endpoints.json``
(URLs, gRPC addresses and sample V1/V2 requests with a real machine id) and stays in the
foreground until Ctrl-C or SIGTERM, then stops both cleanly (the predictor flushes the
prediction log).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from esteira import launch
from esteira.config import Settings, resolve_path
from esteira.errors import EsteiraError
from esteira.registry import Registry
from esteira.storage import open_storage
from esteira.supervisor import ChildSpec, GaveUp, Supervisor

CONFIG_FILE_ENV = "ESTEIRA_CONFIG_FILE"  # read by `python -m serving` when --config is absent
SUPERVISOR_STATE = "supervisor.json"

OUT_DIR = "dist/serve"
ENDPOINTS = "endpoints.json"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the production model: transformer -> predictor (REST and gRPC)"
    )
    parser.add_argument("--version", default="production", help="version or alias to serve")
    parser.add_argument("--out", default=OUT_DIR, help="where endpoints.json and logs go")
    parser.add_argument("--ready-timeout", type=float, default=180.0, help="seconds")
    parser.add_argument(
        "--runtime",
        choices=["process", "docker"],
        default="process",
        help="local processes, or the serving image under Docker (DOCKER_HOST is honoured)",
    )
    parser.add_argument("--overlay", default="local", help="kustomize overlay to launch")
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


def _wait_ready(sup: Supervisor, urls: dict[str, str], timeout: float) -> None:
    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per readiness poll
    deadline = time.monotonic() + timeout
    pending = list(urls.items())
    last = ""
    while pending:
        role, url = pending[0]
        child = sup.children[role]
        if not sup.running(role):
            code = child.proc.returncode if child.proc is not None else None
            tail = child.spec.log_path.read_text(errors="replace")[-2000:]
            raise EsteiraError(
                f"serving {role}",
                f"exited with code {code} before it was ready:\n{tail}",
                f"see {child.spec.log_path}",
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
                f"serving {role}",
                f"not ready after {timeout:.0f}s ({last})",
                f"see {child.spec.log_path}",
            )
        time.sleep(0.2)


def _sample(settings: Settings) -> tuple[dict[str, Any], dict[str, float]]:
    """An entity the online store knows (its join keys) and plausible request-time values:
    the newest row of the first entity in the feature table, and that entity's newest raw
    values of the request columns."""
    import pandas as pd

    from esteira.contract import load_contract
    from esteira.feast_store import repo_dir, source_uri
    from esteira.parquet import read_parquet

    contract = load_contract(repo_dir(settings))
    keys = contract.keys
    generic = {k: 1 if contract.columns[k].dtype == "int" else "1" for k in keys}
    texts = set(contract.text_requests)
    # valid request values when no raw row is at hand: zero, or a sentence for a text value
    fallback = {n: "It works as described." if n in texts else 0.0 for n in contract.request}
    try:
        table = read_parquet(source_uri(settings, contract.source_tables[0]), columns=keys)
        first = table.sort_values(keys).iloc[0]
        entity = {k: first[k].item() if hasattr(first[k], "item") else first[k] for k in keys}
    except Exception:  # S3 sources or a missing file: a generic sample still works
        return generic, fallback
    values = fallback
    try:
        columns = [*keys, contract.timestamp, *contract.request.values()]
        raw = read_parquet(resolve_path(settings.data.source_uri), columns=columns)
        mine = raw.loc[(raw[keys] == pd.Series(entity)).all(axis=1)]
        newest = mine.sort_values(contract.timestamp).iloc[-1]
        values = {
            n: str(newest[c]) if n in texts else round(float(newest[c]), 3)
            for n, c in contract.request.items()
        }
    except Exception:  # the raw data elsewhere (S3, DVC): zeros are valid request values
        pass
    return entity, values


def endpoints(settings: Settings, version: Any, entity: dict[str, Any], values: dict) -> dict:
    s = settings.serving
    name = settings.model.name
    transformer = f"http://127.0.0.1:{s.transformer_port}"
    predictor = f"http://127.0.0.1:{s.predictor_port}"
    v2_inputs = [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "INT64",
         "data": [v]}
        for k, v in entity.items()
    ]  # fmt: skip
    v2_inputs += [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else "FP64",
         "data": [v]}
        for k, v in values.items()
    ]  # fmt: skip
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
            "entity": entity,
            "v1": {"instances": [{**entity, **values}]},
            "v2": {"inputs": v2_inputs},
        },
    }


def _child_env(args: argparse.Namespace) -> dict[str, str]:
    """The servers' environment: ours, the venv's bin first on PATH (so ``python`` in the
    manifests' command is this venv's, as it is the image's), and the config file (the
    manifests' command lines carry no --config)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if args.config:
        env[CONFIG_FILE_ENV] = str(Path(args.config).resolve())
    return env


def _ports(settings: Settings) -> launch.Ports:
    s = settings.serving
    return launch.Ports(s.predictor_port, s.grpc_port, s.transformer_port)


def child_specs(
    settings: Settings, args: argparse.Namespace, out: Path, plan: launch.Plan, models: Path
) -> list[ChildSpec]:
    """One spec per server, with the manifests' argv and only the listed substitutions."""
    ports = _ports(settings)
    env = _child_env(args)
    if args.runtime == "docker":
        from esteira import docker_runtime

        argvs = launch.local_argv(plan, ports, models_dir=None)  # /mnt/models is mounted
        return docker_runtime.child_specs(settings, argvs, models, out, env)
    argvs = launch.local_argv(plan, ports, models_dir=str(models))
    return [ChildSpec(role, argv, out / f"{role}.log", env) for role, argv in argvs.items()]


def _serve_metrics(sup: Supervisor, port: int) -> int | None:
    if not port:
        return None
    try:
        return sup.serve_metrics(port)
    except OSError as exc:
        raise EsteiraError(
            "serving.supervisor_port",
            f"cannot listen on 127.0.0.1:{port} ({exc.strerror})",
            "set ESTEIRA_SERVING__SUPERVISOR_PORT to a free port, or 0 for no /metrics",
        ) from None


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    version = _check_model(settings, args.version)
    out = resolve_path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / ENDPOINTS).unlink(missing_ok=True)  # written again once both servers are ready
    plan = launch.plan(settings.model.name, args.overlay)
    if plan.transformer is None:
        raise EsteiraError(
            "spec.transformer",
            f"the {args.overlay} overlay's InferenceService has no transformer",
            "add one (manifests/base/isvc/inferenceservice.yaml)",
        )
    registry = Registry(open_storage(settings.storage), settings.model.name)
    models = launch.fill_model_dir(registry, version.version, out / "models")
    s = settings.serving
    sup = Supervisor(
        child_specs(settings, args, out, plan, models), state_path=out / SUPERVISOR_STATE
    )
    stop = {"now": False}

    def _signal(signum: int, _frame: Any) -> None:
        stop["now"] = True

    previous = {sig: signal.signal(sig, _signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        metrics_port = _serve_metrics(sup, s.supervisor_port)
        sup.start_all()
        _wait_ready(
            sup,
            {
                "predictor": f"http://127.0.0.1:{s.predictor_port}/v2/health/ready",
                "transformer": f"http://127.0.0.1:{s.transformer_port}/v2/health/ready",
            },
            args.ready_timeout,
        )
        entity, values = _sample(settings)
        info = endpoints(settings, version, entity, values)
        if metrics_port:
            info["supervisor"] = {"metrics": f"http://127.0.0.1:{metrics_port}/metrics"}
        path = out / ENDPOINTS
        path.write_text(json.dumps(info, indent=2) + "\n")
        print(f"serving {info['model_name']} v{version.version} ({args.runtime})")
        print(f"  transformer {info['transformer']['v1']}  (gRPC {info['transformer']['grpc']})")
        print(f"  predictor   {info['predictor']['v2']}  (gRPC {info['predictor']['grpc']})")
        print(f"  endpoints and sample requests: {path}; Ctrl-C stops", flush=True)
        while not stop["now"]:
            try:
                sup.poll()  # restarts a server that died
            except GaveUp as exc:  # a crash loop: not the user's input, so exit 1
                print(f"error: {exc.message}", file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0
    finally:
        sup.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
