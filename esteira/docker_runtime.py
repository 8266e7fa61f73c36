"""`esteira serve --runtime docker`: the manifests' command lines in the serving image.

Each server is ``docker run`` of the serving image (``deploy.serving_image``) with the
container's ``command`` as the entrypoint and the same argv the process runtime starts,
except that ``/mnt/models`` stays as it is: the local models directory is mounted there,
read-only, as KServe's storage initializer leaves it in the pod. The containers share the
host's network (the servers already listen on the local ports, and the transformer reaches
the predictor at 127.0.0.1), run as the calling user with a read-only root filesystem and
/tmp writable, as in the pods, and see the config file, the local model registry and the
feature repository at the same paths as here. Each builds its own Feast registry under
/tmp from the definitions, as a pod does (``features.registry_path``). The engine is
``DOCKER_HOST``, else the private one `make images` started (``esteira.engine``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from esteira.config import Settings
from esteira.errors import EsteiraError
from esteira.supervisor import ChildSpec

CONTAINER_PREFIX = "esteira-serve"
MODELS_MOUNT = "/mnt/models"
# where a pod keeps its own Feast registry, as the manifests' esteira-config says
POD_REGISTRY = "/tmp/feast/registry.db"


def docker_cli() -> str:
    docker = shutil.which("docker")
    if docker is None:
        raise EsteiraError(
            "--runtime docker",
            "the docker CLI is not on PATH",
            "install it or use --runtime process",
        )
    return docker


def engine_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) with the engine to use as ``DOCKER_HOST``: the one
    set, else the private engine `make images` started, else the system socket."""
    from esteira.engine import docker_host

    env = dict(os.environ if env is None else env)
    env["DOCKER_HOST"] = env.get("DOCKER_HOST") or docker_host()
    return env


def check_engine(image: str, env: dict[str, str] | None = None) -> None:
    """A clear error unless a Docker engine answers and holds ``image``."""
    docker = docker_cli()
    env = engine_env(env)
    where = env["DOCKER_HOST"]
    info = subprocess.run(
        [docker, "info", "--format", "{{.ServerVersion}}"],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    if info.returncode != 0:
        raise EsteiraError(
            "--runtime docker",
            f"no Docker engine answers at {where} ({info.stderr.strip()[:200]})",
            "start one and set DOCKER_HOST, or use --runtime process",
        )
    found = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )  # fmt: skip
    if found.returncode != 0:
        raise EsteiraError(
            "image",
            f"the serving image {image} is not in the engine at {where}",
            "run `make images`",
        )


def _mounts(settings: Settings, env: dict[str, str]) -> list[str]:
    """The config file, the local registry and the feature repo, at the same paths."""
    paths: list[tuple[str, str]] = []
    config = env.get("ESTEIRA_CONFIG_FILE")
    if config:
        paths.append((config, "ro"))
    if settings.storage.kind == "local":
        Path(settings.storage.root).mkdir(parents=True, exist_ok=True)
        paths.append((str(Path(settings.storage.root).resolve()), "rw"))
    paths.append((str(Path(settings.features.repo_path).resolve()), "rw"))
    out: list[str] = []
    for path, mode in paths:
        out += ["-v", f"{path}:{path}:{mode}"]
    return out


def pinned_settings(settings: Settings) -> dict[str, str]:
    """What the containers must resolve as this process did: its use case, and the mounted
    feature repo and local model registry at their absolute host paths (a relative path would
    resolve under the image's /app, where the use case's definitions are but not its data).
    Their Feast registry is their own, built from the definitions in /tmp as in a pod
    (:data:`POD_REGISTRY`)."""
    pinned = {
        "ESTEIRA_USE_CASE": settings.use_case,
        "ESTEIRA_FEATURES__REPO_PATH": str(Path(settings.features.repo_path).resolve()),
        "ESTEIRA_FEATURES__REGISTRY_PATH": POD_REGISTRY,
    }
    if settings.storage.kind == "local":
        pinned["ESTEIRA_STORAGE__ROOT"] = str(Path(settings.storage.root).resolve())
    return pinned


def docker_argv(
    name: str, image: str, argv: list[str], models: Path, mounts: list[str], env_names: list[str]
) -> list[str]:
    """``docker run`` of ``argv`` (``argv[0]`` is the entrypoint) in ``image``."""
    uid, gid = os.getuid(), os.getgid()
    run = [docker_cli(), "run", "--rm", "--name", name, "--network", "host",
           "--user", f"{uid}:{gid}", "--read-only", "--tmpfs", "/tmp",
           "-v", f"{models.resolve()}:{MODELS_MOUNT}:ro", *mounts]  # fmt: skip
    for key in env_names:
        run += ["-e", key]  # the value comes from the CLI's environment, never the argv
    return [*run, "--entrypoint", argv[0], image, *argv[1:]]


def child_specs(
    settings: Settings,
    argvs: dict[str, list[str]],
    models: Path,
    out: Path,
    env: dict[str, str],
) -> list[ChildSpec]:
    from esteira.deploy import serving_image

    image = serving_image(settings)
    env = engine_env(env)
    check_engine(image, env)
    mounts = _mounts(settings, env)
    env = {**env, **pinned_settings(settings)}
    env_names = sorted(
        k
        for k in env
        if k.startswith("ESTEIRA_") or k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    )
    specs = []
    for role, argv in argvs.items():
        name = f"{CONTAINER_PREFIX}-{role}-{settings.serving.transformer_port}"
        specs.append(
            ChildSpec(
                role,
                docker_argv(name, image, argv, models, mounts, env_names),
                out / f"{role}.log",
                env,
                cleanup=[docker_cli(), "rm", "-f", name],
            )
        )
    return specs
