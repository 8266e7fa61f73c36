"""The ``retrain`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Input, OutputPath

from esteira.kfp_support import component


@component
def retrain(
    config: str,
    new_data: Input[Dataset],
    retraining_config: OutputPath(str),
    override: str = "",
    drift_detected: bool = False,
    degraded: bool = False,
) -> str:
    """The retraining set (production's data plus the newly labelled data) on the storage; returns its URI, which the monitoring pipeline hands to the nested training pipeline as ``data_source_uri``. ``retraining_config`` is that run's ``config``: ``override`` (the monitoring run's) plus ``retrain.trigger`` and ``retrain.new_labels``, which the retrain policy (``retrain.policy``) judges it by."""
    from components.retrain import logic
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded
    from esteira.parquet import read_parquet

    with guarded("retrain"):
        settings = settings_from_json(config)
        new_raw = read_parquet(new_data.path)
        labelled = logic.new_labelled_rows(settings, new_raw)
        data_uri = logic.retraining_data(settings, new_raw)
        with open(retraining_config, "w") as handle:
            handle.write(logic.retraining_config(override, drift_detected, degraded, labelled))
        print(f"retraining set: {data_uri} ({labelled} new labelled rows)")
        return data_uri
