"""`esteira data generate`: the use case's seeded demo data (normal, stable or drifted period)."""

from __future__ import annotations

import argparse

from esteira.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="demo data")
    p.add_argument("action", choices=["generate"])
    p.add_argument("--out", help="default: data.source_uri")
    p.add_argument("--machines", type=int, help="predictive maintenance: fleet size")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a generator parameter (data.generator), e.g. stores=5; repeatable",
    )
    p.add_argument("--days", type=int)
    p.add_argument("--start")
    p.add_argument("--seed", type=int)
    p.add_argument("--period", choices=["normal", "stable", "drifted"])
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    import yaml

    from esteira.data import write_fleet
    from esteira.errors import ConfigError
    from esteira.usecase import UseCaseError, generate_data

    params = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError("--param", f"{item!r} is not KEY=VALUE", "e.g. --param stores=5")
        params[key] = yaml.safe_load(value)
    try:
        given = {
            "machines": args.machines,
            "days": args.days,
            "start": args.start,
            "seed": args.seed,
            "period": args.period,
        }
        frame, _ = generate_data(
            settings, **(params | {k: v for k, v in given.items() if v is not None})
        )
    except UseCaseError as exc:
        raise ConfigError("use_case", str(exc), "see feature_repo/<use case>/") from None
    out = args.out or settings.data.source_uri
    write_fleet(frame, out)
    print(f"wrote {len(frame)} rows to {out}")
    return 0
