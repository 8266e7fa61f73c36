"""Register, and champion/challenger: the step from a passing model to a production version."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from esteira.champion import decide
from esteira.config import Settings
from esteira.drift import summarize_reference
from esteira.evaluation import score
from esteira.registry import MODEL_FILE, ModelVersion, Registry
from esteira.safe_load import load_model
from esteira.storage import open_storage

LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "feast", "kfp", "kserve", "pyarrow")
PRODUCTION = "production"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def registry_for(settings: Settings) -> Registry:
    return Registry(open_storage(settings.storage), settings.model.name)


def register_model(
    settings: Settings,
    model_dir: str,
    training_set_path: str,
    training_meta: dict[str, Any],
    *,
    metrics: dict[str, float],
    data_hash: str,
    definitions_hash: str,
    code_version: str,
    run_id: str,
) -> ModelVersion:
    """A new registry version: the model, its lineage, and a drift reference of its training data."""
    info = json.loads((Path(model_dir) / "training.json").read_text())
    features = info["feature_names"]
    training = pd.read_parquet(training_set_path, columns=features)
    metadata = {
        "metrics": metrics,
        "parameters": info["parameters"],
        "family": info["family"],
        "task": info["task"],
        "label": info["label"],
        "decision_threshold": settings.model.decision_threshold,
        "feature_names": features,
        "categorical_features": info["categorical"],
        "feature_types": {c: str(t) for c, t in training.dtypes.items()},
        "feature_service": training_meta.get("feature_service", settings.features.feature_service),
        "feature_definitions_hash": definitions_hash,
        "data_hash": data_hash,
        "source_uri": settings.data.source_uri,
        "training_rows": info["training_rows"],
        "holdout_rows": info["holdout_rows"],
        "split_time": info["split_time"],
        "library_versions": library_versions(),
        "code_version": code_version,
        "pipeline_run_id": run_id,
        "trained_at": datetime.now(UTC).isoformat(),
    }
    reference = summarize_reference(training, features)
    files = {
        MODEL_FILE: (Path(model_dir) / MODEL_FILE).read_bytes(),
        "reference.json": json.dumps(reference, sort_keys=True).encode(),
    }
    return registry_for(settings).register(files, metadata)


def champion_challenger(settings: Settings, version: int, holdout: pd.DataFrame) -> dict[str, Any]:
    """Score the current production model on the challenger's hold-out and decide.

    The champion is re-scored on the same rows, so the comparison is fair even if
    the data moved since it was trained. If the champion cannot read this hold-out
    (its features are not all there), its recorded metrics are used and the reason says so.
    """
    registry = registry_for(settings)
    challenger = registry.get(version)
    champion_version = registry.aliases().get(PRODUCTION)
    champion_metrics, note = None, ""
    if champion_version is not None:
        champion = registry.get(champion_version)
        features = champion.metadata["feature_names"]
        if set(features) <= set(holdout.columns):
            model = load_model(registry.read_file(champion_version, MODEL_FILE))
            champion_metrics = score(
                model, holdout, features, champion.metadata["label"], settings.model
            ).metrics
        else:
            champion_metrics, note = (
                champion.metadata["metrics"],
                " (champion's recorded metrics: its features differ)",
            )
    decision = decide(challenger.metadata["metrics"], champion_metrics, settings.gate)
    if decision.promote:
        registry.set_alias(PRODUCTION, version, reason=decision.reason)
    return {
        "promoted": decision.promote,
        "winner": decision.winner,
        "metric": decision.metric,
        "challenger_version": version,
        "champion_version": champion_version,
        "challenger_value": decision.challenger_value,
        "champion_value": decision.champion_value,
        "improvement": decision.improvement,
        "reason": decision.reason + note,
        "production_version": registry.aliases().get(
            PRODUCTION, version if decision.promote else -1
        ),
    }
