"""Batch prediction in one call (features, then scoring): what the tests and benchmarks drive."""

from __future__ import annotations

import time

import pandas as pd

from components.batch_features.logic import historical_features
from components.batch_predict.logic import (
    DEFAULT_CHUNK_ROWS,
    PRODUCTION,
    BatchResult,
    Progress,
    _print,
    score_and_write,
)
from esteira.config import Settings


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
