"""Compile a pipeline, upload it to Kubeflow Pipelines and start a run.

The KFP API is probed first with a short, bounded request: an unreachable
``kfp.host`` fails in seconds with one clear error, before anything is compiled
(``kfp.Client`` itself talks to the API in its constructor, with no timeout).
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from esteira.config import Settings
from esteira.errors import EsteiraError

log = logging.getLogger(__name__)

HEALTHZ_PATH = "/apis/v2beta1/healthz"
DEFAULT_TIMEOUT = (3.0, 10.0)  # (connect, read) seconds


@dataclass(frozen=True)
class SubmitResult:
    """A started run: its id, where to look at it and the compiled package."""

    run_id: str
    run_url: str
    package: Path
    experiment: str


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``["k=v", ...]`` into a dict; values are JSON when they parse (1, 0.5, true), else text."""
    params: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise EsteiraError(
                "--param", f"{pair!r} is not key=value", "write --param name=value, e.g. days=30"
            )
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return params


def check_kfp_reachable(
    host: str,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    headers: dict[str, str] | None = None,
) -> Any:
    """Raise an EsteiraError naming ``kfp.host`` unless the KFP API answers within ``timeout``;
    returns the healthz response (``headers``: e.g. the credentials to send)."""
    import requests

    parsed = urllib.parse.urlparse(host)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise EsteiraError(
            "kfp.host",
            f"{host!r} is not an http(s) URL",
            "set kfp.host (or ESTEIRA_KFP__HOST) to e.g. http://127.0.0.1:8888",
        )
    try:
        return requests.get(
            host.rstrip("/") + HEALTHZ_PATH,
            timeout=timeout,
            allow_redirects=False,
            headers=headers or {},
        )
    except requests.RequestException as exc:
        raise EsteiraError(
            "kfp.host",
            f"the Kubeflow Pipelines API at {host} is unreachable ({type(exc).__name__})",
            "port-forward the KFP UI/API (kubectl -n kubeflow port-forward svc/ml-pipeline-ui "
            "8888:80) or set kfp.host / ESTEIRA_KFP__HOST",
        ) from None


def _compile(pipeline: str, settings: Settings, out_dir: Path) -> Path:
    from esteira_cli.compile import compile_pipeline  # the compiler lives with the pipelines

    return Path(compile_pipeline(pipeline, settings, out_dir))


def submit(
    pipeline: str,
    settings: Settings,
    params: dict[str, Any] | None = None,
    *,
    out_dir: Path = Path("dist/pipelines"),
    run_name: str | None = None,
) -> SubmitResult:
    """Compile ``pipeline``, upload it and start a run in experiment ``kfp.experiment``."""
    host = settings.kfp.host
    check_kfp_reachable(host)
    package = _compile(pipeline, settings, out_dir)
    import kfp

    name = run_name or f"{pipeline}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    try:
        client = kfp.Client(host=host)
        result = client.create_run_from_pipeline_package(
            str(package),
            arguments=params or {},
            run_name=name,
            experiment_name=settings.kfp.experiment,
        )
    except Exception as exc:  # kfp raises ApiException, urllib3 and its own errors
        raise EsteiraError(
            "kfp.host",
            f"Kubeflow Pipelines at {host} refused the run ({type(exc).__name__}: "
            f"{_first_line(exc)})",
            "check the pipeline parameters, kfp.experiment and the KFP API logs",
        ) from None
    run_id = str(result.run_id)
    url = f"{host.rstrip('/')}/#/runs/details/{run_id}"
    log.info("started run %s of %s: %s", run_id, pipeline, url)
    return SubmitResult(run_id, url, package, settings.kfp.experiment)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""
