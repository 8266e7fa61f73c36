"""Serving latency: the model in-process, a bare KServe ModelServer, our predictor, the full chain.

``run(out_dir)`` builds a small world under ``out_dir`` (a registered model and a
materialized SQLite online store, as the tests do), then, on the same model and
machine, times single-row requests sent one after another from this process:

* ``in_process``: ``model.predict_proba`` on a one-row DataFrame (the floor);
* ``bare_modelserver``: ``kserve.ModelServer`` with a minimal ``kserve.Model`` that
  builds the DataFrame and calls the same model (the peer), V1 REST;
* ``predictor_v1`` / ``predictor_v2``: our predictor (validation, prediction log);
* ``chain``: transformer -> Feast online lookup -> predictor (the configured
  ``serving.predictor_protocol`` between them, V1 by default), V1 in;
* ``predictor_grpc`` / ``chain_grpc``: the same over gRPC ``ModelInfer``, one row per
  request as raw tensors (``raw_input_contents``, tritonclient's encoding), answered raw.
* ``manifest_predictor_v1`` / ``manifest_chain``: the same two paths on the servers as
  `make serve` starts them, from the manifests' command lines (esteira/launch.py), the
  predictor reading the model from a storage-initializer directory.
* ``manifest_chain_redis``: that chain with the transformer reading Redis, the online
  store of a cluster (a throwaway ``redis-server``; skipped without one).
* ``floor_chain``: the machine's floor for the same two hops, two bare ASGI servers
  on uvicorn, the front one forwarding through ``serving/upstream.py`` (:data:`FLOOR`).
  The chain's latency moves with the machine (a shared VM's idle cores wake slowly);
  this row, measured in the same run, says how much of it is the machine's.

Every server runs in its own child process with one worker, OMP_NUM_THREADS=1 and
the same logging (no access log, no per-request latency log); requests go out on
one keep-alive connection per path (see :class:`_Poster`). It also
reports each server's CPU time per request, and measures the
cost of ``PredictionLogger.log`` on the request path. Targets are reported, not
asserted: predictor p99 within 1.2x of the bare ModelServer; chain p99 < 5 ms.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.online import redis_server
from esteira.net import free_port

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 2000
WARMUP = 200

PEER = """
import os, sys
os.environ.setdefault("OMP_NUM_THREADS", "1")
model_path, port = sys.argv[1], int(sys.argv[2])
sys.argv = sys.argv[:1]
import logging
import pandas as pd
import kserve
from esteira.safe_load import load_model


class Minimal(kserve.Model):
    def __init__(self):
        super().__init__("peer")
        self.model = load_model(model_path)
        self.ready = True

    def predict(self, payload, headers=None):
        frame = pd.DataFrame(payload["instances"])
        return {"predictions": self.model.predict_proba(frame)[:, 1].tolist()}


server = kserve.ModelServer(http_port=port, workers=1, enable_grpc=False,
                            enable_latency_logging=False)
logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
logging.getLogger("kserve.trace").setLevel(logging.WARNING)
server.start([Minimal()])
"""

# The machine's floor for two hops: two bare ASGI apps on uvicorn (uvloop, httptools), the
# front one forwarding each request to the back one through serving/upstream.py, as the
# transformer does, with a body the size of the transformer's. No KServe, Feast or model.
FLOOR = """
import sys
import orjson
import uvicorn
role, port = sys.argv[1], int(sys.argv[2])
ANSWER = orjson.dumps({"predictions": [0], "probabilities": [0.5], "model_version": "1"})
HEADERS = [(b"content-type", b"application/json")]


async def read(receive):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def back(scope, receive, send):
    if scope["type"] != "http":
        return
    await read(receive)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


def front_app(upstream_port):
    from serving.upstream import Upstream

    upstream = Upstream(f"http://127.0.0.1:{upstream_port}", timeout=5.0)
    forward = orjson.dumps({"instances": [[0.5] * 40]})

    async def front(scope, receive, send):
        if scope["type"] != "http":
            return
        orjson.loads(await read(receive) or b"{}")
        status, content = await upstream.post(
            "/v1/models/floor:predict", forward, {"Content-Type": "application/json"}
        )
        body = orjson.dumps({"machine_ids": [1], **orjson.loads(content)})
        await send({"type": "http.response.start", "status": status, "headers": HEADERS})
        await send({"type": "http.response.body", "body": body})

    return front


app = back if role == "back" else front_app(int(sys.argv[3]))
uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
            log_level="warning", access_log=False)
"""


def _stats(samples: list[float], total: float) -> dict[str, float]:
    ms = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "throughput_rps": round(len(samples) / total, 1),
        "requests": len(samples),
    }


def _time(call: Callable[[], Any], requests: int = REQUESTS, warmup: int = WARMUP) -> dict:
    for _ in range(warmup):
        call()
    samples = []
    started = time.perf_counter()
    for _ in range(requests):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return _stats(samples, time.perf_counter() - started)


class _Child:
    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        """``sys.executable *argv``, or exactly ``argv`` when ``env`` is given (the
        manifests' command lines, with the venv's ``python`` first on its PATH)."""
        full = [sys.executable, *argv] if env is None else argv
        env = {**os.environ, **(env or {}), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            full, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def cpu_seconds(self) -> float | None:
        """User + system CPU time so far (Linux ``/proc``; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class _Poster:
    """One keep-alive connection POSTing the same JSON body: the thinnest client.

    The client's own time is in every sample, so it is kept small: a socket, the
    request bytes built once, the answer parsed by httptools (status, then the body
    to its end, chunked or not). ``http.client`` spends about 0.13 ms more per
    request here and httpx about 0.8 ms, which would be charged to the servers.
    """

    def __init__(self, port: int, path: str, body: dict[str, Any]) -> None:
        import httptools

        content = json.dumps(body).encode()
        self.path = path
        self.request = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n\r\n"
        ).encode() + content
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.parser = httptools.HttpResponseParser(self)
        self.chunks: list[bytes] = []
        self.complete = False

    def on_body(self, chunk: bytes) -> None:  # httptools callbacks
        self.chunks.append(chunk)

    def on_message_complete(self) -> None:
        self.complete = True

    def __call__(self) -> None:
        self.chunks, self.complete = [], False
        self.sock.sendall(self.request)
        while not self.complete:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"{self.path}: the server closed the connection")
            self.parser.feed_data(data)
        status = self.parser.get_status_code()
        if status != 200:
            raise RuntimeError(f"{self.path}: HTTP {status}: {b''.join(self.chunks)[:200]!r}")

    def __enter__(self) -> _Poster:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()


def _kserve_messages() -> Any:
    """KServe's V2 gRPC messages (kserve parses sys.argv when imported: it sees none)."""
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        from kserve.protocol.grpc import grpc_predict_v2_pb2
    finally:
        sys.argv = saved
    return grpc_predict_v2_pb2


def _grpc_request(model: str, inputs: list[dict[str, Any]], parameters: dict[str, bool]) -> bytes:
    """A serialized ModelInferRequest with every tensor raw (little-endian; BYTES
    length-prefixed), as tritonclient sends it."""
    import struct

    pb = _kserve_messages()
    request = pb.ModelInferRequest(model_name=model)
    for key, value in parameters.items():
        request.parameters[key].bool_param = value
    for spec in inputs:
        request.inputs.add(name=spec["name"], datatype=spec["datatype"], shape=spec["shape"])
        values = spec["data"]
        if spec["datatype"] == "BYTES":
            parts = [str(v).encode() for v in values]
            raw = b"".join(struct.pack("<I", len(p)) + p for p in parts)
        else:
            code = {"INT64": "q", "FP64": "d"}[spec["datatype"]]
            raw = struct.pack(f"<{len(values)}{code}", *values)
        request.raw_input_contents.append(raw)
    return request.SerializeToString()


class _GrpcCaller:
    """One gRPC channel sending the same serialized ModelInferRequest (bytes in, bytes
    out: no message building or parsing in the sample); raises on any non-OK status."""

    def __init__(self, port: int, request: bytes) -> None:
        import grpc

        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.call = self.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        self.request = request

    def __call__(self) -> None:
        self.call(self.request, timeout=10)

    def __enter__(self) -> _GrpcCaller:
        return self

    def __exit__(self, *_: object) -> None:
        self.channel.close()


def _cpu_per_request(children: dict[str, _Child], before: dict[str, float | None]) -> dict:
    """CPU milliseconds each server spent per request (idle servers left out)."""
    out = {}
    for name, child in children.items():
        now, then = child.cpu_seconds(), before[name]
        if now is None or then is None:
            continue
        per_request = (now - then) * 1000 / (REQUESTS + WARMUP)
        if per_request >= 0.05:  # an idle server's housekeeping is about 0.01
            out[name] = round(per_request, 3)
    return out


def _wait(url: str, child: _Child, timeout: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"server exited ({child.proc.returncode}); see its log")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


def _logger_cost(world: Any, row: dict[str, Any], root: Path) -> dict[str, float]:
    """Microseconds that ``PredictionLogger.log`` adds to a request (median and p99)."""
    from datetime import UTC, datetime

    from esteira.storage import LocalStorage
    from serving.prediction_logger import PredictionLogger, Record

    logger = PredictionLogger(LocalStorage(root / "logcost"), "bench", 500, 1.0)
    columns = {k: np.asarray([v]) for k, v in row.items()}
    samples = []
    for i in range(REQUESTS):
        t0 = time.perf_counter()
        logger.log(
            Record(
                {**columns, "prediction": np.asarray([0]), "probability": np.asarray([0.1])},
                {"request_id": str(i), "served_at": datetime.now(UTC), "model_name": "bench",
                 "model_version": 1, "source": "online", "event_timestamp": None},
                1,
            )
        )  # fmt: skip
        samples.append(time.perf_counter() - t0)
    logger.close()
    us = np.asarray(samples) * 1e6
    return {
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "rows_written": logger.written_rows,
    }


def _v2_body(world: Any, row: dict[str, Any]) -> dict[str, Any]:
    types = world.metadata["feature_types"]

    def datatype(name: str) -> str:
        kind = types[name]
        return "BYTES" if kind == "string" else ("INT64" if kind.startswith("int") else "FP64")

    inputs = [
        {"name": n, "shape": [1], "datatype": datatype(n), "data": [row[n]]}
        for n in world.feature_names
    ]
    return {"inputs": inputs, "parameters": {"probabilities": True}}


def _production_logging(config_path: Path) -> Path:
    """The test world's config with the prediction log flushed as in production.

    The tests flush every 50 rows to see their rows quickly; measured with that, the
    benchmark would time Parquet writes, not serving.
    """
    import yaml

    from esteira.config import ServingSettings

    config = yaml.safe_load(config_path.read_text())
    defaults = ServingSettings()
    config.setdefault("serving", {}).update(
        log_flush_rows=defaults.log_flush_rows, log_flush_seconds=defaults.log_flush_seconds
    )
    path = config_path.with_name("bench-config.yaml")
    path.write_text(yaml.safe_dump(config))
    return path


def _manifest_env(config: str) -> dict[str, str]:
    """A manifest command line's environment: the venv's ``python`` first on PATH (the argv
    says ``python``), the config file."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {"PATH": path, "ESTEIRA_CONFIG_FILE": config}


def _manifest_children(world: Any, ports: dict[str, int], root: Path, config: str) -> dict:
    """The predictor and transformer as `make serve` starts them: the manifests' argv
    with the listed substitutions, the model from a storage-initializer directory."""
    from esteira import launch
    from esteira.registry import Registry
    from esteira.storage import open_storage

    registry = Registry(open_storage(world.settings.storage), world.settings.model.name)
    models = launch.fill_model_dir(registry, "production", root / "models")
    plan = launch.plan(world.settings.model.name)
    argvs = launch.local_argv(
        plan, launch.Ports(ports["m_predictor"], ports["m_grpc"], ports["m_transformer"]),
        models_dir=str(models),
    )  # fmt: skip
    env = _manifest_env(config)
    return {
        f"m_{role}": _Child(argv, root / f"manifest-{role}.log", env)
        for role, argv in argvs.items()
    }


def _redis_transformer(
    world: Any, config: Path, ports: dict[str, int], root: Path, connection: str
) -> _Child:
    """The manifests' transformer reading Redis (materialized here), in front of the
    manifest-launched predictor."""
    import yaml

    from esteira import launch
    from esteira.config import load_settings
    from esteira.feast_repo import materialize

    data = yaml.safe_load(config.read_text())
    data.setdefault("features", {}).update(online_store="redis", redis_connection=connection)
    redis_config = config.with_name("bench-config-redis.yaml")
    redis_config.write_text(yaml.safe_dump(data))
    materialize(load_settings(redis_config), full=True)
    plan = launch.plan(world.settings.model.name)
    argv = launch.local_argv(
        plan, launch.Ports(ports["m_predictor"], ports["m_grpc"], ports["r_transformer"]),
        models_dir=str(root / "models"),
    )["transformer"]  # fmt: skip
    return _Child(argv, root / "manifest-transformer-redis.log", _manifest_env(str(redis_config)))


def chain_children(
    config: list[str], ports: dict[str, int], transformer_grpc: int, root: Path
) -> dict[str, _Child]:
    """Our predictor and the transformer in front of it, by `python -m serving`, on
    ``ports["predictor"]`` (gRPC ``ports["grpc"]``) and ``ports["transformer"]``."""
    return {
        "predictor": _Child(
            ["-m", "serving", "predictor", *config, "--http-port", str(ports["predictor"]),
             "--grpc-port", str(ports["grpc"])],
            root / "predictor.log",
        ),
        "transformer": _Child(
            ["-m", "serving", "transformer", *config, "--http-port", str(ports["transformer"]),
             "--grpc-port", str(transformer_grpc),
             "--predictor-host", f"127.0.0.1:{ports['predictor']}"],
            root / "transformer.log",
        ),
    }  # fmt: skip


def _time_paths(
    world: Any, row: dict, machine: Any, name: str, ports: dict[str, int],
    children: dict[str, _Child], results: dict[str, Any],
) -> None:  # fmt: skip
    """Wait for every server, time every path into ``results``."""
    for key in [k for k in children if k != "peer"] + ["peer"]:
        _wait(f"http://127.0.0.1:{ports[key]}/v2/health/ready", children[key])
    v1_body = {"instances": [row], "parameters": {"probabilities": True}}
    chain_body = {"instances": [{"machine_id": machine, **world.request_values[machine]}]}
    paths = {
        "bare_modelserver": (ports["peer"], "/v1/models/peer:predict", {"instances": [row]}),
        "predictor_v1": (ports["predictor"], f"/v1/models/{name}:predict", v1_body),
        "predictor_v2": (ports["predictor"], f"/v2/models/{name}/infer", _v2_body(world, row)),
        "chain": (ports["transformer"], f"/v1/models/{name}:predict", chain_body),
        # what `make serve` starts: the manifests' command lines (esteira/launch.py)
        "manifest_predictor_v1": (ports["m_predictor"], f"/v1/models/{name}:predict",
                                  v1_body),
        "manifest_chain": (ports["m_transformer"], f"/v1/models/{name}:predict",
                           chain_body),
        "floor_chain": (ports["floor_front"], f"/v1/models/{name}:predict", chain_body),
    }  # fmt: skip
    if "r_transformer" in children:  # the cluster's online store
        paths["manifest_chain_redis"] = (
            ports["r_transformer"], f"/v1/models/{name}:predict", chain_body
        )  # fmt: skip
    for key, (port, path, body) in paths.items():
        before = {n: child.cpu_seconds() for n, child in children.items()}
        with _Poster(port, path, body) as call:
            results[key] = _time(call)
        results[key]["server_cpu_ms_per_request"] = _cpu_per_request(children, before)
    chain_inputs = [{"name": "machine_id", "shape": [1], "datatype": "INT64", "data": [machine]}]
    chain_inputs += [
        {"name": k, "shape": [1], "datatype": "FP64", "data": [v]}
        for k, v in world.request_values[machine].items()
    ]
    grpc_paths = {
        "predictor_grpc": (
            ports["grpc"],
            _grpc_request(name, _v2_body(world, row)["inputs"], {"probabilities": True}),
        ),
        "chain_grpc": (ports["t_grpc"], _grpc_request(name, chain_inputs, {})),
    }
    for key, (port, request) in grpc_paths.items():
        before = {n: child.cpu_seconds() for n, child in children.items()}
        with _GrpcCaller(port, request) as call:
            results[key] = _time(call)
        results[key]["server_cpu_ms_per_request"] = _cpu_per_request(children, before)


def run(out_dir: str | Path) -> dict[str, Any]:
    """Build the world, start the servers, time every path; returns (and writes) the results."""
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from testkit.serving import build_world

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="serving-", dir=out))
    world = build_world(root)
    row = world.rows(1)[0]
    machine = world.machine_ids[0]
    name = world.settings.model.name
    model_file = Path(world.settings.storage.root) / "models" / name / "v1" / "model.joblib"

    results: dict[str, Any] = {"requests": REQUESTS, "warmup": WARMUP, "model": name}
    frame = pd.DataFrame([row]).astype(world.metadata["feature_types"])
    results["in_process"] = _time(lambda: world.model.predict_proba(frame))
    results["prediction_logger"] = _logger_cost(world, row, root)

    ports = {k: free_port() for k in ("peer", "predictor", "grpc", "transformer", "t_grpc",
                                      "m_predictor", "m_grpc", "floor_back", "floor_front")}  # fmt: skip
    # the manifest-launched transformer serves gRPC on its REST port + 1 (no --grpc_port in
    # its argv): both must be free and apart from the others
    ports["m_transformer"] = free_port(span=2)
    config = ["--config", str(_production_logging(world.config_path))]
    peer_script = root / "peer.py"
    peer_script.write_text(PEER)
    floor_script = root / "floor.py"
    floor_script.write_text(FLOOR)
    floor = [str(floor_script)]
    children = {
        "peer": _Child([str(peer_script), str(model_file), str(ports["peer"])], root / "peer.log"),
        **chain_children(config, ports, ports["t_grpc"], root),
        "floor_back": _Child([*floor, "back", str(ports["floor_back"])], root / "floor.log"),
        "floor_front": _Child(
            [*floor, "front", str(ports["floor_front"]), str(ports["floor_back"])],
            root / "floor-front.log",
        ),
    }
    children.update(_manifest_children(world, ports, root, config[1]))
    with redis_server(root) as connection:  # None without redis-server: no Redis row
        try:
            if connection is not None:
                ports["r_transformer"] = free_port(span=2)  # its gRPC is REST + 1, as above
                children["r_transformer"] = _redis_transformer(
                    world, Path(config[1]), ports, root, connection
                )
            _time_paths(world, row, machine, name, ports, children, results)
        finally:
            for child in children.values():
                child.stop()

    peer_p99 = results["bare_modelserver"]["p99_ms"]
    results["targets"] = {
        "predictor_p99_over_bare": round(results["predictor_v1"]["p99_ms"] / peer_p99, 3),
        "predictor_within_1_2x_of_bare": results["predictor_v1"]["p99_ms"] <= 1.2 * peer_p99,
        "chain_p99_under_5ms": results["chain"]["p99_ms"] < 5.0,
        "manifest_predictor_p99_over_bare": round(
            results["manifest_predictor_v1"]["p99_ms"] / peer_p99, 3
        ),
        "manifest_chain_p99_under_2ms": results["manifest_chain"]["p99_ms"] < 2.0,
        # the same run's two bare servers: how much of the chain is the machine's
        "manifest_chain_p50_over_floor": round(
            results["manifest_chain"]["p50_ms"] / results["floor_chain"]["p50_ms"], 2
        ),
        "manifest_chain_redis_p99_ms": results.get("manifest_chain_redis", {}).get("p99_ms"),
        "logger_share_of_predictor_p50": round(
            results["prediction_logger"]["p50_us"] / 1000 / results["predictor_v1"]["p50_ms"], 4
        ),
    }
    results["load_average"] = list(os.getloadavg())
    (out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "dist/bench"), indent=2))
