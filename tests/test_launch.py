"""`esteira serve` runs what the manifests say, and keeps it running.

The servers' real command lines (``/proc/<pid>/cmdline``) are compared with the argv
computed here, independently of esteira/launch.py, from ``kubectl kustomize`` output
plus the substitutions the README lists; any other difference fails. Then the
predictor is killed with SIGKILL: the transformer answers 503 while it is down and
200 once the supervisor has restarted it, with no operator action.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from esteira.errors import EsteiraError
from esteira.net import free_port
from esteira.supervisor import ChildSpec, GaveUp, Supervisor
from testkit.serving import MODEL_NAME, ROOT, World, build_world

READY_SECONDS = 300  # two KServe servers starting on a loaded 2-core machine


# ---- the supervisor on its own (fast) ---------------------------------------------------
def _spec(tmp_path: Path, role: str, code: str) -> ChildSpec:
    return ChildSpec(role, [sys.executable, "-c", code], tmp_path / f"{role}.log")


def _poll_until(sup: Supervisor, done: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the supervisor did not get there in time"
        sup.poll()
        time.sleep(0.01)


def test_supervisor_restarts_with_backoff_and_gives_up_saying_so(tmp_path: Path) -> None:
    crasher = _spec(tmp_path, "crasher", "import sys; print('boom', flush=True); sys.exit(3)")
    steady = _spec(tmp_path, "steady", "import time; time.sleep(60)")
    sup = Supervisor([crasher, steady], backoff_seconds=0.05, give_up_after=4,
                     state_path=tmp_path / "state.json")  # fmt: skip
    sup.start_all()
    steady_pid = sup.pid("steady")
    try:
        with pytest.raises(GaveUp) as caught:
            _poll_until(sup, lambda: False)
        message = caught.value.message
        assert "exited 4 times in a row" in message and "gave up after 3 restarts" in message
        assert "last code 3" in message and "crasher.log" in message
        assert sup.restarts("crasher") == 3
        assert sup.delays("crasher") == [0.05, 0.1, 0.2]  # the backoff doubles
        # the other child kept running, untouched
        assert sup.running("steady") and sup.pid("steady") == steady_pid
        assert sup.restarts("steady") == 0
        state = json.loads((tmp_path / "state.json").read_text())
        assert state["crasher"]["restarts"] == 3 and state["crasher"]["last_exit_code"] == 3
        assert (tmp_path / "crasher.log").read_text().count("boom") == 4  # appended, not lost
    finally:
        sup.stop_all(timeout=5)
    assert not sup.running("steady")


def test_supervisor_counts_restarts_on_its_metrics(tmp_path: Path) -> None:
    sleeper = _spec(tmp_path, "sleeper", "import time; time.sleep(60)")
    sup = Supervisor([sleeper], backoff_seconds=0.01)
    port = sup.serve_metrics(free_port())
    sup.start_all()
    try:
        first = sup.pid("sleeper")
        os.kill(first, signal.SIGKILL)
        _poll_until(sup, lambda: sup.pid("sleeper") != first and sup.running("sleeper"))
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert 'esteira_supervisor_restarts_total{role="sleeper"} 1.0' in text
        assert 'esteira_supervisor_child_up{role="sleeper"} 1.0' in text
    finally:
        sup.stop_all(timeout=5)


# ---- the launcher's pieces (fast) --------------------------------------------------------
META = {"name": "m", "namespace": "ns", "labels": {"team": "a"}, "annotations": {"x/y": "z"}}


def test_templates_are_filled_as_the_controller_fills_them() -> None:
    from esteira.launch import fill_templates

    assert fill_templates("--model_name={{.Name}}", META) == "--model_name=m"
    assert fill_templates("{{ .Namespace }}/{{.Labels.team}}", META) == "ns/a"
    assert fill_templates('{{index .Annotations "x/y"}}', META) == "z"
    with pytest.raises(EsteiraError, match=r"\{\{.Spec\}\}.*use \{\{.Name\}\}"):
        fill_templates("{{.Spec}}", META)


def test_the_controller_appends_only_what_is_absent() -> None:
    from esteira.launch import transformer_argv

    def isvc(args: list[str]) -> dict[str, Any]:
        container = {"command": ["python", "-m", "serving", "transformer"], "args": args}
        return {"metadata": META, "spec": {"transformer": {"containers": [container]}}}

    assert transformer_argv(isvc([]))[4:] == [
        "--model_name", "m", "--predictor_host", "m-predictor.ns", "--http_port", "8080"
    ]  # fmt: skip
    given = ["--model_name=other", "--http_port", "9000"]
    assert transformer_argv(isvc(given))[4:] == [*given, "--predictor_host", "m-predictor.ns"]


def test_localize_makes_only_the_listed_substitutions() -> None:
    from esteira.launch import localize

    argv = [
        "python",
        "-m",
        "serving",
        "predictor",
        "--model_name=m",
        "--model_dir=/mnt/models",
        "--http_port=8080",
        "--grpc_port",
        "8081",
        "--predictor_host",
        "h.ns",
        "--other=8080",
    ]
    out = localize(argv, http_port=1, grpc_port=2, models_dir="/d", predictor_host="127.0.0.1:1")
    assert out == ["python", "-m", "serving", "predictor", "--model_name=m", "--model_dir=/d",
                   "--http_port=1", "--grpc_port", "2", "--predictor_host", "127.0.0.1:1",
                   "--other=8080"]  # fmt: skip


def test_runtime_lookup_prefers_the_namespaced_one() -> None:
    from esteira.launch import find_runtime

    cluster = {"kind": "ClusterServingRuntime", "metadata": {"name": "r"}}
    local = {"kind": "ServingRuntime", "metadata": {"name": "r", "namespace": "ns"}}
    assert find_runtime([cluster, local], "r") is local
    assert find_runtime([cluster], "r") is cluster
    with pytest.raises(EsteiraError, match="spec.predictor.model.runtime: names 'x'"):
        find_runtime([cluster, local], "x")


def test_storage_initializer_step_and_model_dir(tmp_path: Path) -> None:
    from esteira.launch import fill_model_dir
    from esteira.registry import Registry, read_model_dir
    from esteira.storage import LocalStorage

    registry = Registry(LocalStorage(tmp_path / "store"), "m")
    version = registry.register({"model.joblib": b"x", "reference.json": b"{}"}, {"a": 1})
    models = fill_model_dir(registry, version.version, tmp_path / "models")
    names = sorted(p.name for p in models.iterdir())
    assert names == ["_COMPLETE", "metadata.json", "model.joblib", "reference.json"]
    assert read_model_dir(models, "m").version == version.version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "store"]  # no staging left
    (models / "metadata.json").unlink()
    with pytest.raises(EsteiraError, match="has no metadata.json"):
        read_model_dir(models, "m")


# ---- the command lines the manifests give ------------------------------------------------
def rendered(overlay: str = "local") -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "manifests" / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def cluster_argv(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What KServe's controller runs: runtime command+args (templates filled) and the
    transformer's command+args plus the controller's three appends."""
    isvc = next(
        o
        for o in objects
        if o["kind"] == "InferenceService" and o["metadata"]["name"] == MODEL_NAME
    )
    meta = isvc["metadata"]
    runtime = next(
        o
        for o in objects
        if o["kind"] == "ServingRuntime" and o["metadata"]["name"] == "esteira-sklearn"
    )
    assert isvc["spec"]["predictor"]["model"]["runtime"] == "esteira-sklearn"
    rc = runtime["spec"]["containers"][0]
    predictor = [a.replace("{{.Name}}", meta["name"]) for a in rc["command"] + rc["args"]]
    tc = isvc["spec"]["transformer"]["containers"][0]
    transformer = [*tc["command"], *tc["args"], "--model_name", meta["name"],
                   "--predictor_host", f"{meta['name']}-predictor.{meta['namespace']}",
                   "--http_port", "8080"]  # fmt: skip
    return {"predictor": predictor, "transformer": transformer}


def substituted(argv: list[str], table: dict[str, str]) -> list[str]:
    """Apply the README's substitutions, token by token (``--flag=value`` or ``--flag value``)."""
    out = []
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if eq and flag in table:
            out.append(f"{flag}={table[flag]}")
        elif i and argv[i - 1] in table:
            out.append(table[argv[i - 1]])
        else:
            out.append(arg)
    return out


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


# ---- `esteira serve` ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    return build_world(tmp_path_factory.mktemp("launch"))


def _ports() -> dict[str, int]:
    # the transformer serves gRPC on its REST port + 1, so it takes two consecutive ports
    return {"predictor": free_port(), "grpc": free_port(), "transformer": free_port(span=2),
            "supervisor": free_port()}  # fmt: skip


@pytest.fixture(scope="module")
def serve(world: World):
    ports = _ports()
    out = world.root / "serve"
    env = {
        **os.environ,
        "ESTEIRA_SERVING__PREDICTOR_PORT": str(ports["predictor"]),
        "ESTEIRA_SERVING__GRPC_PORT": str(ports["grpc"]),
        "ESTEIRA_SERVING__TRANSFORMER_PORT": str(ports["transformer"]),
        "ESTEIRA_SERVING__SUPERVISOR_PORT": str(ports["supervisor"]),
    }
    esteira = str(Path(sys.executable).parent / "esteira")
    log = (world.root / "serve.out").open("wb")
    proc = subprocess.Popen(
        [esteira, "--config", str(world.config_path), "serve", "--out", str(out),
         "--ready-timeout", str(READY_SECONDS)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    endpoints = out / "endpoints.json"
    deadline = time.monotonic() + 2 * READY_SECONDS  # rendering and imports come first
    try:
        while not endpoints.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                output = (world.root / "serve.out").read_text()[-3000:]
                pytest.fail(f"esteira serve (exit code {proc.poll()}): {output}")
            time.sleep(0.5)
        yield {"proc": proc, "out": out, "ports": ports, "env": env,
               "endpoints": json.loads(endpoints.read_text())}  # fmt: skip
    finally:
        pids = []
        if (out / "supervisor.json").exists():
            pids = [c["pid"] for c in json.loads((out / "supervisor.json").read_text()).values()]
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        for pid in pids:  # never leave a server behind, even if serve was killed
            if pid and Path(f"/proc/{pid}").exists():
                os.kill(pid, signal.SIGKILL)


def state(serve: dict) -> dict[str, Any]:
    return json.loads((serve["out"] / "supervisor.json").read_text())


def test_servers_run_the_manifests_command_lines(serve: dict) -> None:
    ports, out = serve["ports"], serve["out"]
    expected = cluster_argv(rendered("local"))
    # the README's list of substitutions, and nothing else
    predictor = substituted(expected["predictor"], {
        "--model_dir": str(out / "models"),
        "--http_port": str(ports["predictor"]),
        "--grpc_port": str(ports["grpc"]),
    })  # fmt: skip
    transformer = substituted(expected["transformer"], {
        "--http_port": str(ports["transformer"]),
        "--predictor_host": f"127.0.0.1:{ports['predictor']}",
    })  # fmt: skip
    running = state(serve)
    assert cmdline(running["predictor"]["pid"]) == predictor
    assert cmdline(running["transformer"]["pid"]) == transformer
    # they are the children of `esteira serve`, and /mnt/models was filled from the registry
    for role in ("predictor", "transformer"):
        status = Path(f"/proc/{running[role]['pid']}/status").read_text()
        assert f"PPid:\t{serve['proc'].pid}\n" in status
    files = sorted(p.name for p in (out / "models").iterdir())
    assert files == ["_COMPLETE", "metadata.json", "model.joblib", "reference.json"]


def test_make_predict_agrees_over_v1_v2_and_grpc(serve: dict, world: World) -> None:
    esteira = str(Path(sys.executable).parent / "esteira")
    result = subprocess.run(
        [esteira, "--config", str(world.config_path), "predict", "--protocol", "all",
         "--endpoints", str(serve["out"] / "endpoints.json")],
        cwd=ROOT, env=serve["env"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert serve["endpoints"]["model_version"] == world.version


def test_predictor_killed_is_restarted_while_the_transformer_keeps_answering(
    serve: dict, world: World
) -> None:
    info = serve["endpoints"]
    before = state(serve)
    machine = world.machine_ids[0]
    body = {"instances": [{"machine_id": machine, **world.request_values[machine]}]}
    with httpx.Client(timeout=10) as client:
        assert client.post(info["transformer"]["v1"], json=body).status_code == 200
        os.kill(before["predictor"]["pid"], signal.SIGKILL)
        seen: list[int] = []
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            status = client.post(info["transformer"]["v1"], json=body).status_code
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == 200 and 503 in seen:
                break
            time.sleep(0.1)
    assert seen[0] == 503 and seen[-1] == 200, seen  # down, then back: no operator action
    assert set(seen) <= {503, 200}, seen
    after = state(serve)
    assert after["predictor"]["restarts"] == 1 and after["predictor"]["last_exit_code"] == -9
    assert after["predictor"]["pid"] != before["predictor"]["pid"]
    assert after["transformer"]["pid"] == before["transformer"]["pid"]  # kept serving
    assert after["transformer"]["restarts"] == 0
    assert cmdline(after["predictor"]["pid"]) == cmdline_of_state(before, "predictor")
    metrics = httpx.get(info["supervisor"]["metrics"], timeout=5).text
    assert 'esteira_supervisor_restarts_total{role="predictor"} 1.0' in metrics
    assert 'esteira_supervisor_restarts_total{role="transformer"} 0.0' in metrics
    assert "restarting in" in (world.root / "serve.out").read_text()


def cmdline_of_state(running: dict[str, Any], role: str) -> list[str]:
    return list(running[role]["argv"])


# ---- the docker runtime ------------------------------------------------------------------
def test_docker_runtime_runs_the_same_argv_in_the_serving_image(world: World) -> None:
    """`esteira serve --runtime docker`: each container runs the process runtime's argv,
    /mnt/models kept and mounted; `esteira predict --protocol all` agrees through it."""
    from esteira import docker_runtime
    from esteira.deploy import serving_image

    if not os.environ.get("DOCKER_HOST"):
        # the private engine comes and goes with test_containers on another worker: only an
        # engine named here stays up for the whole test
        pytest.skip("set DOCKER_HOST to an engine holding the serving image (`make images`)")
    image = serving_image(world.settings)
    engine = docker_runtime.engine_env()
    try:
        docker_runtime.check_engine(image)
    except EsteiraError as exc:
        pytest.skip(f"no Docker engine with the serving image: {exc.message}")
    usage = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", image, "-m", "serving", "--help"],
        capture_output=True, text=True, timeout=300, check=False, env=engine,
    )  # fmt: skip
    if "--model_dir" not in usage.stdout:
        pytest.skip(f"{image} predates the predictor's --model_dir: run `make images`")
    ports = _ports()
    out = world.root / "serve-docker"
    env = {
        **os.environ,
        "ESTEIRA_SERVING__PREDICTOR_PORT": str(ports["predictor"]),
        "ESTEIRA_SERVING__GRPC_PORT": str(ports["grpc"]),
        "ESTEIRA_SERVING__TRANSFORMER_PORT": str(ports["transformer"]),
        "ESTEIRA_SERVING__SUPERVISOR_PORT": "0",
    }
    esteira = str(Path(sys.executable).parent / "esteira")
    config = ["--config", str(world.config_path)]
    with (world.root / "serve-docker.out").open("wb") as log:
        proc = subprocess.Popen(
            [esteira, *config, "serve", "--runtime", "docker", "--out", str(out)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not (out / "endpoints.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail((world.root / "serve-docker.out").read_text()[-3000:])
            time.sleep(0.5)
        expected = cluster_argv(rendered("local"))
        for role, argv in expected.items():
            name = f"{docker_runtime.CONTAINER_PREFIX}-{role}-{ports['transformer']}"
            inspect = subprocess.run(
                ["docker", "inspect", "--format", "{{json .Path}} {{json .Args}}", name],
                capture_output=True, text=True, check=True, timeout=60, env=engine,
            )  # fmt: skip
            path, args = inspect.stdout.split(" ", 1)
            table = {"--http_port": str(ports[role]), "--grpc_port": str(ports["grpc"]),
                     "--predictor_host": f"127.0.0.1:{ports['predictor']}"}  # fmt: skip
            assert [json.loads(path), *json.loads(args)] == substituted(argv, table)
        result = subprocess.run(
            [esteira, *config, "predict", "--protocol", "all",
             "--endpoints", str(out / "endpoints.json")],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)


def test_containers_resolve_the_use_case_and_paths_this_process_did(tmp_path: Path) -> None:
    """A relative repo path would resolve under the image's /app, where the use case's
    definitions are but not its data: the containers get the resolved name and host paths."""
    from esteira import manifests as m
    from esteira.config import Settings
    from esteira.docker_runtime import POD_REGISTRY, pinned_settings

    settings = Settings(use_case="demand_forecasting", storage={"root": str(tmp_path / "s")})
    pinned = pinned_settings(settings)
    assert pinned["ESTEIRA_USE_CASE"] == "demand_forecasting"
    repo = Path(pinned["ESTEIRA_FEATURES__REPO_PATH"])
    assert repo.is_absolute() and (repo / "dataset.yaml").is_file()
    assert repo.name == "demand_forecasting"
    assert pinned["ESTEIRA_STORAGE__ROOT"] == str((tmp_path / "s").resolve())
    # a pod's own Feast registry, where the manifests' esteira-config puts it
    (config_map,) = [
        o
        for o in m.parse_objects(m.kustomize_build(ROOT / "manifests" / "overlays" / "production"))
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("esteira-config")
    ]
    assert config_map["data"]["ESTEIRA_FEATURES__REGISTRY_PATH"] == POD_REGISTRY
    assert pinned["ESTEIRA_FEATURES__REGISTRY_PATH"] == POD_REGISTRY


def test_the_serving_image_holds_every_use_case() -> None:
    """On a cluster the InferenceService names its use case (ESTEIRA_USE_CASE): the serving
    image must carry feature_repo/ for the servers to read its settings and contract."""
    from esteira import docker_runtime, usecase
    from esteira.config import Settings
    from esteira.deploy import serving_image

    if not os.environ.get("DOCKER_HOST"):
        # the private engine comes and goes with test_containers on another worker: only an
        # engine named here stays up for the whole test
        pytest.skip("set DOCKER_HOST to an engine holding the serving image (`make images`)")
    image = serving_image(Settings())
    try:
        docker_runtime.check_engine(image)
    except EsteiraError as exc:
        pytest.skip(f"no Docker engine with the serving image: {exc.message}")
    listed = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "python", image, "-c",
         "from esteira import usecase; print(' '.join(usecase.names()))"],
        capture_output=True, text=True, timeout=300, check=False,
        env=docker_runtime.engine_env(),
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert listed.stdout.split() == usecase.names()
