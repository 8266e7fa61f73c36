"""Register: a passing model becomes a new immutable registry version, with its lineage."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pandas as pd

from esteira import model_card
from esteira.config import Settings
from esteira.contract import load_contract
from esteira.drift import summarize_reference
from esteira.parquet import read_parquet
from esteira.registry import MODEL_FILE, ModelVersion, registry_for
from esteira.retrain_policy import policy_record

EVENT_TS = "event_timestamp"  # the training set's time column (Feast's)
LIBRARIES = ("scikit-learn", "numpy", "pandas", "scipy", "feast", "kfp", "kserve", "pyarrow")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


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
    holdout_path: str | None = None,
    verdict: dict[str, Any] | None = None,
    data_lineage: dict[str, Any] | None = None,
) -> ModelVersion:
    """A new registry version: the model, its lineage, a drift reference of its training data
    and, given the hold-out, its model card (``esteira/model_card.py``)."""
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
        "text_features": info.get("text", []),
        "feature_types": {c: str(t) for c, t in training.dtypes.items()},
        "feature_service": training_meta.get("feature_service", settings.features.feature_service),
        # the join keys the predictor takes as parameters
        "entity_keys": load_contract(settings.features.repo_path).key_kinds,
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
    # where the data came from: a dvc:// source's git revision and DVC md5 (esteira/ingest.py)
    if data_lineage:
        metadata["data_lineage"] = data_lineage
    # how the gate judged it: the rule that decided, and a monitoring retrain's policy
    metadata["gate"] = verdict or {"passed": True, "rule": "absolute", "reason": "not recorded"}
    metadata["retrain"] = policy_record(settings)
    # a classifier's threshold, chosen at training (model.threshold, on the training window)
    for key in ("decision_threshold", "threshold_policy", "threshold_choice"):
        if info.get(key) is not None:
            metadata[key] = info[key]
    profiled, profiled_features, extra = training, features, {}
    if info.get("text"):  # text drifts by length, vocabulary and predicted classes
        from esteira.safe_load import load_model
        from esteira.text_drift import reference_additions

        model = load_model(Path(model_dir) / MODEL_FILE)
        profiled, profiled_features, extra = reference_additions(
            model, training, features, info["text"]
        )
    reference = summarize_reference(profiled, profiled_features) | extra
    del training, profiled
    files = {
        MODEL_FILE: (Path(model_dir) / MODEL_FILE).read_bytes(),
        "reference.json": json.dumps(reference, sort_keys=True).encode(),
    }
    card_files = None
    if holdout_path is not None:
        card_files = _card_files(settings, model_dir, training_set_path, holdout_path, metadata)
    return registry_for(settings).register(files, metadata, card_files)


def _time_range(path: str, column: str = EVENT_TS) -> dict[str, str] | None:
    """First and last ``column`` value of a Parquet file (None without that column)."""
    import pyarrow.parquet as pq

    if column not in pq.read_schema(path).names:
        return None
    frame = read_parquet(path, columns=[column])
    if frame.empty:
        return None
    values = pd.to_datetime(frame[column], utc=True)
    return {"from": values.min().isoformat(), "to": values.max().isoformat()}


def _card_files(
    settings: Settings,
    model_dir: str,
    training_set_path: str,
    holdout_path: str,
    metadata: dict[str, Any],
) -> Callable[[int, dict[str, Any]], dict[str, bytes]]:
    """Compute the card's figures now; render it once the version number is known."""
    from esteira.champion import decide, production_on
    from esteira.safe_load import load_model

    holdout = read_parquet(holdout_path)
    model = load_model(Path(model_dir) / MODEL_FILE)
    computed = model_card.compute(
        model,
        holdout,
        features=metadata["feature_names"],
        label=metadata["label"],
        task=metadata["task"],
        decision_threshold=float(metadata.get("decision_threshold", 0.5)),
        card=settings.card,
        seed=settings.model.random_state or 0,
    )
    champion_version, champion_metrics, note = production_on(settings, holdout)
    decision = decide(metadata["metrics"], champion_metrics, settings.gate)
    champion = {
        "champion_version": champion_version,
        "promote": decision.promote,
        "winner": decision.winner,
        "reason": decision.reason + note,
    }
    lineage = metadata.get("data_lineage") or {}
    data = {
        "source_uri": metadata["source_uri"],
        "content_hash": metadata["data_hash"],
        **{k: lineage[k] for k in ("git_rev", "dvc_md5", "rev") if k in lineage},
        "training_rows": metadata["training_rows"],
        "holdout_rows": metadata["holdout_rows"],
        "split_time": metadata["split_time"],
    }
    # the labelled rows (training window and hold-out), and the hold-out alone
    for name, path in (("rows", training_set_path), ("holdout", holdout_path)):
        if span := _time_range(path):
            data[f"{name}_from"], data[f"{name}_to"] = span["from"], span["to"]

    def render(version: int, meta: dict[str, Any]) -> dict[str, bytes]:
        card = model_card.build(
            name=settings.model.name,
            version=version,
            metadata=meta,
            computed=computed,
            intended_use=settings.card.intended_use,
            limitations=settings.card.limitations,
            data=data,
            gate=meta["gate"],
            champion=champion,
        )
        return {
            "card.json": json.dumps(card, indent=2, sort_keys=True, default=str).encode(),
            "card.md": model_card.render_markdown(card).encode(),
            "card.html": model_card.render_html(card).encode(),
        }

    return render
