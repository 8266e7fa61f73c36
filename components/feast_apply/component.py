"""The ``feast_apply`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from esteira.kfp_support import component


@component
def feast_apply(config: str) -> str:
    """Register the feature definitions (idempotent); returns their hash."""
    from esteira.config import settings_from_json
    from esteira.feast_repo import apply_definitions
    from esteira.kfp_support import guarded

    with guarded("feast-apply"):
        applied = apply_definitions(settings_from_json(config))
        print(f"applied {applied['feature_views']} and service {applied['feature_service']}")
        return applied["definitions_hash"]
