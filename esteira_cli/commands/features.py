"""`esteira features materialize [--full]`: refill the online store from the offline sources.

After the online store lost its data (Redis restarted without persistence, a new
SQLite file) serving answers 503 "online store is empty"; ``--full`` reloads every
feature view's TTL window. Without it, views already materialized load only what is
new, unless the store's sentinel is gone, which makes it a full reload anyway.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime

from esteira.config import Settings
from esteira.errors import ConfigError, EsteiraError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="the Feast online store", description=__doc__)
    p.add_argument("action", choices=["materialize"])
    p.add_argument(
        "--full",
        action="store_true",
        help="reload every view's window (after the store was emptied)",
    )
    p.add_argument("--end", help="ISO time to materialize up to (default: newest source row + 1 s)")
    p.set_defaults(handler=handle)


def _end(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            "--end", f"{text!r} is not an ISO time", "pass e.g. 2025-03-01T00:00:00+00:00"
        ) from None


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from esteira.feast_repo import materialize
    from esteira.online import _UNAVAILABLE, OnlineFeatures

    end = _end(args.end)
    where = OnlineFeatures._describe(settings)
    try:
        result = materialize(settings, end, full=args.full)
    except _UNAVAILABLE as exc:
        raise EsteiraError(
            "features.online_store",
            f"{where} cannot be reached ({type(exc).__name__}: {exc})",
            "start it or fix features.redis_connection, then run this again",
        ) from None
    except FileNotFoundError as exc:
        raise EsteiraError(
            "features",
            f"a feature source is missing ({exc.filename or exc})",
            "publish the sources first: `make run`",
        ) from None
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0
