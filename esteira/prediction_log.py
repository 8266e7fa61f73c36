"""The prediction log: what was predicted, from which features, by which version, when.

Serving (online) and batch prediction both append here; monitoring reads it.
Layout on the configured storage, partitioned by the date a prediction was made::

    predictions/<model>/date=YYYY-MM-DD/<HHMMSS>-<id>.parquet

Columns: ``request_id``, ``served_at`` (UTC), ``model_name``, ``model_version``,
``source`` (``online`` | ``batch``), the entity key, ``event_timestamp`` (as-of time
of the features, when known), every model feature, ``prediction`` and ``probability``
(null for regression). Each part file is written with one atomic put, so a reader
never sees half a batch.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from esteira.parquet import read_parquet
from esteira.storage import Storage

PREFIX = "predictions"
REQUIRED = ["request_id", "served_at", "model_name", "model_version", "source", "prediction"]


def _key(model: str, day: date, stamp: datetime) -> str:
    return f"{PREFIX}/{model}/date={day.isoformat()}/{stamp:%H%M%S}-{uuid.uuid4().hex[:12]}.parquet"


def _require(columns: Any) -> None:
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise ValueError(f"prediction log rows need columns {missing}")


def write_batch(storage: Storage, model: str, frame: pd.DataFrame) -> list[str]:
    """Append ``frame`` to the log, one part file per date of ``served_at``; returns the keys."""
    _require(frame.columns)
    if frame.empty:
        return []
    served = pd.to_datetime(frame["served_at"], utc=True)
    table = pa.Table.from_pandas(frame.assign(served_at=served), preserve_index=False)
    return write_table(storage, model, table)


def write_table(storage: Storage, model: str, table: pa.Table) -> list[str]:
    """:func:`write_batch` for an Arrow table whose ``served_at`` is a UTC timestamp."""
    _require(table.column_names)
    if table.num_rows == 0:
        return []
    days = pc.cast(table["served_at"], pa.date32())
    keys = []
    now = datetime.now(UTC)
    for day in sorted(pc.unique(days).to_pylist()):
        part = table.filter(pc.equal(days, pa.scalar(day, pa.date32())))
        buf = io.BytesIO()
        pq.write_table(part, buf)
        key = _key(model, day, now)
        storage.put_bytes(key, buf.getvalue())
        keys.append(key)
    return keys


def read_log(
    storage: Storage, model: str, start: date | None = None, end: date | None = None
) -> pd.DataFrame:
    """Every logged prediction of ``model`` whose serving date is in [start, end]."""
    parts = []
    for key in storage.list(f"{PREFIX}/{model}"):
        segment = key.split("/")[2] if key.count("/") >= 3 else ""
        if not segment.startswith("date=") or not key.endswith(".parquet"):
            continue
        day = date.fromisoformat(segment.removeprefix("date="))
        if (start and day < start) or (end and day > end):
            continue
        parts.append(read_parquet(storage.get_bytes(key)))
    if not parts:
        return pd.DataFrame(columns=REQUIRED)
    return (
        pd.concat(parts, ignore_index=True)
        .sort_values("served_at", kind="stable")
        .reset_index(drop=True)
    )
