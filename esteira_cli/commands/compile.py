"""`esteira compile [PIPELINE...]`: pipeline YAML for the Kubeflow UI, in dist/pipelines/."""

from __future__ import annotations

import argparse

from esteira.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile pipelines to dist/pipelines/<name>.yaml")
    p.add_argument("pipelines", nargs="*", help="default: every pipeline")
    p.add_argument("--out", default="dist/pipelines")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from esteira_cli.compile import compile_pipeline
    from pipelines import PIPELINES

    for name in args.pipelines or [p for p in PIPELINES if _exists(p)]:
        print(f"compiled {compile_pipeline(name, settings, args.out)}")
    return 0


def _exists(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"pipelines.{name}") is not None
