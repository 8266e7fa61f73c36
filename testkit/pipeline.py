"""A small, isolated workspace for pipeline runs: its own data, storage and feature repo copy."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from esteira.config import ROOT, Settings
from esteira.data import write_fleet

PM_REPO = ROOT / "feature_repo" / "predictive_maintenance"


def generate_fleet(*args, **kwargs):
    """Predictive maintenance's seeded fleet (its use case's generator.py)."""
    from esteira.usecase import generator_module, load

    return generator_module(load(PM_REPO.name)).generate_fleet(*args, **kwargs)


def copy_feature_repo(dest: Path, source: Path = PM_REPO) -> Path:
    """A use case's feature repository (default: predictive maintenance) in ``dest``, without
    any data of the real one."""
    shutil.copytree(
        source,
        dest,
        ignore=shutil.ignore_patterns("data", "__pycache__", "*.db"),
        dirs_exist_ok=True,
    )
    return dest


def small_workspace(root: Path, *, machines: int = 25, days: int = 60, **overrides) -> Settings:
    """Settings for a run of ``machines`` x ``days`` in ``root`` (nothing shared with the repo)."""
    source = root / "fleet.parquet"
    if not source.exists():
        # seed 42 at this size: ~80 failures before the split, ~30 after, hold-out ROC AUC ~0.83
        write_fleet(generate_fleet(machines=machines, days=days, seed=42), str(source))
    values = {
        "data": {"source_uri": str(source), "machines": machines, "days": days},
        "storage": {"root": str(root / "store")},
        "features": {"repo_path": str(copy_feature_repo(root / "feature_repo"))},
        "gate": {"thresholds": {"roc_auc": 0.6}},
    }
    for section, items in overrides.items():
        values.setdefault(section, {}).update(items)
    return Settings.model_validate(values)


def use_case_store(
    root: Path,
    use_case: str,
    raw: pd.DataFrame,
    edit: Callable[[dict], dict] | None = None,
    **settings: Any,
) -> tuple[Settings, Any]:
    """A private copy of ``use_case``'s repository under ``root`` (``edit`` may change its
    contract), ``raw``'s feature tables published and the definitions applied:
    ``(settings, contract)``."""
    from esteira.contract import load_contract
    from esteira.feast_repo import apply_definitions, publish_sources
    from esteira.features import compute_feature_tables

    repo = copy_feature_repo(root / "repo", ROOT / "feature_repo" / use_case)
    if edit:
        path = repo / "dataset.yaml"
        path.write_text(yaml.safe_dump(edit(yaml.safe_load(path.read_text()))))
    # the caller's sections add to the private repo and store, never replace them (a
    # ``features`` override without repo_path would point at the real repository)
    values = {
        "use_case": use_case,
        **settings,
        "features": {**settings.get("features", {}), "repo_path": str(repo)},
        "storage": {"root": str(root / "store"), **settings.get("storage", {})},
    }
    resolved = Settings.model_validate(values)
    contract = load_contract(repo)
    publish_sources(compute_feature_tables(raw, contract), resolved)
    apply_definitions(resolved)
    return resolved, contract
