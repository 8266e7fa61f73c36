"""Serving latency: the model in-process, a bare KServe ModelServer, our predictor, the full chain.

``run(out_dir)`` builds a small world under ``out_dir`` (a registered model and a
materialized SQLite online store, as the tests do), then, on the same model and
machine, times single-row requests sent one after another from this process:

* ``in_process``: ``model.predict_proba`` on a one-row DataFrame (the floor);
* ``bare_modelserver``: ``kserve.ModelServer`` with a minimal ``kserve.Model`` that
  builds the DataFrame and calls the same model (the peer), V1 REST;
* ``predictor_v1`` / ``predictor_v2``: our predictor (validation, prediction log);
* ``chain``: transformer -> Feast online lookup -> predictor (the configured
  ``serving.predictor_protocol`` between them, V1 by default), V1 in.

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
    def __init__(self, argv: list[str], log: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, *argv], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
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

    ports = {k: free_port() for k in ("peer", "predictor", "grpc", "transformer")}
    config = ["--config", str(_production_logging(world.config_path))]
    peer_script = root / "peer.py"
    peer_script.write_text(PEER)
    children = {
        "peer": _Child([str(peer_script), str(model_file), str(ports["peer"])], root / "peer.log"),
        "predictor": _Child(
            ["-m", "serving", "predictor", *config, "--http-port", str(ports["predictor"]),
             "--grpc-port", str(ports["grpc"])],
            root / "predictor.log",
        ),
        "transformer": _Child(
            ["-m", "serving", "transformer", *config, "--http-port", str(ports["transformer"]),
             "--grpc-port", "0", "--predictor-host", f"127.0.0.1:{ports['predictor']}"],
            root / "transformer.log",
        ),
    }  # fmt: skip
    try:
        for key in ("peer", "predictor", "transformer"):
            _wait(f"http://127.0.0.1:{ports[key]}/v2/health/ready", children[key])
        v1_body = {"instances": [row], "parameters": {"probabilities": True}}
        chain_body = {"instances": [{"machine_id": machine, **world.request_values[machine]}]}
        paths = {
            "bare_modelserver": (ports["peer"], "/v1/models/peer:predict", {"instances": [row]}),
            "predictor_v1": (ports["predictor"], f"/v1/models/{name}:predict", v1_body),
            "predictor_v2": (ports["predictor"], f"/v2/models/{name}/infer", _v2_body(world, row)),
            "chain": (ports["transformer"], f"/v1/models/{name}:predict", chain_body),
        }
        for key, (port, path, body) in paths.items():
            before = {n: child.cpu_seconds() for n, child in children.items()}
            with _Poster(port, path, body) as call:
                results[key] = _time(call)
            results[key]["server_cpu_ms_per_request"] = _cpu_per_request(children, before)
    finally:
        for child in children.values():
            child.stop()

    peer_p99 = results["bare_modelserver"]["p99_ms"]
    results["targets"] = {
        "predictor_p99_over_bare": round(results["predictor_v1"]["p99_ms"] / peer_p99, 3),
        "predictor_within_1_2x_of_bare": results["predictor_v1"]["p99_ms"] <= 1.2 * peer_p99,
        "chain_p99_under_5ms": results["chain"]["p99_ms"] < 5.0,
        "logger_share_of_predictor_p50": round(
            results["prediction_logger"]["p50_us"] / 1000 / results["predictor_v1"]["p50_ms"], 4
        ),
    }
    results["load_average"] = list(os.getloadavg())
    (out / "serving.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1] if len(sys.argv) > 1 else "dist/bench"), indent=2))
