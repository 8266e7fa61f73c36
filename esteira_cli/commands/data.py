"""`esteira data generate`: the seeded fleet telemetry (normal, stable or drifted period)."""

from __future__ import annotations

import argparse

from esteira.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="demo data")
    p.add_argument("action", choices=["generate"])
    p.add_argument("--out", help="default: data.source_uri")
    p.add_argument("--machines", type=int)
    p.add_argument("--days", type=int)
    p.add_argument("--start")
    p.add_argument("--seed", type=int)
    p.add_argument("--period", choices=["normal", "stable", "drifted"])
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from esteira.data import generate_fleet, write_fleet

    d = settings.data
    frame = generate_fleet(
        args.machines or d.machines,
        args.days or d.days,
        args.start or d.start,
        d.seed if args.seed is None else args.seed,
        args.period or d.period,
    )
    out = args.out or d.source_uri
    write_fleet(frame, out)
    print(f"wrote {len(frame)} rows to {out}")
    return 0
