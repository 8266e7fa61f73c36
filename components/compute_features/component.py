"""The ``compute_features`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Input, Output

from esteira.kfp_support import component


@component
def compute_features(config: str, dataset: Input[Dataset], entities: Output[Dataset]) -> dict:
    """Write the Feast sources' tables; output the labelled entity rows for training."""
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.feature_engine import compute_features_step
    from esteira.kfp_support import guarded

    with guarded("compute-features"):
        settings = settings_from_json(config)
        contract = load_contract(settings.features.repo_path)
        # pandas: block by block of whole entities, memory near the raw table's
        # (esteira/features.py); spark: Spark writes the tables (esteira/feature_engine.py),
        # in the task or as a SparkApplication (features.spark.run_in)
        published, rows = compute_features_step(
            dataset.path, contract, settings, entities.path, entities.uri
        )
        entities.metadata.update(
            {"rows": len(rows), "positive_rate": float(rows[contract.label.name].mean())}
        )
        return published
