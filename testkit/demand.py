"""The demand forecasting use case at tiny sizes, shared by tests: its data and a Feast store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from esteira.config import ROOT, Settings
from esteira.contract import Contract
from testkit.pipeline import use_case_store

USE_CASE = "demand_forecasting"
REPO = ROOT / "feature_repo" / USE_CASE


def generate(**kwargs) -> pd.DataFrame:
    """The use case's generator (a few stores x items x days keep tests fast)."""
    from esteira.usecase import generator_module, load

    return generator_module(load(USE_CASE)).generate(**kwargs)


def demand_store(
    root: Path, raw: pd.DataFrame, edit: Callable[[dict], dict] | None = None, **settings
) -> tuple[Settings, Contract]:
    """:func:`testkit.pipeline.use_case_store` of this use case."""
    return use_case_store(root, USE_CASE, raw, edit, **settings)
