"""The gate's verdict, and the policy a retrain started by monitoring is judged by.

A training run passes the gate on its absolute thresholds (``gate.thresholds``). A retrain
(``retrain.trigger`` set by the monitoring pipeline's ``retrain`` step) is judged by
``retrain.policy`` instead:

- ``min_new_labels``: fewer than ``retrain.min_new_labels`` newly labelled rows came in:
  refused, whatever the scores (a retrain on a handful of labels proves nothing);
- ``relative``: the retrained model against the current champion on the same recent hold-out
  (``gate.compare_metric`` in ``gate.direction``): it passes when it is no worse by more than
  ``retrain.max_drop``. Drifted data can be harder for every model; an absolute minimum set
  on calm data would then refuse a retrain that beats the model in production;
- ``absolute``: the thresholds, as for any run (also the relative policy's fallback when
  there is no champion to compare with).

:func:`judge` is pure; the verdict names the rule that decided and why, and goes into the
version's lineage, its model card and the run summaries.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from esteira.config import Settings
from esteira.evaluation import check_thresholds


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    rule: str  # "absolute" | "relative" | "min_new_labels"
    reason: str
    failures: list[str] = field(default_factory=list)
    policy: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def policy_record(settings: Settings) -> dict[str, Any]:
    """What the version's lineage records of how it was judged."""
    retrain = settings.retrain
    record: dict[str, Any] = {"thresholds": dict(settings.gate.thresholds)}
    if retrain.trigger:
        record |= {
            "retrain": True,
            "trigger": retrain.trigger,
            "policy": retrain.policy,
            "metric": settings.gate.compare_metric,
            "direction": settings.gate.direction,
            "max_drop": retrain.max_drop,
            "min_new_labels": retrain.min_new_labels,
            "new_labels": retrain.new_labels,
        }
    return record


def judge(
    settings: Settings,
    metrics: Mapping[str, Any],
    champion_metrics: Mapping[str, Any] | None = None,
    champion_version: int | None = None,
) -> GateVerdict:
    """The gate's verdict for these hold-out ``metrics``; ``champion_metrics`` are the
    production model's on the same hold-out (only a retrain's relative policy reads them)."""
    retrain, gate = settings.retrain, settings.gate
    policy = policy_record(settings)
    failures = check_thresholds(dict(metrics), gate.thresholds)
    absolute = (
        "thresholds met: "
        + ", ".join(f"{k} {float(metrics[k]):.4f} vs {v}" for k, v in gate.thresholds.items())
        if not failures
        else "; ".join(failures)
    )
    if not retrain.trigger or retrain.policy == "absolute":
        prefix = f"retrain ({retrain.trigger}), policy absolute: " if retrain.trigger else ""
        return GateVerdict(not failures, "absolute", prefix + absolute, failures, policy)
    if retrain.new_labels < retrain.min_new_labels:
        reason = (
            f"retrain ({retrain.trigger}) on {retrain.new_labels} new labelled rows, fewer than "
            f"retrain.min_new_labels {retrain.min_new_labels}"
        )
        return GateVerdict(False, "min_new_labels", reason, [reason], policy)
    metric = gate.compare_metric
    if champion_metrics is None or metric not in champion_metrics or metric not in metrics:
        reason = f"retrain ({retrain.trigger}): no champion to compare with, so {absolute}"
        return GateVerdict(not failures, "absolute", reason, failures, policy)
    challenger, champion = float(metrics[metric]), float(champion_metrics[metric])
    drop = champion - challenger if gate.direction == "maximize" else challenger - champion
    drop = round(drop, 12)
    passed = drop <= retrain.max_drop
    who = f"champion v{champion_version}" if champion_version is not None else "champion"
    reason = (
        f"retrain ({retrain.trigger}), policy relative: {metric} {challenger:.4f} against "
        f"{who} {champion:.4f} on the same hold-out ({'higher' if gate.direction == 'maximize' else 'lower'} "
        f"is better; may be worse by at most {retrain.max_drop}): "
        + ("passes" if passed else f"worse by {drop:.4f}, refused")
    )
    if failures:
        reason += f"; the absolute thresholds alone would have {'refused' if passed else 'refused too'} it ({'; '.join(failures)})"
    return GateVerdict(passed, "relative", reason, [] if passed else [reason], policy)
