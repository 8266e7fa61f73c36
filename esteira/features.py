"""Compute features: validated raw data -> the Feast sources' tables, and the labelled entity frame.

All windows are time-based (``'24h'``, not 24 rows), so irregular or gappy data
is aggregated correctly. Every table carries the entity key and
``event_timestamp``: the time at which the value became known, which is what
Feast's point-in-time join uses.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from esteira.contract import Contract

EVENT_TS = "event_timestamp"


def _sorted(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    return raw.sort_values([c.entity, c.timestamp], kind="stable").reset_index(drop=True)


def rolling_table(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    spec = c.features.rolling
    frame = _sorted(raw, c)
    out = {c.entity: frame[c.entity].to_numpy(), EVENT_TS: frame[c.timestamp].to_numpy()}
    grouped = frame.set_index(c.timestamp).groupby(c.entity, sort=False)[spec.columns]
    for hours in spec.windows_hours:
        window = grouped.rolling(f"{hours}h", min_periods=1)
        for stat in spec.stats:
            values = getattr(window, stat)()
            if stat == "std":
                values = values.fillna(0.0)  # a single reading has no spread
            for col in spec.columns:
                out[f"{col}_{stat}_{hours}h"] = values[col].to_numpy(dtype="float64")
    return pd.DataFrame(out)


def static_table(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    """One row per entity and distinct attribute values, stamped when first seen."""
    cols = c.features.static.columns
    frame = _sorted(raw, c)
    changed = frame[[c.entity, *cols]].ne(frame[[c.entity, *cols]].shift()).any(axis=1)
    table = frame.loc[changed, [c.entity, c.timestamp, *cols]]
    return table.rename(columns={c.timestamp: EVENT_TS}).reset_index(drop=True)


def events_table(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    spec = c.features.events
    frame = _sorted(raw, c)
    ts = frame[c.timestamp]
    out = pd.DataFrame({c.entity: frame[c.entity], EVENT_TS: ts})
    grouped = frame.set_index(c.timestamp).groupby(c.entity, sort=False)
    for col, hours in spec.counts.items():
        sums = grouped[col].rolling(f"{hours}h", min_periods=1).sum()
        out[f"{col}_sum_{hours}h"] = sums.to_numpy(dtype="float64")
    hours_since_epoch = (ts - pd.Timestamp(0, tz=ts.dt.tz)).dt.total_seconds() / 3600
    for col in spec.since:
        last = hours_since_epoch.where(frame[col] > 0)
        last = last.groupby(frame[c.entity]).ffill()
        since = (
            (hours_since_epoch - last).fillna(spec.since_cap_hours).clip(upper=spec.since_cap_hours)
        )
        out[f"hours_since_{col}"] = since.to_numpy(dtype="float64")
    return out


def compute_feature_tables(raw: pd.DataFrame, c: Contract) -> dict[str, pd.DataFrame]:
    """The three source tables named in the contract."""
    f = c.features
    return {
        f.rolling.table: rolling_table(raw, c),
        f.static.table: static_table(raw, c),
        f.events.table: events_table(raw, c),
    }


def label_frame(raw: pd.DataFrame, c: Contract, sample_every_hours: int) -> pd.DataFrame:
    """Entity rows (entity, event_timestamp, label, request-time values) for training.

    The label is 1 when the event happens in (t, t + horizon]. Rows whose horizon
    runs past the end of the data are dropped: their label is not known yet.
    One row per entity every ``sample_every_hours`` keeps the set small and the
    rows less correlated.
    """
    frame = _sorted(raw, c)
    ts = frame[c.timestamp]
    bucket = ts.dt.floor(f"{sample_every_hours}h")
    keep = ~pd.DataFrame({"e": frame[c.entity], "b": bucket}).duplicated()
    rows = frame.loc[keep].copy()

    events = frame.loc[frame[c.label.event] > 0, [c.entity, c.timestamp]]
    events = events.rename(columns={c.timestamp: "_next_event"}).sort_values("_next_event")
    rows = rows.sort_values(c.timestamp)
    joined = pd.merge_asof(
        rows,
        events,
        left_on=c.timestamp,
        right_on="_next_event",
        by=c.entity,
        direction="forward",
        allow_exact_matches=False,
    )
    horizon = pd.Timedelta(hours=c.label.horizon_hours)
    known = joined[c.timestamp] <= ts.max() - horizon
    joined = joined.loc[known]
    label = (joined["_next_event"] - joined[c.timestamp]) <= horizon
    out = pd.DataFrame(
        {c.entity: joined[c.entity].to_numpy(), EVENT_TS: joined[c.timestamp].to_numpy()}
    )
    out[c.label.name] = label.to_numpy(dtype=np.int64)
    for name, column in c.request.items():
        out[name] = joined[column].to_numpy(dtype="float64")
    return out.sort_values([EVENT_TS, c.entity], kind="stable").reset_index(drop=True)
