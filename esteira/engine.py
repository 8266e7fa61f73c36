"""The Docker engine esteira uses: find it, start or stop the private one, check an image.

One implementation of the daemon lifecycle lives in ``docker/engine.sh`` (``make images``
and ``make images-down`` call it); this module is its Python face for the runner, the
tests and the benchmarks:

- :func:`docker_host` the engine address: ``$DOCKER_HOST``, else the private daemon's
  socket (``~/.cache/esteira/docker/docker.sock``) when it exists, else the system socket.
- :func:`client` a ``docker.DockerClient`` that answered a ping, else one-line EsteiraError
  naming ``make images``.
- :func:`start` / :func:`stop` the private daemon (``engine.sh up`` / ``down``).
- :func:`require_image` the image is in the engine (no registry is assumed).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from esteira.errors import EsteiraError

ROOT = Path(__file__).resolve().parent.parent
ENGINE_SCRIPT = ROOT / "docker" / "engine.sh"
BUILD_SCRIPT = ROOT / "docker" / "build.sh"
SYSTEM_SOCKET = "unix:///var/run/docker.sock"


def private_dir() -> Path:
    """Where the private daemon keeps its data root, socket, PID file and log."""
    if d := os.environ.get("ESTEIRA_DOCKER_DIR"):
        return Path(d)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "esteira" / "docker"


def private_host() -> str:
    return f"unix://{private_dir() / 'docker.sock'}"


def docker_host() -> str:
    if host := os.environ.get("DOCKER_HOST"):
        return host
    if (private_dir() / "docker.sock").exists():
        return private_host()
    return SYSTEM_SOCKET


def client(timeout: int = 120) -> Any:
    """A Docker client for :func:`docker_host` that answered a ping."""
    host = docker_host()
    try:
        import docker

        c = docker.DockerClient(base_url=host, timeout=timeout, version="auto")
        c.ping()
        return c
    except Exception:  # any failure to reach it is the same fact for the user
        raise EsteiraError(
            "runner docker",
            f"no Docker engine answers at {host}",
            "run `make images` (it starts a private engine and builds the images), or set DOCKER_HOST",
        ) from None


def require_image(c: Any, reference: str) -> dict[str, Any]:
    """The image's attributes; a one-line error naming ``make images`` when it is absent."""
    import docker

    try:
        return c.images.get(reference).attrs
    except docker.errors.ImageNotFound:
        raise EsteiraError(
            "runner docker",
            f"image {reference} is not in the engine at {docker_host()}",
            "run `make images` (with the same config) to build it",
        ) from None


def start(timeout: float = 300, *, install: bool = True) -> str:
    """Make an engine answer (starting the private daemon, installing docker.io first when
    ``install`` and dockerd is missing); its DOCKER_HOST."""
    env = {**os.environ, "ESTEIRA_ENGINE_INSTALL": "1" if install else "0"}
    proc = subprocess.run(
        [str(ENGINE_SCRIPT), "up"], capture_output=True, text=True, timeout=timeout, env=env
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EsteiraError("docker engine", f"could not start one: {tail}", "see docker/engine.sh")
    return proc.stdout.strip().splitlines()[-1].split("=", 1)[1]


def stop(timeout: float = 60) -> None:
    """Stop the private daemon (by its PID); an engine esteira did not start is left alone."""
    subprocess.run([str(ENGINE_SCRIPT), "down"], capture_output=True, text=True, timeout=timeout)


def private_running() -> bool:
    pidfile = private_dir() / "dockerd.pid"
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False
