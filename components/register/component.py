"""The ``register`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output

from esteira.kfp_support import component


@component
def register(
    config: str,
    model: Input[Model],
    training_set: Input[Dataset],
    holdout: Input[Dataset],
    verdict: Input[Artifact],
    metrics: dict,
    data_hash: str,
    definitions_hash: str,
    code_version: str,
    run_id: str,
    data_lineage: dict,
    card: Output[HTML],
) -> NamedTuple("Registered", version=int, model_uri=str):
    """Store the model as a new immutable registry version with everything needed to trace it,
    and its model card (Markdown and HTML; the HTML is this step's `card` in the Kubeflow UI)."""
    import json
    from collections import namedtuple
    from pathlib import Path

    from components.register.logic import register_model
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded
    from esteira.registry import registry_for

    with guarded("register"):
        settings = settings_from_json(config)
        version = register_model(
            settings,
            model.path,
            training_set.path,
            dict(training_set.metadata),
            metrics=metrics,
            data_hash=data_hash,
            definitions_hash=definitions_hash,
            code_version=code_version,
            run_id=run_id,
            holdout_path=holdout.path,
            verdict=json.loads(Path(verdict.path).read_text()),
            data_lineage=data_lineage,
        )
        html = registry_for(settings).read_file(version.version, "card.html")
        Path(card.path).write_bytes(html)
        card.metadata.update({"model": version.name, "version": version.version})
        print(f"registered {version.name} v{version.version} at {version.uri} (with its card)")
        return namedtuple("Registered", ["version", "model_uri"])(version.version, version.uri)
