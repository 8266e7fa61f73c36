"""Register: a passing model becomes a new immutable registry version, with its lineage."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from esteira.config import Settings
from esteira.contract import load_contract
from esteira.drift import summarize_reference
from esteira.parquet import read_parquet
from esteira.registry import MODEL_FILE, ModelVersion, registry_for

LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "feast", "kfp", "kserve", "pyarrow")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _entity_keys(settings: Settings) -> dict[str, str]:
    """The contract's join keys and their kinds: what the predictor takes as parameters."""
    contract = load_contract(settings.features.repo_path)
    return {k: contract.columns[k].dtype for k in contract.keys}


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
    training = read_parquet(training_set_path, columns=features)
    metadata = {
        "metrics": metrics,
        "parameters": info["parameters"],
        "family": info["family"],
        "task": info["task"],
        "label": info["label"],
        "feature_names": features,
        "categorical_features": info["categorical"],
        "feature_types": {c: str(t) for c, t in training.dtypes.items()},
        "feature_service": training_meta.get("feature_service", settings.features.feature_service),
        "entity_keys": _entity_keys(settings),
        # missing in some training rows (e.g. a lag before an item's history): served as null
        "nullable_features": [c for c in features if training[c].isna().any()],
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
    # a classifier's threshold, chosen at training (model.threshold, on the training window)
    for key in ("decision_threshold", "threshold_policy", "threshold_choice"):
        if info.get(key) is not None:
            metadata[key] = info[key]
    reference = summarize_reference(training, features)
    files = {
        MODEL_FILE: (Path(model_dir) / MODEL_FILE).read_bytes(),
        "reference.json": json.dumps(reference, sort_keys=True).encode(),
    }
    return registry_for(settings).register(files, metadata)
