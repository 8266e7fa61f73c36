"""The ``retrain`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Output

from esteira.kfp_support import component


@component
def retrain(config: str, new_data: Input[Dataset], mode: str, run: Output[Artifact]) -> NamedTuple(
    "Retrain", mode=str, status=str, run_id=str, data_uri=str, summary=dict
):
    """Training on production's data plus the newly labelled data: locally or on Kubeflow."""
    import os
    from collections import namedtuple

    from components.retrain import logic
    from esteira.config import settings_from_json
    from esteira.errors import EsteiraError
    from esteira.kfp_support import guarded
    from esteira.parquet import read_parquet

    with guarded("retrain"):
        settings = settings_from_json(config)
        data_uri = logic.retraining_data(settings, read_parquet(new_data.path))
        os.makedirs(run.path, exist_ok=True)
        result = logic.trigger_retraining(settings, mode, data_uri=data_uri, work_dir=run.path)
        run.metadata.update({"mode": result.mode, "status": result.status, "data_uri": data_uri})
        print(f"retraining ({result.mode}): {result.status} on {data_uri}")
        if result.status == "failed":
            raise EsteiraError("retrain", f"the training pipeline failed: {result.error}")
        out = namedtuple("Retrain", ["mode", "status", "run_id", "data_uri", "summary"])
        return out(result.mode, result.status, result.run_id or "", data_uri, result.summary)
