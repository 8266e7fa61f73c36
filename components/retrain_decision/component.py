"""The ``retrain_decision`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from esteira.kfp_support import component


@component
def retrain_decision(drift_detected: bool, degraded: bool) -> bool:
    """One boolean for the pipeline's condition: drift or degradation (``components.retrain_decision.logic.should_retrain``).

    Inlined rather than imported: the rule is one line and importing the monitoring
    module (scikit-learn, scipy) would cost this task seconds.
    """
    decision = bool(drift_detected or degraded)
    print(f"retrain: {decision} (drift={drift_detected}, degraded={degraded})")
    return decision
