"""The ``build_training_set`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Output

from esteira.kfp_support import component


@component
def build_training_set(
    config: str, entities: Input[Dataset], training_set: Output[Dataset]
) -> NamedTuple("TrainingSetInfo", feature_service=str, training_rows=int, dropped_by_ttl=int):
    """Point-in-time correct features for every labelled row, through the FeatureService."""
    from collections import namedtuple

    from esteira.config import settings_from_json
    from esteira.feature_engine import training_set_step
    from esteira.kfp_support import guarded
    from esteira.parquet import read_parquet

    with guarded("build-training-set"):
        settings = settings_from_json(config)
        # in the task, or a SparkApplication with features.spark.run_in: spark_application
        result = training_set_step(
            read_parquet(entities.path), settings, training_set.path, training_set.uri
        )
        training_set.metadata.update(
            {
                "feature_service": result.feature_service,
                "feature_names": result.feature_names,
                "requested_rows": result.requested_rows,
                "dropped_by_ttl": result.dropped_rows,
                "dropped_by_view": result.dropped_by_ttl,
            }
        )
        print(
            f"training set: {len(result.frame)} rows, {result.dropped_rows} dropped by TTL {result.dropped_by_ttl}"
        )
        info = namedtuple("TrainingSetInfo", ["feature_service", "training_rows", "dropped_by_ttl"])
        return info(result.feature_service, len(result.frame), result.dropped_rows)
