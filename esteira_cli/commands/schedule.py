"""`esteira schedule`: recurring runs on Kubeflow Pipelines (the monitoring loop on a cluster).

``esteira schedule monitoring --cron "0 6 * * *"`` creates, or updates, the recurring run of
an uploaded version of the pipeline (``--version``, default the newest) in experiment
``kfp.experiment``: one run at a time (``max_concurrency`` 1), no backfill of missed runs
(``no_catchup``), the parameters from the configuration (``--param`` overrides them).
``--list`` shows the experiment's recurring runs, ``--delete NAME`` removes one.
"""

from __future__ import annotations

import argparse

from esteira.config import Settings
from esteira.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "schedule",
        help="create/update (--cron), --list or --delete recurring runs on Kubeflow Pipelines",
        description=__doc__,
    )
    p.add_argument("pipeline", nargs="?", metavar="PIPELINE", help="e.g. monitoring")
    p.add_argument("--cron", help='5 fields (minute hour day month weekday), e.g. "0 6 * * *"')
    p.add_argument("--version", help="uploaded version to run (default: the newest)")
    p.add_argument("--name", help="recurring run name (default: esteira-PIPELINE)")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="parameter override"
    )
    p.add_argument("--list", action="store_true", help="list the experiment's recurring runs")
    p.add_argument("--delete", metavar="NAME", help="delete the recurring run NAME")
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from esteira_cli import kfp_api as k
    from esteira_cli.submit import parse_params
    from pipelines import PIPELINES

    if args.list or args.delete:
        if args.pipeline or args.cron:
            raise ConfigError(
                "--list/--delete", "take no PIPELINE or --cron", "run them on their own"
            )
        api = k.KfpApi(settings)
        if args.delete:
            n = k.delete_schedule(api, settings, args.delete)
            print(f"deleted recurring run {args.delete} ({n})")
            return 0
        rows = k.list_schedules(api, settings)
        for row in rows:
            print(f"{row['name']}\t{row['cron']}\t{row['mode']}\tversion {row['version_id']}")
        if not rows:
            print(f"no recurring runs in experiment {settings.kfp.experiment}")
        return 0
    if not args.pipeline or not args.cron:
        raise ConfigError(
            "esteira schedule",
            "needs PIPELINE and --cron (or --list, or --delete NAME)",
            'e.g. esteira schedule monitoring --cron "0 6 * * *"',
        )
    if args.pipeline not in PIPELINES:
        raise ConfigError(
            "pipeline", f"unknown pipeline {args.pipeline!r}", f"use one of {list(PIPELINES)}"
        )
    k.cron_6_fields(args.cron)  # a bad expression fails before any request
    overrides = parse_params(args.param)
    display = k.display_name(args.pipeline)
    done = k.schedule_pipeline(
        k.KfpApi(settings),
        settings,
        display_name=display,
        cron=args.cron,
        name=args.name or display,
        version=args.version,
        overrides=overrides,
    )
    state = "unchanged" if not done.changed else ("updated" if done.replaced else "created")
    print(
        f"recurring run {done.name} {state}: {display} {done.version}, cron {done.cron!r} "
        f"(seconds first), max_concurrency 1, no_catchup, id {done.recurring_run_id}"
    )
    return 0
