"""The ``gate`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from esteira.kfp_support import component


@component
def gate(config: str, scores: dict) -> bool:
    """The absolute thresholds (gate.thresholds). One boolean output, so `dsl.If` can branch on it."""
    from esteira.config import settings_from_json
    from esteira.evaluation import check_thresholds
    from esteira.kfp_support import guarded

    with guarded("gate"):
        failures = check_thresholds(scores, settings_from_json(config).gate.thresholds)
        print("gate passed" if not failures else "gate failed: " + "; ".join(failures))
        return not failures
