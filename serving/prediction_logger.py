"""Append served predictions to the prediction log without slowing requests down.

``PredictionLogger.log`` only appends a record to an in-memory deque (a few
microseconds); a daemon thread turns records into one DataFrame and writes it
with :func:`esteira.prediction_log.write_batch` when ``flush_rows`` rows are
waiting or ``flush_seconds`` have passed. ``close()`` drains everything that was
logged before it, so a clean shutdown loses nothing. If the storage refuses a
write, the rows stay queued and the next flush retries them; beyond
``max_pending_rows`` the oldest are dropped (and counted) so an outage cannot
exhaust memory.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from esteira.prediction_log import write_batch
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


def records_to_frame(records: Sequence[Record]) -> pd.DataFrame:
    """One DataFrame from many records; a column a record lacks is null for its rows.

    Column by column: a column every record holds as a numpy array is one
    ``np.concatenate``. This runs on the logger thread while requests are served,
    and every millisecond it holds the interpreter is a millisecond a request waits.
    """
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(record.columns))
        keys.update(dict.fromkeys(record.constants))
    sizes = [_rows_of(record) for record in records]
    data: dict[str, Any] = {}
    for key in keys:
        parts = [
            record.columns[key] if key in record.columns else [record.constants.get(key)] * n
            for record, n in zip(records, sizes, strict=True)
        ]
        if all(isinstance(part, np.ndarray) for part in parts):
            data[key] = np.concatenate(parts)
        else:
            data[key] = list(itertools.chain.from_iterable(parts))
    return pd.DataFrame(data)


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
        self._queue: deque[Record] = deque()
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
        with self._count_lock:
            self._queue.append(record)
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

    def _take(self) -> list[Record]:
        with self._count_lock:
            batch = list(self._queue)
            self._queue.clear()
            self._pending = 0
        return batch

    def _requeue(self, batch: list[Record]) -> None:
        """Put a failed batch back at the front, dropping the oldest beyond the bound."""
        with self._count_lock:
            self._queue.extendleft(reversed(batch))
            self._pending += sum(_rows_of(r) for r in batch)
            while self._pending > self.max_pending_rows and self._queue:
                dropped = _rows_of(self._queue.popleft())
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
            frame = records_to_frame(batch)
            try:
                write_batch(self.storage, self.model, frame)
            except Exception:
                self.failed_writes += 1
                self._requeue(batch)
                raise
            self.written_rows += len(frame)
            return len(frame)

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
