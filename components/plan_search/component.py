"""The ``plan_search`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from esteira.kfp_support import component


@component
def plan_search(config: str) -> list:
    """The hyperparameter search's trial batches (``model.search``) with the settings, one per ParallelFor iteration."""
    from components.plan_search.logic import describe, plan
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded

    with guarded("plan-search"):
        settings = settings_from_json(config)
        batches = plan(settings.model)
        print(describe(batches, settings.model))
        # each item carries the settings: kfp.local (2.17) replaces every upstream task's
        # parameter a ParallelFor body takes with the loop item, so the body takes the item only
        return [{**b, "config": config} for b in batches]
