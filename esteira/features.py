"""Compute features: validated raw data -> the Feast sources' tables, and the labelled entity frame.

All windows are time-based (``'24h'``, not 24 rows), so irregular or gappy data
is aggregated correctly. Every table carries the entity key and
``event_timestamp``: the time at which the value became known, which is what
Feast's point-in-time join uses.

Every table and the labels are computed per entity, so the step computes them over blocks
of whole entities (:func:`feature_blocks`, about ``BLOCK_ROWS`` raw rows each, in key order)
and writes each block out before the next: the concatenated blocks are the very tables the
whole frame gives, and the step's memory stays near the raw table's (read with only the
columns the contract uses, strings as categories).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from esteira.contract import Contract

EVENT_TS = "event_timestamp"


BLOCK_ROWS = 500_000  # raw rows per block of whole entities (compute-features)


def _in_order(frame: pd.DataFrame, columns: list[str]) -> bool:
    """True when ``frame`` is already sorted by ``columns`` (a stable sort would not move a row)."""
    if len(frame) < 2:
        return True
    tied = np.ones(len(frame) - 1, dtype=bool)
    for col in columns:
        series = frame[col]
        # a tz-aware column as datetime64 (UTC), not an object array of Timestamps
        tz = isinstance(series.dtype, pd.DatetimeTZDtype)
        values = series.to_numpy() if not tz else series.dt.tz_convert(None).to_numpy()
        after, before = values[1:], values[:-1]
        if (tied & (after < before)).any():
            return False
        tied &= after == before
    return True


def _sorted(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    if _in_order(raw, [*c.keys, c.timestamp]):  # generated and ingested data usually is
        if raw.index.equals(pd.RangeIndex(len(raw))):
            return raw  # no copy: every table function builds new frames from it
        return raw.reset_index(drop=True)
    return raw.sort_values([*c.keys, c.timestamp], kind="stable").reset_index(drop=True)


def _known_at(frame: pd.DataFrame, c: Contract) -> pd.Series:
    """When each row's values become known: its timestamp + ``available_after_hours``."""
    return frame[c.timestamp] + pd.Timedelta(hours=c.available_after_hours)


def _group_key(frame: pd.DataFrame, c: Contract) -> pd.Series | list[str]:
    """What rolling windows group by: the key column, or the composite key as one series."""
    if len(c.keys) == 1:
        return c.keys[0]
    return frame.groupby(c.keys, sort=False).ngroup()


def _key_columns(frame: pd.DataFrame, c: Contract) -> dict[str, np.ndarray]:
    return {k: frame[k].to_numpy() for k in c.keys}


def rolling_table(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    spec = c.features.rolling
    assert spec is not None
    frame = _sorted(raw, c)
    out = {**_key_columns(frame, c), EVENT_TS: _known_at(frame, c).array}
    group = _group_key(frame, c)
    by = frame[group].to_numpy() if isinstance(group, str) else group.to_numpy()
    indexed = frame[spec.columns].set_index(frame[c.timestamp])
    grouped = indexed.groupby(by, sort=False)
    for hours in spec.windows_hours:
        window = grouped.rolling(f"{hours}h", min_periods=1)
        for stat in spec.stats:
            values = getattr(window, stat)()
            if stat == "std":
                values = values.fillna(0.0)  # a single reading has no spread
            for col in spec.columns:
                out[f"{col}_{stat}_{hours}h"] = values[col].to_numpy(dtype="float64")
    return pd.DataFrame(out)


def lag_table(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    """``<col>_lag_<k>``: the value ``(k - 1) * step`` before the row's, matched by time."""
    spec = c.features.lags
    assert spec is not None
    frame = _sorted(raw, c)
    out = pd.DataFrame({**_key_columns(frame, c), EVENT_TS: _known_at(frame, c).array})
    base = frame[[*c.keys, c.timestamp, *spec.columns]]
    for k in spec.lags:
        shifted = base.copy()
        shifted[c.timestamp] = shifted[c.timestamp] + pd.Timedelta(hours=(k - 1) * spec.step_hours)
        shifted = shifted.rename(columns={col: f"{col}_lag_{k}" for col in spec.columns})
        joined = frame[[*c.keys, c.timestamp]].merge(shifted, on=[*c.keys, c.timestamp], how="left")
        for col in spec.columns:
            out[f"{col}_lag_{k}"] = joined[f"{col}_lag_{k}"].to_numpy(dtype="float64")
    return out


def calendar_values(moments: pd.Series, spec: Any) -> dict[str, np.ndarray]:
    """The calendar parts of each moment (the time a prediction is for)."""
    ts = pd.to_datetime(moments, utc=True)
    holidays = {tuple(int(x) for x in d.split("-")) for d in spec.holidays}
    out: dict[str, np.ndarray] = {}
    day = ts.dt.floor("D")
    for part in spec.parts:
        if part == "day_of_week":
            out[part] = ts.dt.dayofweek.to_numpy(dtype="int64")
        elif part == "day_of_month":
            out[part] = ts.dt.day.to_numpy(dtype="int64")
        elif part == "month":
            out[part] = ts.dt.month.to_numpy(dtype="int64")
        elif part == "day_of_year":
            out[part] = ts.dt.dayofyear.to_numpy(dtype="int64")
        elif part == "is_holiday":
            md = zip(ts.dt.month, ts.dt.day, strict=True)
            out[part] = np.array([m in holidays for m in md], dtype="int64")
        elif part == "days_to_holiday":  # 0 on a holiday, up to 7 (none within a week)
            until = np.full(len(ts), 7, dtype="int64")
            for ahead in range(6, -1, -1):
                later = day + pd.Timedelta(days=ahead)
                hit = np.array(
                    [m in holidays for m in zip(later.dt.month, later.dt.day, strict=True)]
                )
                until[hit] = ahead
            out[part] = until
    return out


def calendar_table(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    """Per entity and moment a row becomes known: the calendar of that moment, which is the
    time the entity rows stamped then predict for."""
    spec = c.features.calendar
    assert spec is not None
    frame = _sorted(raw, c)
    known = _known_at(frame, c)
    out = pd.DataFrame({**_key_columns(frame, c), EVENT_TS: known.array})
    moments = pd.Index(known.unique())  # a few hundred days for millions of rows
    where = moments.get_indexer(known)
    for name, values in calendar_values(pd.Series(moments), spec).items():
        out[name] = values[where]
    return out


def static_table(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    """One row per entity and distinct attribute values, stamped when first seen."""
    assert c.features.static is not None
    cols = c.features.static.columns
    frame = _sorted(raw, c)
    frame = frame.assign(**{EVENT_TS: _known_at(frame, c)})
    changed = frame[[*c.keys, *cols]].ne(frame[[*c.keys, *cols]].shift()).any(axis=1)
    table = frame.loc[changed, [*c.keys, EVENT_TS, *cols]]
    return table.reset_index(drop=True)


def events_table(raw: pd.DataFrame, c: Contract) -> pd.DataFrame:
    spec = c.features.events
    assert spec is not None
    frame = _sorted(raw, c)
    ts = frame[c.timestamp]
    out = pd.DataFrame({**_key_columns(frame, c), EVENT_TS: _known_at(frame, c)})
    group = _group_key(frame, c)
    by = frame[group].to_numpy() if isinstance(group, str) else group.to_numpy()
    grouped = frame.set_index(c.timestamp).groupby(by, sort=False)
    for col, hours in spec.counts.items():
        sums = grouped[col].rolling(f"{hours}h", min_periods=1).sum()
        out[f"{col}_sum_{hours}h"] = sums.to_numpy(dtype="float64")
    hours_since_epoch = (ts - pd.Timestamp(0, tz=ts.dt.tz)).dt.total_seconds() / 3600
    for col in spec.since:
        last = hours_since_epoch.where(frame[col] > 0)
        last = last.groupby(by).ffill()
        since = (
            (hours_since_epoch - last).fillna(spec.since_cap_hours).clip(upper=spec.since_cap_hours)
        )
        out[f"hours_since_{col}"] = since.to_numpy(dtype="float64")
    return out


_TABLES = {
    "rolling": rolling_table,
    "static": static_table,
    "events": events_table,
    "lags": lag_table,
    "calendar": calendar_table,
}


def compute_feature_tables(raw: pd.DataFrame, c: Contract) -> dict[str, pd.DataFrame]:
    """Every source table the contract names, by table name."""
    tables = {}
    for kind, build in _TABLES.items():
        spec = getattr(c.features, kind)
        if spec is not None:
            tables[spec.table] = build(raw, c)
    return tables


def _sample(frame: pd.DataFrame, c: Contract, every_hours: int) -> pd.Series:
    """One row per entity every ``every_hours`` (the first of each bucket)."""
    bucket = frame[c.timestamp].dt.floor(f"{every_hours}h")
    return ~frame[c.keys].assign(_b=bucket).duplicated()


def label_frame(
    raw: pd.DataFrame,
    c: Contract,
    sample_every_hours: int,
    data_end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Entity rows (keys, event_timestamp, label, request-time values) for training.

    ``event`` labels are 1 when the event happens in (t, t + horizon]; rows whose horizon
    runs past the end of the data are dropped (their label is not known yet).
    ``value`` labels: each raw row is the label of the entity row at
    t = its timestamp + available_after - horizon, the moment its value is ``horizon``
    ahead; its request-time values are that row's (planned ahead, e.g. price, promotion).
    One row per entity every ``sample_every_hours`` keeps the set small and the rows
    less correlated. ``data_end``: the newest timestamp of the whole data when ``raw`` is a
    block of it (default: ``raw``'s own).
    """
    if c.label.kind in ("value", "class"):
        return _value_labels(raw, c, sample_every_hours)
    frame = _sorted(raw, c)
    ts = frame[c.timestamp]
    rows = frame.loc[_sample(frame, c, sample_every_hours)].copy()

    events = frame.loc[frame[c.label.source] > 0, [*c.keys, c.timestamp]]
    events = events.rename(columns={c.timestamp: "_next_event"}).sort_values("_next_event")
    rows = rows.sort_values(c.timestamp)
    joined = pd.merge_asof(
        rows,
        events,
        left_on=c.timestamp,
        right_on="_next_event",
        by=c.keys,
        direction="forward",
        allow_exact_matches=False,
    )
    horizon = pd.Timedelta(hours=c.label.horizon_hours)
    end = ts.max() if data_end is None else data_end
    known = joined[c.timestamp] <= end - horizon
    joined = joined.loc[known]
    label = (joined["_next_event"] - joined[c.timestamp]) <= horizon
    out = pd.DataFrame({k: joined[k].to_numpy() for k in c.keys})
    out[EVENT_TS] = joined[c.timestamp].to_numpy()
    out[c.label.name] = label.to_numpy(dtype=np.int64)
    _request_values(out, joined, c)
    return out.sort_values([EVENT_TS, *c.keys], kind="stable").reset_index(drop=True)


def entity_frame(
    raw: pd.DataFrame, c: Contract, every_hours: int, *, label: bool = False
) -> pd.DataFrame:
    """Rows to predict for: the keys, ``event_timestamp`` and the request-time values, one
    row per entity every ``every_hours`` (with ``label``, a value label's label too).

    An ``event`` label's row is at its raw row's time. A ``value`` label's row is at the
    raw row's time + available_after - horizon, the moment its value is ``horizon`` ahead,
    with that row's request-time values (planned ahead, e.g. price, promotion). A ``class``
    label's row is every raw row, at its time, with its own label (no sampling: each row,
    e.g. a document, is a prediction of its own).
    """
    frame = _sorted(raw, c)
    rows = frame if c.label.kind == "class" else frame.loc[_sample(frame, c, every_hours)]
    shift = pd.Timedelta(0)
    if c.label.kind == "value":
        shift = pd.Timedelta(hours=c.available_after_hours - c.label.horizon_hours)
    out = pd.DataFrame({k: rows[k].to_numpy() for k in c.keys})
    out[EVENT_TS] = (rows[c.timestamp] + shift).to_numpy()
    if label:
        dtype = "int64" if c.label.kind == "class" else "float64"
        out[c.label.name] = rows[c.label.source].to_numpy(dtype=dtype)
    _request_values(out, rows, c)
    return out.sort_values([EVENT_TS, *c.keys], kind="stable").reset_index(drop=True)


def _request_values(out: pd.DataFrame, rows: pd.DataFrame, c: Contract) -> None:
    """The request-time values of ``rows`` into ``out``: numbers as floats, text as str."""
    texts = set(c.text_requests)
    for name, column in c.request.items():
        if name in texts:
            out[name] = rows[column].astype(object).to_numpy()
        else:
            out[name] = rows[column].to_numpy(dtype="float64")


def _value_labels(raw: pd.DataFrame, c: Contract, sample_every_hours: int) -> pd.DataFrame:
    """Each raw row is the label of the entity row ``horizon`` before it (see label_frame)."""
    return entity_frame(raw, c, sample_every_hours, label=True)


# ---- the step: blocks of whole entities ----------------------------------------------------
def used_columns(c: Contract) -> list[str]:
    """The raw columns features and labels read (what the step projects its read to)."""
    f = c.features
    named = [*c.keys, c.timestamp, c.label.source, *c.request.values()]
    for cols in (
        f.rolling.columns if f.rolling else [],
        f.lags.columns if f.lags else [],
        f.static.columns if f.static else [],
        [*f.events.counts, *f.events.since] if f.events else [],
    ):
        named += cols
    return list(dict.fromkeys(named))


def entity_blocks(
    frame: pd.DataFrame, c: Contract, rows: int = BLOCK_ROWS
) -> list[tuple[int, int]]:
    """``[start, end)`` row ranges of ``frame`` (sorted by key) of about ``rows`` rows each,
    cut only where the entity changes."""
    if frame.empty:
        return [(0, 0)]  # one empty block: empty tables, no labels
    change = np.zeros(len(frame), dtype=bool)
    change[0] = True
    for key in c.keys:
        values = frame[key].to_numpy()
        change[1:] |= values[1:] != values[:-1]
    starts = np.flatnonzero(change)
    blocks, begin = [], 0
    while begin < len(frame):
        later = starts[starts >= begin + rows]
        end = int(later[0]) if len(later) else len(frame)
        blocks.append((begin, end))
        begin = end
    return blocks


def feature_blocks(
    raw: pd.DataFrame,
    c: Contract,
    sample_every_hours: int,
    *,
    dtypes: dict[str, Any] | None = None,
    rows: int = BLOCK_ROWS,
) -> Iterator[tuple[dict[str, pd.DataFrame], pd.DataFrame]]:
    """(:func:`compute_feature_tables`, :func:`label_frame`) of each block of whole entities,
    in key order. Concatenated, the tables are the whole frame's; the labels too once sorted
    by (event_timestamp, keys) (:func:`concat_labels`). ``dtypes``: what narrowed columns
    (strings read as categories) are widened back to, block by block."""
    frame = _sorted(raw, c)
    end = frame[c.timestamp].max()
    wide = {
        col: dtype
        for col, dtype in (dtypes or {}).items()
        if col in frame.columns and frame[col].dtype != dtype
    }
    for begin, stop in entity_blocks(frame, c, rows):
        block = frame.iloc[begin:stop]
        if wide:
            block = block.assign(**{col: block[col].astype(dtype) for col, dtype in wide.items()})
        yield (
            compute_feature_tables(block, c),
            label_frame(block, c, sample_every_hours, data_end=end),
        )


def concat_labels(parts: list[pd.DataFrame], c: Contract) -> pd.DataFrame:
    """The blocks' label frames as :func:`label_frame` of the whole data orders them."""
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values([EVENT_TS, *c.keys], kind="stable").reset_index(drop=True)
