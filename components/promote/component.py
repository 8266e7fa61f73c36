"""The ``promote`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Artifact, Dataset, Input, Output

from esteira.kfp_support import component


@component
def promote(config: str, version: int, holdout: Input[Dataset], decision: Output[Artifact]) -> bool:
    """Champion/challenger on the same hold-out; move `production` only for a better model."""
    from components.promote.logic import champion_challenger
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded, write_json
    from esteira.parquet import read_parquet

    with guarded("promote"):
        result = champion_challenger(
            settings_from_json(config), version, read_parquet(holdout.path)
        )
        write_json(decision.path, result)
        decision.metadata.update(result)
        print(result["reason"])
        return result["promoted"]
