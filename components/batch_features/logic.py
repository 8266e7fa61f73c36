"""Batch features: the new data's feature rows published to Feast, then point-in-time features per entity row.

1. :func:`extend_sources` appends the feature rows of newly arrived raw data to the
   Feast sources. The rolling windows and "hours since" features need history, so the
   new rows are computed over a warm-up of older raw data (the data the production
   model was trained on, by default) and only rows from the new data's first timestamp
   on replace what the sources held.
2. :func:`entity_rows` (one row per entity every N hours, with the request-time values
   read from the raw rows) or :func:`read_entity_rows` (a file of them).
3. :func:`historical_features`: Feast's point-in-time join through the feature service.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esteira.config import Settings
from esteira.contract import Contract
from esteira.errors import DataError
from esteira.feature_engine import feature_tables
from esteira.features import EVENT_TS, entity_frame
from esteira.parquet import read_parquet


def warmup_hours(contract: Contract) -> int:
    """History a new row's features can depend on: the longest window, lag or "since" cap."""
    f = contract.features
    spans = [0]
    if f.rolling:
        spans += f.rolling.windows_hours
    if f.lags:
        spans.append(max(f.lags.lags) * f.lags.step_hours)
    if f.events:
        spans += list(f.events.counts.values())
        spans.append(f.events.since_cap_hours if f.events.since else 0)
    return int(max(spans) + contract.available_after_hours)


def _read_table(uri: str, settings: Settings) -> pd.DataFrame | None:
    """A published source table, or None when it was never published."""
    from esteira.storage import s3_storage_options

    if uri.startswith("s3://"):
        import s3fs

        options = s3_storage_options(settings.storage)
        if not s3fs.S3FileSystem(**options).exists(uri):
            return None
        return read_parquet(uri, storage_options=options)
    return read_parquet(uri) if Path(uri).is_file() else None


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

    ts, keys = contract.timestamp, contract.keys
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
    tables = feature_tables(frame, contract, settings)
    merged: dict[str, pd.DataFrame] = {}
    for table, computed in tables.items():
        fresh = computed.loc[_utc(computed[EVENT_TS]) >= start]
        if contract.features.static and table == contract.features.static.table:
            fresh = computed  # attributes are stamped when first seen: keep the warm-up rows
        existing = _read_table(source_uri(settings, table), settings)
        if existing is not None:
            existing = existing.loc[_utc(existing[EVENT_TS]) < start]
            fresh = pd.concat([existing, fresh], ignore_index=True)
        fresh = fresh.drop_duplicates([*keys, EVENT_TS], keep="last")
        merged[table] = fresh.sort_values([*keys, EVENT_TS], kind="stable").reset_index(drop=True)
    uris = publish_sources(merged, settings)
    return {
        "start": start.isoformat(),
        "new_rows": len(new_raw),
        "warmup_rows": len(context),
        "tables": {t: {"uri": uris[t], "rows": len(f)} for t, f in merged.items()},
    }


def entity_rows(raw: pd.DataFrame, contract: Contract, every_hours: int) -> pd.DataFrame:
    """One row per entity every ``every_hours`` (:func:`esteira.features.entity_frame`):
    the join keys, ``event_timestamp`` (UTC) and the request-time values the contract
    names, read from the same raw row, as serving receives them."""
    out = entity_frame(raw, contract, every_hours)
    out[EVENT_TS] = _utc(out[EVENT_TS])
    return out


def attach_request_values(
    rows: pd.DataFrame, raw: pd.DataFrame, contract: Contract
) -> pd.DataFrame:
    """Fill missing request-time columns with the newest raw reading at or before each row."""
    missing = [n for n in contract.request if n not in rows.columns]
    if not missing:
        return rows
    ts, keys = contract.timestamp, contract.keys
    order = rows.assign(__row=np.arange(len(rows))).sort_values(EVENT_TS, kind="stable")
    readings = raw[[*keys, ts, *(contract.request[n] for n in missing)]].copy()
    readings[ts] = _utc(readings[ts])
    readings = readings.rename(columns={contract.request[n]: n for n in missing})
    readings = readings.sort_values(ts, kind="stable")
    readings = readings.astype({k: order[k].dtype for k in keys})
    joined = pd.merge_asof(
        order, readings, left_on=EVENT_TS, right_on=ts, by=keys, direction="backward"
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
    is_parquet = detect_format(uri) == "parquet"
    rows = read_parquet(data) if is_parquet else pd.read_csv(io.BytesIO(data))
    needed = [*contract.keys, EVENT_TS]
    absent = [c for c in needed if c not in rows.columns]
    if absent:
        raise DataError(uri, f"lacks columns {absent}", f"write {', '.join(needed)}")
    rows[EVENT_TS] = _utc(rows[EVENT_TS])
    rows = rows.drop_duplicates(needed).reset_index(drop=True)
    if raw is not None:
        rows = attach_request_values(rows, raw, contract)
    missing = [n for n in contract.request if n not in rows.columns]
    if missing:
        raise DataError(uri, f"lacks request-time values {missing}", "add them or pass raw data")
    return rows


def historical_features(
    rows: pd.DataFrame, settings: Settings, out_path: str | None = None, run_id: str = ""
) -> Any:
    """Point-in-time features for ``rows`` through the feature service (a ``TrainingSet``).

    Rows a view has no value for inside its TTL are dropped and counted; more than
    ``features.max_dropped_share`` of them is an error (stale sources). With ``out_path``
    the frame is written there too, and with ``features.spark.run_in: spark_application``
    the retrieval is a SparkApplication named after ``run_id`` (esteira/feature_engine.py).
    """
    if out_path is None:
        from esteira.feast_repo import build_training_set

        return build_training_set(rows, settings)
    from esteira.feature_engine import training_set_step

    return training_set_step(rows, settings, out_path, run_id or out_path)
