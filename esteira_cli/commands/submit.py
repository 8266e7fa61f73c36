"""`esteira submit PIPELINE [--param k=v]...`: compile, upload and start a KFP run."""

from __future__ import annotations

import argparse
from pathlib import Path

from esteira.config import Settings


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit",
        help="compile a pipeline and start a run on Kubeflow Pipelines (kfp.host)",
        description=__doc__,
    )
    parser.add_argument("pipeline", metavar="PIPELINE", help="pipeline name, e.g. training")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pipeline parameter (repeatable); JSON values are parsed: 30, 0.5, true",
    )
    parser.add_argument(
        "--out-dir", default="dist/pipelines", help="where the compiled package is written"
    )
    parser.add_argument("--run-name", help="run name (default: PIPELINE-<UTC timestamp>)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Handler: submit and print the run id and URL."""
    from esteira_cli.submit import parse_params, submit

    result = submit(
        args.pipeline,
        settings,
        parse_params(args.param),
        out_dir=Path(args.out_dir),
        run_name=args.run_name,
    )
    print(f"run {result.run_id} started in experiment {result.experiment}: {result.run_url}")
    return 0
