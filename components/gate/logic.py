"""Gate: the absolute thresholds, or a monitoring retrain's policy (``esteira/retrain_policy.py``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from esteira.config import Settings
from esteira.retrain_policy import GateVerdict, judge


def gate_verdict(
    settings: Settings, scores: dict[str, Any], holdout: pd.DataFrame | None
) -> GateVerdict:
    """The verdict on ``scores``; a retrain under the relative policy re-scores the production
    model on the same ``holdout`` (never read otherwise)."""
    retrain = settings.retrain
    champion_version, champion_metrics = None, None
    if retrain.trigger and retrain.policy == "relative" and holdout is not None:
        from esteira.champion import production_on

        champion_version, champion_metrics, _ = production_on(settings, holdout)
    return judge(settings, scores, champion_metrics, champion_version)
