"""`esteira docs [--check]`: each component's README.md, generated from its code and metadata."""

from __future__ import annotations

import argparse
import sys

from esteira.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("docs", help="write components/<name>/README.md from the components")
    p.add_argument("components", nargs="*", help="default: every component")
    p.add_argument("--check", action="store_true", help="fail (exit 1) if a README is stale")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from esteira_cli.catalog import COMPONENTS_DIR, component_names, render_readme, stale_readmes

    names = args.components or component_names()
    if args.check:
        stale = stale_readmes(names)
        for line in stale:
            print(line, file=sys.stderr)
        return 1 if stale else 0
    for name in names:
        path = COMPONENTS_DIR / name / "README.md"
        path.write_text(render_readme(name))
        print(f"wrote {path.relative_to(COMPONENTS_DIR.parent)}")
    return 0
