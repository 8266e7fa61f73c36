"""Append served predictions to the prediction log without slowing requests down.

``PredictionLogger.log`` encodes a record's rows as JSON lines (orjson, about
13 us for a 45-feature row) and appends them to an in-memory deque. A daemon
thread writes the queue when ``flush_rows`` rows are waiting or ``flush_seconds``
have passed: Arrow's JSON reader turns the lines into a table and Parquet encodes
it, both in C++ without Python's interpreter lock, so a flush barely competes with
the requests being served. (Building a pandas DataFrame from per-request arrays
instead held the lock for about 40 us per row, in bursts that set the predictor's
p99.) ``close()`` drains everything that was logged before it, so a clean shutdown
loses nothing. If the storage refuses a write, the rows stay queued and the next
flush retries them; beyond ``max_pending_rows`` the oldest are dropped (and
counted) so an outage cannot exhaust memory.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from esteira.prediction_log import write_table
from esteira.storage import Storage

log = logging.getLogger(__name__)


@dataclass
class Record:
    """``columns`` hold one value per row (lists or arrays); ``constants`` repeat on every row."""

    columns: Mapping[str, Sequence[Any]]
    constants: Mapping[str, Any] = field(default_factory=dict)
    rows: int = 0


def _as_record(item: Record | pd.DataFrame | Sequence[Mapping[str, Any]]) -> Record:
    if isinstance(item, Record):
        return item
    if isinstance(item, pd.DataFrame):
        return Record({c: item[c].tolist() for c in item.columns}, rows=len(item))
    rows = list(item)
    keys = list(dict.fromkeys(k for row in rows for k in row))
    return Record({k: [row.get(k) for row in rows] for k in keys}, rows=len(rows))


def _rows_of(record: Record) -> int:
    if record.rows:
        return record.rows
    return max((len(v) for v in record.columns.values()), default=0)


_JSON = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
_TIMESTAMPS = pa.schema([("served_at", pa.timestamp("us", tz="UTC"))])


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def encode_rows(record: Record) -> bytes:
    """The record's rows as JSON lines: its columns, and its constants on every row."""
    rows = _rows_of(record)
    columns = record.columns.items()
    lines = []
    for i in range(rows):
        row = dict(record.constants)
        for key, values in columns:
            row[key] = values[i]
        lines.append(orjson.dumps(row, option=_JSON, default=_json_default))
    return b"\n".join(lines) + b"\n"


def lines_to_table(data: bytes) -> pa.Table:
    """JSON lines -> one Arrow table (a field a line lacks is null on that row)."""
    # one thread: the serving processes need the other core more than this batch does
    options = pa_json.ReadOptions(use_threads=False, block_size=max(len(data) + 1, 1 << 20))
    parse = pa_json.ParseOptions(explicit_schema=_TIMESTAMPS, unexpected_field_behavior="infer")
    try:
        return pa_json.read_json(io.BytesIO(data), read_options=options, parse_options=parse)
    except pa.ArrowInvalid:  # a column whose type changes between rows: keep it as text
        frame = pd.DataFrame([orjson.loads(line) for line in data.splitlines() if line])
        frame["served_at"] = pd.to_datetime(frame["served_at"], utc=True)
        for name in frame.select_dtypes(include="object").columns:
            kinds = {type(v) for v in frame[name] if v is not None}
            if len(kinds) > 1:
                frame[name] = [None if v is None else str(v) for v in frame[name]]
        return pa.Table.from_pandas(frame, preserve_index=False)


class PredictionLogger:
    """Non-blocking, batched writer of the prediction log for one model."""

    def __init__(
        self,
        storage: Storage,
        model: str,
        flush_rows: int = 500,
        flush_seconds: float = 2.0,
        max_pending_rows: int = 200_000,
    ) -> None:
        self.storage = storage
        self.model = model
        self.flush_rows = max(1, int(flush_rows))
        self.flush_seconds = float(flush_seconds)
        self.max_pending_rows = max_pending_rows
        self.written_rows = 0
        self.dropped_rows = 0
        self.failed_writes = 0
        self._queue: deque[tuple[bytes, int]] = deque()  # (JSON lines, rows)
        self._pending = 0
        self._wake = threading.Event()
        self._closed = False
        self._lock = threading.Lock()  # serialises writers (thread, flush(), close())
        self._count_lock = threading.Lock()  # queue + pending count change together
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    # ---- request path -----------------------------------------------------------------
    def log(self, item: Record | pd.DataFrame | Sequence[Mapping[str, Any]]) -> None:
        """Queue rows for the log; returns at once (the write happens in the background)."""
        if self._closed:
            raise RuntimeError("PredictionLogger is closed")
        record = _as_record(item)
        rows = _rows_of(record)
        if not rows:
            return
        chunk = (encode_rows(record), rows)
        with self._count_lock:
            self._queue.append(chunk)
            self._pending += rows
            full = self._pending >= self.flush_rows
        if full:
            self._wake.set()

    @property
    def pending_rows(self) -> int:
        return self._pending

    # ---- background -------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._flush_safely()

    def _take(self) -> list[tuple[bytes, int]]:
        with self._count_lock:
            batch = list(self._queue)
            self._queue.clear()
            self._pending = 0
        return batch

    def _requeue(self, batch: list[tuple[bytes, int]]) -> None:
        """Put a failed batch back at the front, dropping the oldest beyond the bound."""
        with self._count_lock:
            self._queue.extendleft(reversed(batch))
            self._pending += sum(rows for _, rows in batch)
            while self._pending > self.max_pending_rows and self._queue:
                _, dropped = self._queue.popleft()
                self._pending -= dropped
                self.dropped_rows += dropped

    def _flush_safely(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # keep the thread alive; the rows were re-queued
            log.warning("prediction log write failed, will retry: %s", type(exc).__name__)

    def flush(self) -> int:
        """Write everything queued now; returns the rows written (re-queues them on failure)."""
        with self._lock:
            batch = self._take()
            if not batch:
                return 0
            try:
                table = lines_to_table(b"".join(data for data, _ in batch))
                write_table(self.storage, self.model, table)
            except Exception:
                self.failed_writes += 1
                self._requeue(batch)
                raise
            self.written_rows += table.num_rows
            return table.num_rows

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread and write every queued row (retrying until ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        while self._queue:
            try:
                self.flush()
            except Exception as exc:
                if time.monotonic() >= deadline:
                    lost = self._pending
                    self.dropped_rows += lost
                    log.error(
                        "prediction log: %d rows could not be written at shutdown (%s)",
                        lost,
                        type(exc).__name__,
                    )
                    return
                time.sleep(0.2)

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
