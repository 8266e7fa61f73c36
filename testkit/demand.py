"""The demand forecasting use case at tiny sizes, shared by tests: its data and a Feast store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from esteira.config import ROOT, Settings
from esteira.contract import Contract, load_contract
from testkit.pipeline import copy_feature_repo

USE_CASE = "demand_forecasting"
REPO = ROOT / "feature_repo" / USE_CASE


def generate(**kwargs) -> pd.DataFrame:
    """The use case's generator (a few stores x items x days keep tests fast)."""
    from esteira.usecase import generator_module, load

    return generator_module(load(USE_CASE)).generate(**kwargs)


def demand_store(
    root: Path, raw: pd.DataFrame, edit: Callable[[dict], dict] | None = None, **settings
) -> tuple[Settings, Contract]:
    """A private copy of the use case's repository under ``root`` (``edit`` may change its
    contract), ``raw``'s feature tables published and the definitions applied."""
    from esteira.feast_repo import apply_definitions, publish_sources
    from esteira.features import compute_feature_tables

    repo = copy_feature_repo(root / "repo", REPO)
    if edit:
        path = repo / "dataset.yaml"
        path.write_text(yaml.safe_dump(edit(yaml.safe_load(path.read_text()))))
    values = {
        "use_case": USE_CASE,
        "features": {"repo_path": str(repo)},
        "storage": {"root": str(root / "store")},
        **settings,
    }
    resolved = Settings.model_validate(values)
    contract = load_contract(repo)
    publish_sources(compute_feature_tables(raw, contract), resolved)
    apply_definitions(resolved)
    return resolved, contract
