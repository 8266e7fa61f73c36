"""Plan the search: the trial batches the training pipeline's ParallelFor fans out over.

The plan itself is core (``esteira/search.py``: the space, random or grid trials, batches),
since Katib's Experiment (``esteira/manifests.py``) renders the same space.
"""

from __future__ import annotations

from typing import Any

from esteira.config import ModelSettings
from esteira.search import plan_batches


def plan(model: ModelSettings) -> list[dict[str, Any]]:
    """``[{"batch": i, "trials": [{"trial": n, "params": {...}}, ...]}, ...]``; with the
    search off, one empty batch (kfp.local cannot loop over an empty list)."""
    return plan_batches(model)


def describe(batches: list[dict[str, Any]], model: ModelSettings) -> str:
    trials = sum(len(b["trials"]) for b in batches)
    if not trials:
        return "search off: one empty batch; train uses model.hyperparameters"
    s = model.search
    return (
        f"search: {trials} {s.strategy} trials of {model.family} in {len(batches)} batches, "
        f"{s.parallelism} at once, {s.folds} time-ordered folds"
    )
