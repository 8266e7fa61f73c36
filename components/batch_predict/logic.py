"""Batch prediction: point-in-time features (``components/batch_features``) -> the production model.

The flow, each step a small function the KFP wrapper and tests call directly:

1. :func:`predict_frame`: the model scores whole chunks (vectorised; no per-row Python);
   a progress line per chunk.
2. :func:`write_outputs`: one Parquet file ``batch_predictions/<model>/<run>.parquet``
   (one atomic put) and the same rows appended to the prediction log with
   ``source="batch"``.

Each output row carries ``model_version`` and ``event_timestamp``: the point in time the
features were retrieved as of (Feast returns the newest value at or before it, within
the view's TTL).
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from components.batch_predict.defaults import DEFAULT_CHUNK_ROWS
from esteira.config import Settings
from esteira.errors import DataError
from esteira.features import EVENT_TS
from esteira.registry import MODEL_FILE, Registry, production_version
from esteira.safe_load import load_model as load_safely

PREFIX = "batch_predictions"
SOURCE = "batch"
PRODUCTION = "production"

Progress = Callable[[str], None]


def _print(line: str) -> None:
    print(line, flush=True)


# ---- the model -------------------------------------------------------------------------
@dataclass(frozen=True)
class LoadedModel:
    """A registry version, deserialised, with what scoring needs from its metadata."""

    name: str
    version: int
    model: Any
    feature_names: list[str]
    task: str
    label: str
    threshold: float
    metadata: dict[str, Any]


def load_production_model(registry: Registry, ref: int | str = PRODUCTION) -> LoadedModel:
    """Load a registry version (the production one by default) for scoring."""
    version = production_version(registry, ref)
    meta = version.metadata
    return LoadedModel(
        name=registry.name,
        version=version.version,
        model=load_safely(registry.read_file(version.version, MODEL_FILE)),
        feature_names=list(meta["feature_names"]),
        task=str(meta.get("task", "classification")),
        label=str(meta.get("label", "")),
        threshold=float(meta.get("decision_threshold", 0.5)),
        metadata=meta,
    )


# ---- feature sources for new data ---------------------------------------------------------


# ---- entity rows -----------------------------------------------------------------------------


# ---- scoring ---------------------------------------------------------------------------------
def predict_frame(
    model: LoadedModel,
    features: pd.DataFrame,
    *,
    entity: str | list[str],
    run_id: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Progress | None = _print,
    served_at: datetime | None = None,
) -> pd.DataFrame:
    """Score ``features`` chunk by chunk; the rows in prediction-log form.

    Columns: ``request_id`` (``<run>-<row>``), ``served_at``, ``model_name``,
    ``model_version``, ``source``, the entity's join keys, ``event_timestamp``, every model
    feature, ``prediction`` (the class at the version's decision threshold, or the
    value for regression) and ``probability`` (null for regression).
    """
    keys = [entity] if isinstance(entity, str) else list(entity)
    missing = [c for c in [*keys, EVENT_TS, *model.feature_names] if c not in features.columns]
    if missing:
        raise DataError("batch features", f"lack columns {missing}", "retrieve them through Feast")
    n = len(features)
    # one copy of what the output keeps; the model's ColumnTransformer picks its own columns
    out = features.loc[:, [*keys, EVENT_TS, *model.feature_names]].reset_index(drop=True)
    scores = np.empty(n, dtype=np.float64)
    classification = model.task == "classification"
    started = time.perf_counter()
    for lo in range(0, n, max(1, chunk_rows)):
        part = out.iloc[lo : lo + chunk_rows]
        hi = lo + len(part)
        if classification:
            scores[lo:hi] = model.model.predict_proba(part)[:, 1]
        else:
            scores[lo:hi] = model.model.predict(part)
        if progress:
            rate = hi / max(time.perf_counter() - started, 1e-9)
            progress(
                f"[batch] scored {hi}/{n} rows ({100 * hi / max(n, 1):.0f}%, {rate:,.0f} rows/s)"
            )
    meta = {
        "request_id": np.char.add(f"{run_id}-", np.arange(n).astype("U")).astype(object),
        "served_at": pd.Timestamp(served_at or datetime.now(UTC)),
        "model_name": model.name,
        "model_version": np.int64(model.version),
        "source": SOURCE,
    }
    for position, (name, values) in enumerate(meta.items()):
        out.insert(position, name, values)
    if classification:
        out["prediction"] = (scores >= model.threshold).astype(np.int64)
        out["probability"] = scores
    else:
        out["prediction"] = scores
        out["probability"] = np.nan
    return out


# ---- outputs ---------------------------------------------------------------------------------
def output_key(model_name: str, run_id: str) -> str:
    return f"{PREFIX}/{model_name}/{run_id}.parquet"


def write_outputs(
    storage: Any, model_name: str, run_id: str, frame: pd.DataFrame
) -> dict[str, Any]:
    """The predictions as one Parquet object (atomic put) and appended to the prediction log."""
    from esteira.prediction_log import write_batch

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    key = output_key(model_name, run_id)
    storage.put_bytes(key, buf.getvalue())
    log_keys = write_batch(storage, model_name, frame)
    return {"key": key, "uri": storage.uri(key), "log_keys": log_keys}


def new_run_id() -> str:
    """A sortable, unique batch run id: ``<UTC time>-<random>``."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass
class BatchResult:
    """What a batch run produced."""

    frame: pd.DataFrame
    run_id: str
    model_name: str
    model_version: int
    requested_rows: int
    predicted_rows: int
    dropped_by_ttl: dict[str, int] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        """JSON-safe facts for logs, metadata and summaries."""
        scored = self.seconds.get("predict", 0.0)
        return {
            "run_id": self.run_id,
            "model": self.model_name,
            "model_version": self.model_version,
            "requested_rows": self.requested_rows,
            "predicted_rows": self.predicted_rows,
            "dropped_by_ttl": self.dropped_by_ttl,
            "positive_rate": float(self.frame["prediction"].mean()) if len(self.frame) else 0.0,
            "rows_per_second": round(self.predicted_rows / scored, 1) if scored else None,
            "seconds": self.seconds,
            **self.outputs,
        }


def score_and_write(
    settings: Settings,
    features: pd.DataFrame,
    *,
    run_id: str | None = None,
    ref: int | str = PRODUCTION,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    write: bool = True,
    progress: Progress | None = _print,
) -> BatchResult:
    """Score rows that already hold their features with the ``ref`` version; write and log."""
    from esteira.contract import load_contract
    from esteira.registry import registry_for

    contract = load_contract(settings.features.repo_path)
    registry = registry_for(settings)
    run_id = run_id or new_run_id()
    clock = time.perf_counter()
    model = load_production_model(registry, ref)
    seconds = {"load_model": time.perf_counter() - clock}

    clock = time.perf_counter()
    frame = predict_frame(
        model,
        features,
        entity=contract.keys,
        run_id=run_id,
        chunk_rows=chunk_rows,
        progress=progress,
    )
    seconds["predict"] = time.perf_counter() - clock
    outputs: dict[str, Any] = {}
    if write:
        clock = time.perf_counter()
        outputs = write_outputs(registry.storage, model.name, run_id, frame)
        seconds["write"] = time.perf_counter() - clock
    return BatchResult(
        frame=frame,
        run_id=run_id,
        model_name=model.name,
        model_version=model.version,
        requested_rows=len(features),
        predicted_rows=len(frame),
        outputs=outputs,
        seconds={k: round(v, 4) for k, v in seconds.items()},
    )
