"""`esteira search-trial`: one search trial on a training set, as a Katib trial runs it.

Prints ``cv_<metric>=<mean CV score>`` (Katib's stdout metrics collector reads it) for the
hyperparameters given with ``--param name=value``, on the same time-ordered CV folds of
the training window as the training pipeline's search (components/search_trials/).
"""

from __future__ import annotations

import argparse
import json

from esteira.config import Settings
from esteira.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search-trial", help="one hyperparameter trial (a Katib trial's command)")
    p.add_argument(
        "--training-set", required=True, help="Parquet: path or s3:// (build-training-set's)"
    )
    p.add_argument("--param", action="append", default=[], help="name=value, one per parameter")
    p.set_defaults(handler=handle)


def parse_params(items: list[str], settings: Settings) -> dict:
    from esteira.search import coerce_params, space_for

    space = space_for(settings.model)
    params = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in space:
            raise ConfigError(
                "--param",
                f"{item!r} is not name=value of a searched parameter",
                f"use one of {sorted(space)}",
            )
        try:
            params[name] = json.loads(text)
        except json.JSONDecodeError:
            params[name] = text  # a categorical string such as sqrt
    return coerce_params(params, space)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from components.search_trials.logic import run_trials
    from esteira.contract import load_contract
    from esteira.parquet import read_parquet
    from esteira.search import Trial, metric_for

    settings = settings.resolved()
    params = parse_params(args.param, settings)
    contract = load_contract(settings.features.repo_path)
    label = contract.label
    frame = read_parquet(args.training_set)
    keys = (*contract.keys, "event_timestamp", label.name)
    features = [c for c in frame.columns if c not in keys]
    (result,), _ = run_trials(
        frame,
        [Trial(0, params)],
        features,
        label.name,
        settings.model,
        purge_hours=label.horizon_hours,
    )
    print(f"params={json.dumps(result.params, sort_keys=True)}")
    print(f"cv_{metric_for(settings.model)}={result.mean:.6f}")
    return 0
