"""The fast lane answers exactly as KServe's full stack does, and /metrics counts requests.

Two predictors on the same model: one with ``serving/fast_lane.py`` (the default)
and one started with ``--no-fast-lane``. Every V1 request, good or bad, must get
the same status, content type and body from both.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from esteira.net import free_port
from serving.metrics import route_of
from testkit.serving import MODEL_NAME, ServerProcess, World, build_world
from tests.test_serving import PREDICTOR_CASES


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return build_world(tmp_path_factory.mktemp("fast-lane"))


@pytest.fixture(scope="module")
def predictors(world: World):
    started = {}
    try:
        variants = (("fast", []), ("full", ["--no-fast-lane"]), ("logged", ["--access-log"]))
        # as a parent that imported Feast would pass it on: metrics must stay in memory
        multiprocess = {"PROMETHEUS_MULTIPROC_DIR": str(world.root / "prometheus")}
        (world.root / "prometheus").mkdir()
        for lane, extra in variants:
            port = free_port()
            process = ServerProcess(
                "predictor",
                ["--config", str(world.config_path), "--http-port", str(port),
                 "--grpc-port", "0", *extra],
                world.root / f"predictor-{lane}.log",
                env=multiprocess,
            ).start()  # fmt: skip
            started[lane] = (process, f"http://127.0.0.1:{port}")
        for process, base in started.values():
            process.wait_http(f"{base}/v2/health/ready", 120)
        yield {lane: base for lane, (_, base) in started.items()} | {"logs": world.root}
    finally:
        for process, _ in started.values():
            process.stop()


def _both(predictors: dict, path: str, **kwargs: Any) -> dict[str, httpx.Response]:
    return {
        lane: httpx.post(predictors[lane] + path, timeout=10, **kwargs) for lane in ("fast", "full")
    }


def _same(answers: dict[str, httpx.Response]) -> httpx.Response:
    fast, full = answers["fast"], answers["full"]
    assert fast.status_code == full.status_code, (fast.text, full.text)
    assert fast.headers["content-type"] == full.headers["content-type"]
    assert fast.json() == full.json()
    return fast


def test_good_requests_get_the_same_answer(world: World, predictors: dict[str, str]) -> None:
    rows = world.rows(4)
    path = f"/v1/models/{MODEL_NAME}:predict"
    as_objects = {"instances": rows, "parameters": {"probabilities": True}}
    as_lists = {"instances": [[r[n] for n in world.feature_names] for r in rows]}
    for body in (as_objects, as_lists):
        answer = _same(_both(predictors, path, json=body))
        assert answer.status_code == 200
        assert len(answer.json()["predictions"]) == 4


@pytest.mark.parametrize(
    "case", [c for c, (_, protocol, _, _) in PREDICTOR_CASES.items() if protocol == "v1"]
)
def test_client_mistakes_get_the_same_answer(
    world: World, predictors: dict[str, str], case: str
) -> None:
    build, _, status, field = PREDICTOR_CASES[case]
    kwargs = build(world)
    if "content" in kwargs:
        kwargs["headers"] = {"content-type": "application/json"}
    answer = _same(_both(predictors, f"/v1/models/{MODEL_NAME}:predict", **kwargs))
    assert answer.status_code == status
    assert field in answer.json()["error"]


def test_access_log_mode_logs_v1_requests_and_answers_the_same(
    world: World, predictors: dict
) -> None:
    path = f"/v1/models/{MODEL_NAME}:predict"
    body = {"instances": world.rows(2), "parameters": {"probabilities": True}}
    logged = httpx.post(predictors["logged"] + path, json=body, timeout=10)
    fast = httpx.post(predictors["fast"] + path, json=body, timeout=10)
    assert logged.status_code == 200 and logged.json() == fast.json()
    log = (predictors["logs"] / "predictor-logged.log").read_text()
    access = f'"POST {path.replace(":", "%3A")} HTTP/1.1" 200'
    assert access in log  # uvicorn's access line
    assert f"kserve.io.v1.models.{MODEL_NAME}:predict" in log  # KServe's timing line
    assert access not in (predictors["logs"] / "predictor-fast.log").read_text()


def test_client_mistakes_are_logged_in_one_line_and_the_load_is_logged(
    world: World, predictors: dict
) -> None:
    path = f"/v1/models/{MODEL_NAME}:predict"
    for lane in ("fast", "full"):
        answer = httpx.post(predictors[lane] + path, json={"instances": []}, timeout=10)
        assert answer.status_code == 400
        missing = httpx.post(predictors[lane] + "/v1/models/nope:predict", json={}, timeout=10)
        assert missing.status_code == 404
        log = (predictors["logs"] / f"predictor-{lane}.log").read_text()
        assert f"400 POST {path}: instances: is empty" in log
        assert "404 POST /v1/models/nope:predict: Model with name nope does not exist" in log
        assert "Traceback" not in log  # KServe's own handlers log thirty lines for each
        assert f"loaded {MODEL_NAME} v1" in log and "array path, tree walk" in log


def test_unknown_model_and_other_routes_are_unchanged(
    world: World, predictors: dict[str, str]
) -> None:
    assert _same(_both(predictors, "/v1/models/nope:predict", json={"instances": []})).status_code == 404  # fmt: skip
    v2 = {"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": [1]}]}
    answer = _same(_both(predictors, f"/v2/models/{MODEL_NAME}/infer", json=v2))
    assert answer.status_code == 400  # V2 is not in the lane: FastAPI answers both


def test_metrics_count_requests_by_route_and_status(
    world: World, predictors: dict[str, str]
) -> None:
    base = predictors["fast"]
    path = f"/v1/models/{MODEL_NAME}:predict"
    before = _counters(base)
    for _ in range(3):
        assert httpx.post(base + path, json={"instances": world.rows(1)}).status_code == 200
    assert httpx.post(base + path, json={"instances": []}).status_code == 400
    assert httpx.post(base + "/v1/models/a/b:predict", json={}).status_code == 404
    after = _counters(base)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    route = "/v1/models/{model}:predict"
    common = {"role": "predictor", "route": route}
    assert delta("esteira_requests_total", **common, method="POST", code="200") == 3
    assert delta("esteira_requests_total", **common, method="POST", code="400") == 1
    assert delta("esteira_request_errors_total", **common, kind="client") == 1
    assert delta("esteira_request_duration_seconds_count", **common) == 4
    other = {"role": "predictor", "route": "other"}
    assert delta("esteira_requests_total", **other, method="POST", code="404") == 1
    # one process: values in memory, not prometheus_client's multiprocess files
    assert list((predictors["logs"] / "prometheus").iterdir()) == []


def _counters(base: str) -> dict[tuple, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(base + "/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name.startswith("esteira_"):
            for sample in family.samples:
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v1/models/machine-failure:predict", "/v1/models/{model}:predict"),
        ("/v2/models/machine-failure/infer", "/v2/models/{model}/infer"),
        ("/v2/models/machine-failure", "/v2/models/{model}"),
        ("/v2/health/ready", "/v2/health/ready"),
        ("/metrics", "/metrics"),
        ("/v1/models/a/b:predict", "other"),
        ("/v2/models//infer", "other"),
        ("/wp-admin.php", "other"),
    ],
)
def test_route_templates_never_carry_the_raw_path(path: str, route: str) -> None:
    assert route_of(path) == route


def test_the_lane_answers_v1_itself_and_passes_everything_else_on() -> None:
    import asyncio

    from kserve import Model
    from kserve.errors import InvalidInput
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from starlette.responses import JSONResponse

    from serving.fast_lane import FastLane

    class Doubler(Model):
        def __init__(self) -> None:
            super().__init__("doubler")
            self.ready = True

        def predict(self, payload: Any, headers: Any = None) -> dict:
            if not payload["instances"]:
                raise InvalidInput("instances: is empty")
            return {"predictions": [2 * x for x in payload["instances"]]}

    repository = ModelRepository()
    repository.update(Doubler())
    passed_on: list[str] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        passed_on.append(scope["path"])
        await JSONResponse({"from": "app"})(scope, receive, send)

    async def invalid(_: Any, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    lane = FastLane(app, DataPlane(model_registry=repository), lambda: {InvalidInput: invalid})

    async def post(path: str, body: dict) -> httpx.Response:
        transport = httpx.ASGITransport(app=lane)
        async with httpx.AsyncClient(transport=transport, base_url="http://lane") as client:
            return await client.post(path, json=body)

    answer = asyncio.run(post("/v1/models/doubler:predict", {"instances": [1, 2]}))
    assert answer.json() == {"predictions": [2, 4]} and passed_on == []
    mistake = asyncio.run(post("/v1/models/doubler:predict", {"instances": []}))
    assert (mistake.status_code, mistake.json()) == (400, {"error": "instances: is empty"})
    other = asyncio.run(post("/v2/models/doubler/infer", {"inputs": []}))
    assert other.json() == {"from": "app"} and passed_on == ["/v2/models/doubler/infer"]
