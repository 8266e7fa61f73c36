"""The ``register`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Model

from esteira.kfp_support import component


@component
def register(
    config: str,
    model: Input[Model],
    training_set: Input[Dataset],
    metrics: dict,
    data_hash: str,
    definitions_hash: str,
    code_version: str,
    run_id: str,
) -> NamedTuple("Registered", version=int, model_uri=str):
    """Store the model as a new immutable registry version with everything needed to trace it."""
    from collections import namedtuple

    from components.register.logic import register_model
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded

    with guarded("register"):
        version = register_model(
            settings_from_json(config),
            model.path,
            training_set.path,
            dict(training_set.metadata),
            metrics=metrics,
            data_hash=data_hash,
            definitions_hash=definitions_hash,
            code_version=code_version,
            run_id=run_id,
        )
        print(f"registered {version.name} v{version.version} at {version.uri}")
        return namedtuple("Registered", ["version", "model_uri"])(version.version, version.uri)
