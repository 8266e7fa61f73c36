"""`esteira`: the command-line entry point.

Subcommands live in ``esteira_cli/commands/<name>.py`` and are discovered, so a new
capability adds a module instead of editing this file. A user's mistake
(``EsteiraError``) is printed as one clear line with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys

from esteira import __version__
from esteira.config import load_settings
from esteira.errors import EsteiraError
from esteira_cli import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="esteira", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML configuration file (env ESTEIRA_* overrides it)")
    parser.add_argument(
        "--usecase",
        help="a use case: feature_repo/<name>/ or its model's name (default: feature_repo/usecases.yaml)",
    )
    parser.add_argument("--version", action="version", version=f"esteira {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # kserve parses sys.argv when imported (and `--config` abbreviates its `--configure_logging`):
    # ours are parsed now, so libraries imported by a handler see none.
    sys.argv = sys.argv[:1]
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.usecase:
        # as ESTEIRA_USE_CASE: it wins over the YAML file and reaches every child process
        os.environ["ESTEIRA_USE_CASE"] = args.usecase
    try:
        settings = load_settings(args.config)
        return int(args.handler(args, settings) or 0)
    except EsteiraError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
