"""Compile pipelines to YAML for the Kubeflow UI and API."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from kfp import compiler

from esteira.config import Settings
from esteira.errors import ConfigError
from esteira.kfp_support import IMAGE_ENV


def use_image(settings: Settings) -> None:
    """The component image; fixed when a ``components.<step>.component`` is first imported."""
    os.environ.setdefault(IMAGE_ENV, settings.image.reference)


def load_pipeline(name: str, settings: Settings):
    """The pipeline function of ``pipelines/<name>.py`` built with ``settings``."""
    from pipelines import PIPELINES

    if name not in PIPELINES:
        raise ConfigError("pipeline", f"unknown pipeline {name!r}", f"use one of {list(PIPELINES)}")
    use_image(settings)
    return importlib.import_module(f"pipelines.{name}").build(settings)


def compile_pipeline(name: str, settings: Settings, out_dir: str | Path = "dist/pipelines") -> Path:
    out = Path(out_dir) / f"{name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(load_pipeline(name, settings), package_path=str(out))
    return out
