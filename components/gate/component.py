"""The ``gate`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Artifact, Dataset, Input, Output

from esteira.kfp_support import component


@component
def gate(
    config: str, scores: dict, verdict: Output[Artifact], holdout: Input[Dataset] = None
) -> bool:
    """The absolute thresholds (gate.thresholds), or for a retrain started by monitoring its
    policy (retrain.policy: relative to the champion on the same hold-out, a minimum of new
    labels; ``holdout`` is then required). One boolean output, so `dsl.If` can branch on it;
    the verdict (rule, reason) as an artifact the register step records."""
    from components.gate.logic import gate_verdict
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded, write_json

    with guarded("gate"):
        settings = settings_from_json(config)
        holdout_frame = None
        if settings.retrain.trigger and settings.retrain.policy == "relative" and holdout:
            from esteira.parquet import read_parquet

            holdout_frame = read_parquet(holdout.path)
        result = gate_verdict(settings, scores, holdout_frame)
        write_json(verdict.path, result.as_dict())
        verdict.metadata.update(result.as_dict())
        print(f"gate {'passed' if result.passed else 'failed'} ({result.rule}): {result.reason}")
        return result.passed
