"""`esteira compile [NAME...]`: pipeline YAML in dist/pipelines/, component YAML in dist/components/."""

from __future__ import annotations

import argparse

from esteira.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compile",
        help="compile pipelines to dist/pipelines/<name>.yaml and components to "
        "dist/components/<name>.yaml",
    )
    p.add_argument("names", nargs="*", help="pipelines or components (default: all of them)")
    p.add_argument("--out", default="dist/pipelines", help="where pipelines go")
    p.add_argument("--components-out", default="dist/components", help="where components go")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from esteira.kfp_sdk import import_kfp

    import_kfp()  # before anything imports kfp: compiling needs no API client
    from esteira_cli.catalog import compile_component, component_names
    from esteira_cli.compile import compile_pipeline, use_image
    from pipelines import PIPELINES

    use_image(settings)
    components = component_names()
    pipelines = [p for p in PIPELINES if _exists(p)]
    names = args.names or [*pipelines, *components]
    for name in names:
        if name in components and name not in pipelines:
            print(f"compiled {compile_component(name, args.components_out)}")
        else:
            print(f"compiled {compile_pipeline(name, settings, args.out)}")
    return 0


def _exists(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(f"pipelines.{name}") is not None
