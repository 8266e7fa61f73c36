"""What every KFP component shares: the image, the error boundary, and artifact I/O.

Components are lightweight Python components on one image built from the lock
(``docker/Dockerfile``): no ``pip install`` at run time (``install_kfp_package=False``,
no ``packages_to_install``). The image reference is fixed when the pipeline
modules are imported; ``esteira compile`` sets ``ESTEIRA_COMPONENT_IMAGE`` from the
configuration before it imports them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from esteira.kfp_sdk import import_kfp

import_kfp()

from kfp import dsl  # noqa: E402

from esteira.config import ImageSettings  # noqa: E402

IMAGE_ENV = "ESTEIRA_COMPONENT_IMAGE"
ERRORS_DIR_ENV = "ESTEIRA_ERRORS_DIR"


def component_image() -> str:
    return os.environ.get(IMAGE_ENV) or ImageSettings().reference


def component(fn: Callable) -> Callable:
    """``@dsl.component`` on the esteira image, with nothing installed at run time."""
    return dsl.component(fn, base_image=component_image(), install_kfp_package=False)


@contextlib.contextmanager
def guarded(task: str) -> Iterator[None]:
    """Turn a user's mistake into one clear line and a failed task, not a traceback."""
    from esteira.errors import EsteiraError

    try:
        yield
    except EsteiraError as exc:
        print(f"error: {exc.message}", file=sys.stderr, flush=True)
        errors_dir = os.environ.get(ERRORS_DIR_ENV)
        if errors_dir:
            Path(errors_dir).mkdir(parents=True, exist_ok=True)
            (Path(errors_dir) / f"{task}.json").write_text(
                json.dumps({"task": task, "error": exc.message})
            )
        raise SystemExit(1) from None


def write_json(path: str, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
