"""`esteira feast-serve`: Feast's HTTP feature server on 127.0.0.1 for the feature repo."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from esteira.config import Settings
from esteira.errors import ConfigError

REDIS_VARIANT = "variants/redis.yaml"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "feast-serve",
        help="run `feast serve` on 127.0.0.1 for the feature repository",
        description=__doc__,
    )
    parser.add_argument("--port", type=int, default=6566, help="HTTP port (default 6566)")
    parser.set_defaults(handler=run)


def feast_executable() -> str:
    """The ``feast`` next to this interpreter (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / "feast"
    found = str(local) if local.is_file() else shutil.which("feast")
    if not found:
        raise ConfigError("feast", "the feast CLI is not installed", "run `make setup`")
    return found


def serve_command(settings: Settings, port: int) -> tuple[list[str], dict[str, str]]:
    """The `feast serve` command line and environment for these settings."""
    from esteira.feast_store import repo_dir

    repo = repo_dir(settings)
    command = [feast_executable(), "-c", str(repo)]
    env = dict(os.environ)
    if settings.features.online_store == "redis":
        command += ["-f", str(repo / REDIS_VARIANT)]
        env["ESTEIRA_REDIS"] = settings.features.redis_connection
    command += ["serve", "-h", "127.0.0.1", "-p", str(port)]
    return command, env


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the feature server in the foreground until interrupted."""
    if not 0 < args.port < 65536:
        raise ConfigError("--port", f"{args.port} is not a TCP port", "use 1-65535")
    from esteira.feast_store import repo_dir

    if not (repo_dir(settings) / "data" / "registry.db").is_file():
        raise ConfigError(
            "features.repo_path",
            "the Feast registry does not exist yet",
            "run the training pipeline (`make run`) to apply and materialize the features",
        )
    command, env = serve_command(settings, args.port)
    print(f"feast serve on http://127.0.0.1:{args.port} ({' '.join(command)})", flush=True)
    try:
        return subprocess.call(command, env=env)
    except KeyboardInterrupt:
        return 130
