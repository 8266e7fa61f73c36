"""The sentiment analysis use case at tiny sizes, shared by tests: its reviews and a Feast store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from esteira.config import ROOT, Settings
from esteira.contract import Contract, load_contract
from testkit.pipeline import copy_feature_repo

USE_CASE = "sentiment_analysis"
REPO = ROOT / "feature_repo" / USE_CASE


def generate(**kwargs) -> pd.DataFrame:
    """The use case's generator (a few products over a few months keep tests fast)."""
    from esteira.usecase import generator_module, load

    return generator_module(load(USE_CASE)).generate(**kwargs)


def sentiment_store(root: Path, raw: pd.DataFrame, **settings) -> tuple[Settings, Contract]:
    """A private copy of the use case's repository under ``root``, ``raw``'s feature tables
    published and the definitions applied."""
    from esteira.feast_repo import apply_definitions, publish_sources
    from esteira.features import compute_feature_tables

    repo = copy_feature_repo(root / "repo", REPO)
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
