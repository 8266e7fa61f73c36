"""Serving under faults: Redis down and back, predictor down, a corrupt model file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest

from esteira.net import free_port
from testkit.services import RedisServer
from testkit.serving import MODEL_NAME, ServerProcess, World, build_world, write_config

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory):
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, redis: RedisServer) -> World:
    return build_world(
        tmp_path_factory.mktemp("faults"), online_store="redis", redis_connection=redis.connection
    )


@pytest.fixture(scope="module")
def corrupt_store(tmp_path_factory: pytest.TempPathFactory, world: World) -> Path:
    """A registry whose production model.joblib is the real one, truncated."""
    from esteira.registry import MODEL_FILE, Registry
    from esteira.storage import LocalStorage

    root = tmp_path_factory.mktemp("corrupt")
    write_config(root)
    good = Registry(LocalStorage(world.settings.storage.root), MODEL_NAME)
    data = good.read_file("production", MODEL_FILE)
    bad = Registry(LocalStorage(root / "store"), MODEL_NAME)
    version = bad.register({MODEL_FILE: data[: len(data) // 3]}, world.metadata)
    bad.set_alias("production", version.version)
    return root


@pytest.fixture(scope="module")
def servers(world: World, corrupt_store: Path):
    p_http, p_grpc, t_http = free_port(), free_port(), free_port()
    c_http = free_port()
    config = ["--config", str(world.config_path)]
    predictor = ServerProcess(
        "predictor",
        [*config, "--http-port", str(p_http), "--grpc-port", str(p_grpc)],
        world.root / "predictor.log",
    ).start()
    transformer = ServerProcess(
        "transformer",
        [*config, "--http-port", str(t_http), "--grpc-port", "0",
         "--predictor-host", f"127.0.0.1:{p_http}"],
        world.root / "transformer.log",
    ).start()  # fmt: skip
    corrupt = ServerProcess(
        "predictor",
        ["--config", str(corrupt_store / "config.yaml"), "--http-port", str(c_http),
         "--grpc-port", "0"],
        corrupt_store / "predictor.log",
    ).start()  # fmt: skip
    try:
        predictor.wait_http(f"http://127.0.0.1:{p_http}/v2/health/ready", 120)
        transformer.wait_http(f"http://127.0.0.1:{t_http}/v2/health/ready", 120)
        corrupt.wait_http(f"http://127.0.0.1:{c_http}/v2/health/live", 120)
        yield {
            "predictor": predictor,
            "transformer": f"http://127.0.0.1:{t_http}/v1/models/{MODEL_NAME}:predict",
            "transformer_ready": f"http://127.0.0.1:{t_http}/v2/health/ready",
            "corrupt": f"http://127.0.0.1:{c_http}",
        }
    finally:
        for process in (transformer, predictor, corrupt):
            process.stop()


def _ask(world: World, url: str, machine_id: int | None = None) -> tuple[httpx.Response, float]:
    machine = machine_id or world.machine_ids[0]
    body = {"instances": [{"machine_id": machine, **world.request_values[machine]}]}
    started = time.monotonic()
    response = httpx.post(url, json=body, timeout=30)
    return response, time.monotonic() - started


def test_online_store_down_is_503_and_recovers_without_restart(
    world: World, servers: dict, redis: RedisServer
) -> None:
    import redis as redis_client

    ok, _ = _ask(world, servers["transformer"])
    assert ok.status_code == 200, ok.text
    host, port = redis.connection.split(":")
    redis_client.Redis(host=host, port=int(port)).save()  # an RDB file: data survives restart
    redis.stop()
    try:
        down, seconds = _ask(world, servers["transformer"])
        assert down.status_code == 503, down.text
        assert "Redis" in down.json()["error"] and "features.online_store" in down.json()["error"]
        assert seconds < 5
    finally:
        redis.start()
    deadline = time.monotonic() + 20
    while True:
        again, _ = _ask(world, servers["transformer"])
        if again.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert again.status_code == 200, again.text
    assert again.json()["predictions"] == ok.json()["predictions"]


def test_an_emptied_online_store_is_503_naming_the_refill_until_materialized(
    world: World, servers: dict, redis: RedisServer, capsys: pytest.CaptureFixture
) -> None:
    from esteira_cli.cli import main

    refill = "online store is empty: run `esteira features materialize --full`"
    ok, _ = _ask(world, servers["transformer"])
    assert ok.status_code == 200, ok.text
    redis.stop()  # a restart without data: no RDB file, no AOF
    (redis.workdir / "dump.rdb").unlink(missing_ok=True)
    redis.start()
    deadline = time.monotonic() + 10
    while True:  # the first call may meet the pool's dead connection
        empty, _ = _ask(world, servers["transformer"])
        if refill in empty.text or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert empty.status_code == 503 and refill in empty.json()["error"], empty.text
    ready = httpx.get(servers["transformer_ready"], timeout=5)
    assert ready.status_code == 503 and refill in ready.json()["error"], ready.text

    assert main(["--config", str(world.config_path), "features", "materialize", "--full"]) == 0
    assert '"full": true' in capsys.readouterr().out

    again, _ = _ask(world, servers["transformer"])  # same server process: no restart
    assert again.status_code == 200, again.text
    assert again.json()["predictions"] == ok.json()["predictions"]
    assert httpx.get(servers["transformer_ready"], timeout=5).status_code == 200


def test_predictor_down_is_503_quickly(world: World, servers: dict) -> None:
    servers["predictor"].stop()
    response, seconds = _ask(world, servers["transformer"])
    assert response.status_code in (502, 503), response.text
    assert "predictor" in response.json()["error"]
    assert seconds < 5
    log = (world.root / "transformer.log").read_text()
    line = next(x for x in log.splitlines() if "serving.errors" in x and "predictor at" in x)
    assert "WARNING" in line and f"{response.status_code} POST /v1/models/" in line
    assert "Traceback" not in log


def test_corrupt_model_keeps_the_predictor_unready_with_the_reason(servers: dict) -> None:
    base = servers["corrupt"]
    for path in ("/v2/health/ready", f"/v2/models/{MODEL_NAME}/ready", f"/v1/models/{MODEL_NAME}"):
        response = httpx.get(base + path, timeout=5)
        assert response.status_code == 503, (path, response.text)
        assert "model.joblib" in response.json()["error"]
        assert "truncated or corrupt" in response.json()["error"]
    infer = httpx.post(f"{base}/v1/models/{MODEL_NAME}:predict", json={"instances": []})
    assert infer.status_code == 503
    assert httpx.get(f"{base}/v2/health/live", timeout=5).status_code == 200
