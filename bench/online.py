"""Online feature retrieval latency: direct and SDK reads on SQLite and Redis, `feast serve`.

``run(out_dir)`` builds a private copy of the feature repository under
``out_dir``, publishes a small fleet (100 machines x 14 days: online latency
does not depend on history length), applies and materializes it, then times
bounded loops of lookups for 1 and 100 entities. Servers it starts (Redis,
``feast serve``) are stopped before it returns.
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from esteira.config import Settings
from esteira.net import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
ITERATIONS = 300
WARMUP = 30
SIZES = (1, 100)


def timed(fn: Callable[[], Any], iterations: int = ITERATIONS) -> dict[str, float]:
    """p50/p99/mean in milliseconds over ``iterations`` calls after a warm-up."""
    for _ in range(WARMUP):
        fn()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    arr = np.asarray(samples)
    return {
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
        "iterations": iterations,
    }


def _prepare_repo(work: Path, machines: int, days: int) -> Settings:
    from esteira.contract import load_contract
    from esteira.feast_repo import apply_definitions, materialize, publish_sources
    from esteira.features import compute_feature_tables
    from testkit.pipeline import generate_fleet

    repo = work / "feature_repo"
    repo.mkdir(parents=True)
    for path in (ROOT / "feature_repo" / "predictive_maintenance").iterdir():
        if path.suffix in (".py", ".yaml"):
            shutil.copy(path, repo / path.name)
    settings = Settings(features={"repo_path": str(repo)})
    raw = generate_fleet(machines=machines, days=days)
    publish_sources(compute_feature_tables(raw, load_contract(repo)), settings)
    apply_definitions(settings)
    materialize(settings)
    return settings


def _request(n: int) -> tuple[list[int], dict[str, list[float]]]:
    ids = [1 + i % 100 for i in range(n)]
    return ids, {"volt_now": [170.0] * n, "vibration_now": [40.0] * n}


def bench_lookup(settings: Settings, path: str) -> tuple[str, dict[str, Any]]:
    """``esteira.online.OnlineFeatures`` asked to read the ``direct`` way (serving's) or
    via the SDK: (the path it took, timings). A store the direct read does not cover
    (Redis) takes the SDK either way."""
    from esteira.online import OnlineFeatures

    online = OnlineFeatures(settings, path=path)
    out = {}
    # as in the servers (serving/__main__.py): what is loaded stays out of the collector's
    # view, so a full collection does not scan the bench's own fleet and Feast objects
    gc.collect()
    gc.freeze()
    try:
        for n in SIZES:
            ids, request = _request(n)
            out[f"{n}_entities"] = timed(
                lambda ids=ids, request=request: online.lookup(ids, request)
            )
    finally:
        gc.unfreeze()
    return online.path, out


@contextmanager
def redis_server(work: Path) -> Iterator[str | None]:
    """A throwaway redis-server on a free port, or None when it is not installed."""
    if not shutil.which("redis-server"):
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 20)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def feast_server(settings: Settings, log: Path) -> Iterator[int]:
    """`feast serve` (via esteira's command line builder) on a free port."""
    from esteira_cli.commands.feast_serve import serve_command

    port = free_port()
    command, env = serve_command(settings, port)
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, 90)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def bench_http(port: int, service: str) -> dict[str, Any]:
    import requests

    session = requests.Session()
    url = f"http://127.0.0.1:{port}/get-online-features"
    out = {}
    for n in SIZES:
        ids, request = _request(n)
        body = {"feature_service": service, "entities": {"machine_id": ids, **request}}

        def call(body: dict = body) -> None:
            resp = session.post(url, json=body, timeout=10)
            resp.raise_for_status()

        out[f"{n}_entities"] = timed(call)
    return out


def run(out_dir: str | Path = "dist/bench") -> dict[str, Any]:
    """Measure online retrieval; results also go to ``<out_dir>/online.json``."""
    from esteira.feast_repo import materialize

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machines": 100, "days": 14}
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        settings = _prepare_repo(work, machines=100, days=14)
        for path in ("direct", "sdk"):
            taken, timings = bench_lookup(settings, path)
            results[f"{taken}_sqlite"] = timings
        with redis_server(work) as connection:
            if connection is None:
                results["redis"] = "skipped: redis-server not installed"
            else:
                redis = settings.model_copy(deep=True)
                redis.features.online_store = "redis"
                redis.features.redis_connection = connection
                materialize(redis, full=True)
                for path in ("direct", "sdk"):  # direct: one pipelined round trip
                    taken, timings = bench_lookup(redis, path)
                    results[f"{taken}_redis"] = timings
        with feast_server(settings, out / "feast_serve.log") as port:
            results["http_feast_serve_sqlite"] = bench_http(port, settings.features.feature_service)
    (out / "online.json").write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":  # pragma: no cover - `make bench` runs the package
    print(json.dumps(run(), indent=2))
