"""A small, isolated workspace for pipeline runs: its own data, storage and feature repo copy."""

from __future__ import annotations

import shutil
from pathlib import Path

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
