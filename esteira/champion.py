"""Champion/challenger: should the newly trained model replace the one in production?

``decide`` is pure: it compares one metric (``gate.compare_metric``) in the direction
``gate.direction`` and asks for at least ``gate.min_improvement``. A tie keeps the
champion (no churn for nothing).

The comparison is only fair on the same data. The caller evaluates the champion
model on the challenger's hold-out set and passes *those* metrics as
``champion_metrics`` -- not the numbers stored in the champion's metadata, which
were measured on an older hold-out. ``evaluate_champion_on`` does exactly that
for a champion found in the registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from esteira.config import GateSettings
from esteira.errors import EsteiraError
from esteira.registry import DEFAULT_ALIAS, MODEL_FILE, Registry

# improvements are compared after rounding, so 0.912 - 0.903 counts as 0.009
_DECIMALS = 12


@dataclass(frozen=True)
class Decision:
    """The outcome of one champion/challenger comparison."""

    promote: bool
    winner: Literal["challenger", "champion"]
    metric: str
    challenger_value: float
    champion_value: float | None
    improvement: float | None
    reason: str


def _metric(metrics: Mapping[str, Any], metric: str, who: str) -> float:
    """The finite float value of ``metric`` in ``metrics``, or a clear error."""
    if metric not in metrics:
        raise EsteiraError(
            f"{who}_metrics.{metric}",
            f"the {who} has no {metric!r} metric (has: {sorted(metrics) or 'none'})",
            f"evaluate the {who} with gate.compare_metric={metric!r} or change gate.compare_metric",
        )
    try:
        value = float(metrics[metric])
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise EsteiraError(
            f"{who}_metrics.{metric}",
            f"must be a finite number (got {metrics[metric]!r})",
            f"check the {who}'s evaluation on the hold-out set",
        )
    return value


def decide(
    challenger_metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None,
    gate: GateSettings,
) -> Decision:
    """Compare challenger and champion on ``gate.compare_metric``; no champion means promote.

    ``champion_metrics`` must come from the champion evaluated on the challenger's hold-out.
    """
    metric = gate.compare_metric
    challenger = _metric(challenger_metrics, metric, "challenger")
    if champion_metrics is None:
        return Decision(
            promote=True,
            winner="challenger",
            metric=metric,
            challenger_value=challenger,
            champion_value=None,
            improvement=None,
            reason=f"no champion yet: challenger {metric} {challenger:.3f} is promoted",
        )
    champion = _metric(champion_metrics, metric, "champion")
    delta = challenger - champion if gate.direction == "maximize" else champion - challenger
    improvement = round(delta, _DECIMALS)
    promote = improvement > 0 and improvement >= round(gate.min_improvement, _DECIMALS)
    return Decision(
        promote=promote,
        winner="challenger" if promote else "champion",
        metric=metric,
        challenger_value=challenger,
        champion_value=champion,
        improvement=improvement,
        reason=_reason(metric, challenger, champion, improvement, gate, promote),
    )


def _reason(
    metric: str,
    challenger: float,
    champion: float,
    improvement: float,
    gate: GateSettings,
    promote: bool,
) -> str:
    """One human sentence, e.g. 'challenger roc_auc 0.912 beats champion 0.903 by 0.009 (min 0.000)'."""
    better = "" if gate.direction == "maximize" else "lower is better, "
    limits = f"({better}min {gate.min_improvement:.3f})"
    # enough digits that a small margin never reads as "0.903 beats 0.903 by 0.000"
    digits = (
        3
        if improvement == 0 or abs(improvement) >= 5e-4
        else 1 - math.floor(math.log10(abs(improvement)))
    )
    a, b = f"{challenger:.{digits}f}", f"{champion:.{digits}f}"
    if promote:
        return f"challenger {metric} {a} beats champion {b} by {improvement:.{digits}f} {limits}"
    return (
        f"challenger {metric} {a} does not beat champion {b} "
        f"(improvement {improvement:+.{digits}f}, {better}min {gate.min_improvement:.3f})"
    )


MetricFn = Callable[[Any, Any, Any], Mapping[str, float]]


def evaluate_champion_on(
    holdout_X: Any,
    holdout_y: Any,
    registry: Registry,
    metric_fn: MetricFn,
    alias: str = DEFAULT_ALIAS,
) -> dict[str, float] | None:
    """Metrics of the model ``alias`` points at, measured on the challenger's hold-out.

    ``metric_fn(model, X, y)`` must be the same function that scored the challenger.
    Returns None when the alias does not exist yet (no champion). The model is loaded
    through the allowlist of ``esteira.safe_load``.
    """
    from esteira.safe_load import load_model

    version = registry.aliases().get(alias)
    if version is None:
        return None
    model = load_model(registry.read_file(version, MODEL_FILE))
    return dict(metric_fn(model, holdout_X, holdout_y))


def production_on(settings: Any, holdout: Any) -> tuple[int | None, dict[str, Any] | None, str]:
    """The production version, its metrics on ``holdout`` (at its own decision_threshold) and
    a note: (None, None, "") when nothing is in production; its recorded metrics, and a note
    saying so, when its features are not all in ``holdout``."""
    from esteira.evaluation import score
    from esteira.registry import registry_for
    from esteira.safe_load import load_model

    registry = registry_for(settings)
    version = registry.aliases().get(DEFAULT_ALIAS)
    if version is None:
        return None, None, ""
    champion = registry.get(version)
    features = champion.metadata["feature_names"]
    if not set(features) <= set(holdout.columns):
        return (
            version,
            champion.metadata["metrics"],
            " (champion's recorded metrics: its features differ)",
        )
    model = load_model(registry.read_file(version, MODEL_FILE))
    metrics = score(
        model,
        holdout,
        features,
        champion.metadata["label"],
        settings.model,
        champion.metadata.get("decision_threshold", 0.5),
    ).metrics
    return version, metrics, ""
