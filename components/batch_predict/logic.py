"""Batch prediction: entity rows -> point-in-time Feast features -> the production model.

The flow, each step a small function the KFP wrappers and tests call directly:

1. :func:`extend_sources` appends the feature rows of newly arrived raw data to the
   Feast sources. The rolling windows and "hours since" features need history, so the
   new rows are computed over a warm-up of older raw data (the data the production
   model was trained on, by default) and only rows from the new data's first timestamp
   on replace what the sources held.
2. :func:`entity_rows` (one row per entity every N hours, with the request-time values
   read from the raw rows) or :func:`read_entity_rows` (a file of them).
3. :func:`historical_features`: Feast's point-in-time join through the feature service.
4. :func:`predict_frame`: the model scores whole chunks (vectorised; no per-row Python);
   a progress line per chunk.
5. :func:`write_outputs`: one Parquet file ``batch_predictions/<model>/<run>.parquet``
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esteira.config import Settings
from esteira.contract import Contract
from esteira.errors import DataError, EsteiraError
from esteira.features import EVENT_TS, compute_feature_tables
from esteira.registry import MODEL_FILE, ModelVersion, Registry
from esteira.safe_load import load_model as load_safely

DEFAULT_CHUNK_ROWS = 250_000
"""Rows scored per ``predict_proba`` call: big enough that per-call overhead vanishes."""
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


def production_version(registry: Registry, ref: int | str = PRODUCTION) -> ModelVersion:
    """The version behind ``ref``; a clear error when nothing was trained and promoted yet."""
    if ref == PRODUCTION and PRODUCTION not in registry.aliases():
        raise EsteiraError(
            f"model {registry.name!r}",
            "has no production version",
            "run `make run` first (it trains, registers and promotes a model)",
        )
    return registry.get(ref)


def load_model(registry: Registry, ref: int | str = PRODUCTION) -> LoadedModel:
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
def warmup_hours(contract: Contract) -> int:
    """History a new row's features can depend on: the longest window or "since" cap."""
    f = contract.features
    windows = [*f.rolling.windows_hours, *f.events.counts.values()]
    return max([*windows, f.events.since_cap_hours if f.events.since else 0])


def _read_table(uri: str, settings: Settings) -> pd.DataFrame | None:
    """A published source table, or None when it was never published."""
    from esteira.storage import s3_storage_options

    if uri.startswith("s3://"):
        import s3fs

        options = s3_storage_options(settings.storage)
        if not s3fs.S3FileSystem(**options).exists(uri):
            return None
        return pd.read_parquet(uri, storage_options=options)
    return pd.read_parquet(uri) if Path(uri).is_file() else None


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def extend_sources(
    new_raw: pd.DataFrame, history: pd.DataFrame | None, settings: Settings, contract: Contract
) -> dict[str, Any]:
    """Publish the feature rows of ``new_raw`` into the Feast sources; returns what changed.

    Features are computed over ``history`` rows from the warm-up span before the first new
    timestamp plus ``new_raw``, so windows and "since" counters are exact at the start of
    the new data. Source rows from that first timestamp on are replaced (re-running a batch
    over the same period, or another period over the same dates, does not duplicate rows);
    older rows are kept.
    """
    from esteira.feast_repo import publish_sources
    from esteira.feast_store import source_uri

    ts, entity = contract.timestamp, contract.entity
    if new_raw.empty:
        raise DataError("batch data", "has no rows", "point data_uri at the new raw data")
    new_raw = new_raw.assign(**{ts: _utc(new_raw[ts])})
    start = new_raw[ts].min()
    context = new_raw.iloc[0:0]
    if history is not None and not history.empty:
        past = _utc(history[ts])
        keep = (past < start) & (past >= start - pd.Timedelta(hours=warmup_hours(contract)))
        context = history.loc[keep].assign(**{ts: past[keep]})
    frame = pd.concat([context, new_raw], ignore_index=True)
    tables = compute_feature_tables(frame, contract)
    merged: dict[str, pd.DataFrame] = {}
    for table, computed in tables.items():
        fresh = computed.loc[_utc(computed[EVENT_TS]) >= start]
        if table == contract.features.static.table:
            fresh = computed  # attributes are stamped when first seen: keep the warm-up rows
        existing = _read_table(source_uri(settings, table), settings)
        if existing is not None:
            existing = existing.loc[_utc(existing[EVENT_TS]) < start]
            fresh = pd.concat([existing, fresh], ignore_index=True)
        fresh = fresh.drop_duplicates([entity, EVENT_TS], keep="last")
        merged[table] = fresh.sort_values([entity, EVENT_TS], kind="stable").reset_index(drop=True)
    uris = publish_sources(merged, settings)
    return {
        "start": start.isoformat(),
        "new_rows": len(new_raw),
        "warmup_rows": len(context),
        "tables": {t: {"uri": uris[t], "rows": len(f)} for t, f in merged.items()},
    }


# ---- entity rows -----------------------------------------------------------------------------
def entity_rows(raw: pd.DataFrame, contract: Contract, every_hours: int) -> pd.DataFrame:
    """One row per entity every ``every_hours`` (its first reading in each bucket).

    Columns: the entity key, ``event_timestamp`` and the request-time values the contract
    names (``volt_now`` ...), read from the same raw row, as serving receives them.
    """
    ts, entity = contract.timestamp, contract.entity
    frame = raw.sort_values([entity, ts], kind="stable")
    stamps = _utc(frame[ts])
    bucket = stamps.dt.floor(f"{every_hours}h")
    first = ~pd.DataFrame({"e": frame[entity].to_numpy(), "b": bucket.to_numpy()}).duplicated()
    rows = frame.loc[first.to_numpy()]
    out = pd.DataFrame({entity: rows[entity].to_numpy(), EVENT_TS: _utc(rows[ts]).to_numpy()})
    for name, column in contract.request.items():
        out[name] = rows[column].to_numpy(dtype="float64")
    return out.sort_values([EVENT_TS, entity], kind="stable").reset_index(drop=True)


def attach_request_values(
    rows: pd.DataFrame, raw: pd.DataFrame, contract: Contract
) -> pd.DataFrame:
    """Fill missing request-time columns with the newest raw reading at or before each row."""
    missing = [n for n in contract.request if n not in rows.columns]
    if not missing:
        return rows
    ts, entity = contract.timestamp, contract.entity
    order = rows.assign(__row=np.arange(len(rows))).sort_values(EVENT_TS, kind="stable")
    readings = raw[[entity, ts, *(contract.request[n] for n in missing)]].copy()
    readings[ts] = _utc(readings[ts])
    readings = readings.rename(columns={contract.request[n]: n for n in missing})
    readings = readings.sort_values(ts, kind="stable")
    readings[entity] = readings[entity].astype(order[entity].dtype)
    joined = pd.merge_asof(
        order, readings, left_on=EVENT_TS, right_on=ts, by=entity, direction="backward"
    )
    joined = joined.sort_values("__row").drop(columns=["__row", ts])
    return joined.reset_index(drop=True)


def read_entity_rows(
    uri: str, settings: Settings, contract: Contract, raw: pd.DataFrame | None = None
) -> pd.DataFrame:
    """A Parquet/CSV file of entity rows (entity key, ``event_timestamp`` [, request values]).

    Missing request-time values are taken from ``raw`` (:func:`attach_request_values`).
    """
    from esteira.ingest import detect_format
    from esteira.storage import read_uri

    data = read_uri(uri, settings.storage)
    if detect_format(uri) == "parquet":
        rows = pd.read_parquet(io.BytesIO(data))
    else:
        rows = pd.read_csv(io.BytesIO(data))
    absent = [c for c in (contract.entity, EVENT_TS) if c not in rows.columns]
    if absent:
        raise DataError(uri, f"lacks columns {absent}", f"write {contract.entity} and {EVENT_TS}")
    rows[EVENT_TS] = _utc(rows[EVENT_TS])
    rows = rows.drop_duplicates([contract.entity, EVENT_TS]).reset_index(drop=True)
    if raw is not None:
        rows = attach_request_values(rows, raw, contract)
    missing = [n for n in contract.request if n not in rows.columns]
    if missing:
        raise DataError(uri, f"lacks request-time values {missing}", "add them or pass raw data")
    return rows


def historical_features(rows: pd.DataFrame, settings: Settings) -> Any:
    """Point-in-time features for ``rows`` through the feature service (a ``TrainingSet``).

    Rows a view has no value for inside its TTL are dropped and counted; more than
    ``features.max_dropped_share`` of them is an error (stale sources).
    """
    from esteira.feast_repo import build_training_set

    return build_training_set(rows, settings)


# ---- scoring ---------------------------------------------------------------------------------
def predict_frame(
    model: LoadedModel,
    features: pd.DataFrame,
    *,
    entity: str,
    run_id: str,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    progress: Progress | None = _print,
    served_at: datetime | None = None,
) -> pd.DataFrame:
    """Score ``features`` chunk by chunk; the rows in prediction-log form.

    Columns: ``request_id`` (``<run>-<row>``), ``served_at``, ``model_name``,
    ``model_version``, ``source``, the entity key, ``event_timestamp``, every model
    feature, ``prediction`` (the class at the version's decision threshold, or the
    value for regression) and ``probability`` (null for regression).
    """
    missing = [c for c in [entity, EVENT_TS, *model.feature_names] if c not in features.columns]
    if missing:
        raise DataError("batch features", f"lack columns {missing}", "retrieve them through Feast")
    n = len(features)
    # one copy of what the output keeps; the model's ColumnTransformer picks its own columns
    out = features.loc[:, [entity, EVENT_TS, *model.feature_names]].reset_index(drop=True)
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
    from components.register.logic import registry_for
    from esteira.contract import load_contract

    contract = load_contract(settings.features.repo_path)
    registry = registry_for(settings)
    run_id = run_id or new_run_id()
    clock = time.perf_counter()
    model = load_model(registry, ref)
    seconds = {"load_model": time.perf_counter() - clock}

    clock = time.perf_counter()
    frame = predict_frame(
        model,
        features,
        entity=contract.entity,
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


def run_batch(
    settings: Settings,
    rows: pd.DataFrame,
    *,
    run_id: str | None = None,
    ref: int | str = PRODUCTION,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    write: bool = True,
    progress: Progress | None = _print,
) -> BatchResult:
    """Features for entity ``rows`` from Feast, scored by the ``ref`` version, written and logged."""
    clock = time.perf_counter()
    retrieved = historical_features(rows, settings)
    retrieval = time.perf_counter() - clock
    if progress:
        progress(
            f"[batch] {len(retrieved.frame)} of {len(rows)} rows have features "
            f"(dropped by TTL: {retrieved.dropped_by_ttl or 'none'})"
        )
    result = score_and_write(
        settings,
        retrieved.frame,
        run_id=run_id,
        ref=ref,
        chunk_rows=chunk_rows,
        write=write,
        progress=progress,
    )
    result.requested_rows = len(rows)
    result.dropped_by_ttl = dict(retrieved.dropped_by_ttl)
    result.seconds["features"] = round(retrieval, 4)
    return result
