"""The ``materialize`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from esteira.kfp_support import component


@component
def materialize(config: str) -> dict:
    """Load the newest feature values into the online store for serving."""
    from esteira.config import settings_from_json
    from esteira.feast_repo import materialize as run
    from esteira.kfp_support import guarded

    with guarded("materialize"):
        return run(settings_from_json(config))
