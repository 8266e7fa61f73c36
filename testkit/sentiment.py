"""The sentiment analysis use case at tiny sizes, shared by tests: its reviews and a Feast store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from esteira.config import ROOT, Settings
from esteira.contract import Contract
from testkit.pipeline import use_case_store

USE_CASE = "sentiment_analysis"
REPO = ROOT / "feature_repo" / USE_CASE


def generate(**kwargs) -> pd.DataFrame:
    """The use case's generator (a few products over a few months keep tests fast)."""
    from esteira.usecase import generator_module, load

    return generator_module(load(USE_CASE)).generate(**kwargs)


def sentiment_store(root: Path, raw: pd.DataFrame, **settings) -> tuple[Settings, Contract]:
    """:func:`testkit.pipeline.use_case_store` of this use case."""
    return use_case_store(root, USE_CASE, raw, **settings)


def sentiment_world(root: Path, raw: pd.DataFrame, **settings) -> dict:
    """``raw``'s features published and materialized, the text pipeline trained on them and
    registered as production, and a config file for the servers (``root/config.yaml``)."""
    import yaml

    from components.train.logic import train_step
    from esteira.feast_repo import build_training_set, materialize
    from esteira.features import label_frame
    from esteira.registry import MODEL_FILE, registry_for
    from esteira.safe_load import dump_model

    resolved, contract = sentiment_store(root, raw, **settings)
    training = build_training_set(label_frame(raw, contract, 24), resolved)
    result, info = train_step(training.frame, training.feature_names, contract, resolved)
    frame, features = training.frame, training.feature_names
    registry = registry_for(resolved)
    version = registry.register(
        {MODEL_FILE: dump_model(result.model), "reference.json": b"{}"},
        {
            "feature_names": features,
            "categorical_features": info["categorical"],
            "text_features": info["text"],
            "feature_types": {c: str(frame[c].dtype) for c in features},
            "label": contract.label.name,
            "task": "classification",
            "family": resolved.model.family,
            "entity_keys": contract.key_kinds,
            "decision_threshold": info["decision_threshold"],
            "metrics": {"macro_f1": 0.8},
        },
    )
    registry.set_alias("production", version.version)
    materialize(resolved)
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(resolved.model_dump(mode="json")))
    return {
        "root": root,
        "config": config,
        "settings": resolved,
        "contract": contract,
        "model": result.model,
        "features": features,
        "frame": frame,
        "version": version.version,
        "threshold": info["decision_threshold"],
    }


def fuzz_world(root: Path) -> object:
    """A :class:`testkit.serving.World` of this use case (what ``testkit.fuzz`` takes): a small
    sentiment world, its products as the ids and a review text as each one's request value."""
    from esteira.registry import registry_for
    from testkit.serving import World

    raw = generate(products=20, days=90, reviews_per_day=0.4, seed=6)
    world = sentiment_world(root, raw, features={"max_dropped_share": 0.2})
    settings, contract = world["settings"], world["contract"]
    (key,) = contract.keys
    (field,) = contract.text_requests
    newest = raw.sort_values(contract.timestamp).groupby(key).tail(1)
    version = registry_for(settings).get("production")
    return World(
        root=root,
        config_path=world["config"],
        settings=settings,
        model=world["model"],
        metadata=dict(version.metadata),
        frame=world["frame"],
        machine_ids=[int(i) for i in newest[key]],
        request_values={
            int(i): {field: str(t)}
            for i, t in zip(newest[key], newest[contract.request[field]], strict=True)
        },
        version=version.version,
        extra={"key": key, "texts": [field]},
    )
