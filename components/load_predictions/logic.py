"""Load predictions: the prediction log's rows in a window of event_timestamp, newest per entity and time."""

from __future__ import annotations

from typing import Any

import pandas as pd

from esteira.config import Settings
from esteira.contract import load_contract
from esteira.features import EVENT_TS


def _utc(values: Any) -> Any:
    return pd.to_datetime(values, utc=True)


def logged_predictions(
    settings: Settings,
    start: str | None = None,
    end: str | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """Logged predictions whose ``event_timestamp`` is in [start, end), one per entity and time.

    When an entity and time was predicted more than once (a batch re-run, online and
    batch), the newest prediction (``served_at``) is kept. ``source`` keeps only
    ``online`` or ``batch`` rows.
    """
    from esteira.prediction_log import read_log
    from esteira.registry import registry_for

    contract = load_contract(settings.features.repo_path)
    registry = registry_for(settings)
    frame = read_log(registry.storage, settings.model.name)
    if frame.empty:
        return frame
    stamps = _utc(frame[EVENT_TS])
    keep = pd.Series(True, index=frame.index)
    if start:
        keep &= stamps >= _utc(start)
    if end:
        keep &= stamps < _utc(end)
    if source:
        keep &= frame["source"] == source
    frame = frame.loc[keep].assign(**{EVENT_TS: stamps[keep]})
    frame = frame.sort_values("served_at", kind="stable")
    frame = frame.drop_duplicates([*contract.keys, EVENT_TS], keep="last")
    return frame.sort_values([EVENT_TS, *contract.keys], kind="stable").reset_index(drop=True)
