"""`esteira upload [PIPELINE...] --version V`: compiled pipelines as versions on Kubeflow Pipelines.

Each ``dist/pipelines/<name>.yaml`` (``make compile``) is added as version ``V`` of its KFP
pipeline (``esteira-<name>``), which is created when missing. Uploading the same version
with the same content again changes nothing; other content under an existing version is
an error that says what to do.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from esteira.config import Settings
from esteira.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upload",
        help="upload compiled pipelines as version V of their KFP pipelines (kfp.host)",
        description=__doc__,
    )
    p.add_argument("pipelines", nargs="*", metavar="PIPELINE", help="default: every pipeline")
    p.add_argument("--version", required=True, help="version name, e.g. 0.2.0 (the release)")
    p.add_argument("--dir", default="dist/pipelines", help="where the compiled YAMLs are")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from esteira_cli.kfp_api import KfpApi, check_images, read_package, upload_package
    from pipelines import PIPELINES

    version = args.version.strip()
    if not version or len(version) > 100:
        raise ConfigError("--version", "must be 1 to 100 characters", "e.g. --version 0.2.0")
    names = args.pipelines or list(PIPELINES)
    unknown = [n for n in names if n not in PIPELINES]
    if unknown:
        raise ConfigError("pipeline", f"unknown pipeline {unknown[0]!r}", f"use {list(PIPELINES)}")
    # every package is read and checked before anything is sent
    packages = [read_package(Path(args.dir) / f"{name}.yaml") for name in names]
    for package in packages:
        check_images(package, settings)
    api = KfpApi(settings)
    for package in packages:
        done = upload_package(api, package, version)
        state = "uploaded" if done.created else "already there (same content)"
        print(
            f"{done.pipeline} {done.version}: {state} "
            f"(pipeline {done.pipeline_id}, version {done.version_id})"
        )
    return 0
