"""The ``retrain`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Input

from esteira.kfp_support import component


@component
def retrain(config: str, new_data: Input[Dataset]) -> str:
    """The retraining set (production's data plus the newly labelled data) on the storage; returns its URI, which the monitoring pipeline hands to the nested training pipeline as ``data_source_uri``."""
    from components.retrain import logic
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded
    from esteira.parquet import read_parquet

    with guarded("retrain"):
        settings = settings_from_json(config)
        data_uri = logic.retraining_data(settings, read_parquet(new_data.path))
        print(f"retraining set: {data_uri}")
        return data_uri
