"""Pipeline plumbing shared by every pipeline: credentials and the default parameters."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kfp import kubernetes

from esteira import __version__
from esteira.config import ROOT, Settings, settings_to_json

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}


def with_credentials(task, settings: Settings):
    """Credentials reach a task from a Kubernetes Secret as env vars, never as parameters."""
    task = kubernetes.use_secret_as_env(
        task, secret_name=settings.kfp.secret_name, secret_key_to_env=S3_ENV
    )
    task.set_caching_options(False)
    return task


def code_version(root: Path = ROOT) -> str:
    """The git commit of the code (with -dirty for local edits), or the package version."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


def default_config(settings: Settings) -> str:
    """The non-secret configuration, as the pipelines' ``config`` parameter."""
    return settings_to_json(settings)
