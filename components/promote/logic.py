"""Promote: champion/challenger on the same hold-out; ``production`` moves only for a better model."""

from __future__ import annotations

from typing import Any

import pandas as pd

from esteira.champion import decide, production_on
from esteira.config import Settings
from esteira.registry import DEFAULT_ALIAS as PRODUCTION
from esteira.registry import registry_for


def champion_challenger(settings: Settings, version: int, holdout: pd.DataFrame) -> dict[str, Any]:
    """Score the current production model on the challenger's hold-out and decide.

    The champion is re-scored on the same rows, so the comparison is fair even if
    the data moved since it was trained. If the champion cannot read this hold-out
    (its features are not all there), its recorded metrics are used and the reason says so.
    """
    registry = registry_for(settings)
    challenger = registry.get(version)
    champion_version, champion_metrics, note = production_on(settings, holdout)
    decision = decide(challenger.metadata["metrics"], champion_metrics, settings.gate)
    if decision.promote:
        registry.set_alias(PRODUCTION, version, reason=decision.reason)
    costs = _expected_costs(settings, challenger.metadata["metrics"], champion_metrics)
    return costs | {
        "promoted": decision.promote,
        "winner": decision.winner,
        "metric": decision.metric,
        "challenger_version": version,
        "champion_version": champion_version,
        "challenger_value": decision.challenger_value,
        "champion_value": decision.champion_value,
        "improvement": decision.improvement,
        "reason": decision.reason + note,
        "production_version": registry.aliases().get(
            PRODUCTION, version if decision.promote else -1
        ),
    }


def _expected_costs(
    settings: Settings, challenger: dict[str, Any], champion: dict[str, Any] | None
) -> dict[str, Any]:
    """With policy min_cost, both models' expected cost per 1,000 hold-out rows (each at its
    own decision_threshold, the configured costs), shown beside the decision;
    ``gate.compare_metric: expected_cost`` (direction minimize) decides by it."""
    if settings.model.threshold.policy != "min_cost" or "expected_cost" not in challenger:
        return {}
    return {
        "challenger_expected_cost": challenger["expected_cost"],
        "champion_expected_cost": (champion or {}).get("expected_cost"),
    }
