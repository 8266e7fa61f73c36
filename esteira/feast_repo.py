"""Feast operations the pipeline's components call: publish, apply, train-set, materialize.

Pure, typed logic: the KFP wrappers live elsewhere and only pass settings through.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from esteira.config import Settings
from esteira.errors import ConfigError, DataError
from esteira.feast_store import (
    apply_to,
    feature_store,
    read_sentinel,
    source_uri,
    write_sentinel,
)
from esteira.storage import open_storage

EVENT_TS = "event_timestamp"
ROW_ID = "__esteira_row"


# ---- publish -----------------------------------------------------------------------------
class _TableWriter:
    """One source table written block by block (a row group each) to a temporary file beside
    its target; :meth:`commit` moves it into place (local) or PUTs it whole (S3), so readers
    see the old file or the new one, never a part."""

    def __init__(self, table: str, uri: str, settings: Settings) -> None:
        self.table, self.uri, self.settings = table, uri, settings
        local = None if uri.startswith("s3://") else Path(uri)
        where = local.parent if local else None
        if where:
            where.mkdir(parents=True, exist_ok=True)
        name = local.name if local else f"{table}.parquet"
        fd, tmp = tempfile.mkstemp(dir=where, prefix=f".{name}.", suffix=".tmp")
        os.close(fd)
        self.tmp = Path(tmp)
        self.writer: Any = None
        self.schema: Any = None

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if EVENT_TS not in frame.columns:
            raise DataError(
                self.table, f"has no {EVENT_TS!r} column", "compute it with esteira.features"
            )
        if self.writer is None:
            arrow = pa.Table.from_pandas(frame, preserve_index=False)
            self.schema = arrow.schema
            self.writer = pq.ParquetWriter(self.tmp, self.schema)
        else:
            arrow = pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False)
        self.writer.write_table(arrow)

    def commit(self) -> None:
        self.writer.close()
        if self.uri.startswith("s3://"):
            _put_s3(self.tmp.read_bytes(), self.uri, self.settings)
            self.tmp.unlink(missing_ok=True)
        else:
            os.chmod(
                self.tmp, 0o644
            )  # mkstemp makes it private; the feature server may run as another user
            os.replace(self.tmp, self.uri)

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.tmp.unlink(missing_ok=True)


def _put_s3(data: bytes, uri: str, settings: Settings) -> None:
    """One PUT of the whole file through esteira's storage: readers see old or new, never part."""
    storage = open_storage(settings.storage)
    key = f"features/{uri.rsplit('/', 1)[-1]}"
    if storage.uri(key) != uri:
        raise ConfigError("storage", f"{storage.uri(key)} is not the source location {uri}")
    storage.put_bytes(key, data)


def publish_source_blocks(
    blocks: Iterable[dict[str, pd.DataFrame]], settings: Settings
) -> dict[str, str]:
    """Write each table, given block by block (the blocks of one table concatenated are the
    table), as Parquet where its FileSource reads it; returns table -> uri. Only one block
    of each table is in memory at a time; nothing is published unless every block was."""
    writers: dict[str, _TableWriter] = {}
    try:
        for tables in blocks:
            for table, frame in tables.items():
                if table not in writers:
                    writers[table] = _TableWriter(table, source_uri(settings, table), settings)
                writers[table].write(frame)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    for writer in writers.values():
        writer.commit()
    return {table: writer.uri for table, writer in writers.items()}


def publish_sources(tables: dict[str, pd.DataFrame], settings: Settings) -> dict[str, str]:
    """Write each table as Parquet where its FileSource reads it; returns table -> uri."""
    return publish_source_blocks([tables], settings)


def compute_and_publish(
    dataset_path: str, contract: Any, settings: Settings
) -> tuple[dict[str, str], pd.DataFrame]:
    """The compute-features step: the raw dataset (the columns the contract uses, strings as
    categories) -> every source table published block by block, and the labelled entity rows.
    The same tables and rows as ``compute_feature_tables`` and ``label_frame`` of the whole
    frame, at a fraction of the memory."""
    from esteira.features import concat_labels, feature_blocks, used_columns
    from esteira.parquet import read_parquet_narrow

    raw, dtypes = read_parquet_narrow(dataset_path, used_columns(contract))
    labels: list[pd.DataFrame] = []

    def tables() -> Iterator[dict[str, pd.DataFrame]]:
        for block_tables, block_labels in feature_blocks(
            raw, contract, settings.features.sample_every_hours, dtypes=dtypes
        ):
            labels.append(block_labels)
            yield block_tables

    published = publish_source_blocks(tables(), settings)
    return published, concat_labels(labels, contract)


# ---- apply -------------------------------------------------------------------------------
def apply_definitions(settings: Settings) -> dict[str, Any]:
    """Register the repository's objects with the SDK.

    Only objects that differ from the registry are applied, so a second run
    writes nothing (Feast itself would re-stamp every object's update time).
    """
    return apply_to(feature_store(settings), settings)


# ---- training set ------------------------------------------------------------------------
@dataclass
class TrainingSet:
    """Entity rows joined point-in-time with every feature of the feature service."""

    frame: pd.DataFrame
    feature_names: list[str]
    requested_rows: int
    dropped_by_ttl: dict[str, int] = field(default_factory=dict)
    dropped_share: float = 0.0
    feature_service: str = ""
    seconds: float = 0.0

    @property
    def dropped_rows(self) -> int:
        return self.requested_rows - len(self.frame)


def service_views(store: Any, service_name: str) -> list[tuple[str, list[str], bool]]:
    """(view name, bare feature names, is on-demand) in the feature service's order."""
    service = store.get_feature_service(service_name)
    odfv_names = {v.name for v in store.list_on_demand_feature_views()}
    return [
        (p.name_to_use(), [f.name for f in p.features], p.name in odfv_names)
        for p in service.feature_view_projections
    ]


def feature_names_of(store: Any, service_name: str) -> list[str]:
    """Every feature of the service, bare names, in the service's order; unique or an error."""
    names = [name for _, feats, _ in service_views(store, service_name) for name in feats]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"feature service {service_name}",
            f"features {duplicates} appear in more than one view",
            "give every feature a unique name",
        )
    return names


def _check_entity_frame(entity_df: pd.DataFrame, keys: list[str]) -> None:
    missing = [c for c in (*keys, EVENT_TS) if c not in entity_df.columns]
    if missing:
        raise DataError("entity_df", f"lacks columns {missing}", "build it with label_frame")
    if entity_df.empty:
        raise DataError("entity_df", "has no rows", "check the labelled data")
    dup = int(entity_df.duplicated([*keys, EVENT_TS]).sum())
    if dup:
        raise DataError(
            "entity_df",
            f"{dup} rows repeat an ({', '.join(keys)}, {EVENT_TS}) pair; Feast would merge them",
            "deduplicate the entity rows",
        )


def _missing_by_view(
    store: Any,
    frame: pd.DataFrame,
    result: pd.DataFrame,
    keys: list[str],
    views: list[tuple[str, list[str], bool]],
) -> dict[str, set[int]]:
    """Row ids each feature view had no value for: dropped by Feast, or null-filled."""
    lost = frame.loc[~frame[ROW_ID].isin(result[ROW_ID]), [*keys, EVENT_TS, ROW_ID]]
    missing: dict[str, set[int]] = {}
    for name, features, on_demand in views:
        if on_demand:
            continue
        ids = set(result.loc[result[features].isna().all(axis=1), ROW_ID].tolist())
        if len(lost):
            # which view is responsible for the rows Feast dropped: ask each one alone
            alone = store.get_historical_features(lost, features=[f"{name}:{features[0]}"]).to_df()
            ids |= set(lost[ROW_ID]) - set(alone[ROW_ID])
        missing[name] = ids
    return missing


def build_training_set(entity_df: pd.DataFrame, settings: Settings) -> TrainingSet:
    """Point-in-time join of ``entity_df`` with the feature service; rows without values are counted.

    A row that any feature view has no value for inside its TTL is removed and
    counted under that view. More than ``features.max_dropped_share`` removed
    rows is a ``DataError`` naming the views responsible.
    """
    started = time.perf_counter()
    store = feature_store(settings, offline=True)
    name = settings.features.feature_service
    keys = [e.join_key for e in store.list_entities()]
    _check_entity_frame(entity_df, keys)
    views = service_views(store, name)
    feature_names = feature_names_of(store, name)

    frame = entity_df.reset_index(drop=True).copy()
    frame[ROW_ID] = np.arange(len(frame))
    result = store.get_historical_features(frame, features=store.get_feature_service(name)).to_df()
    result.reset_index(drop=True, inplace=True)  # labels = positions, for the take below
    missing = _missing_by_view(store, frame, result, keys, views)
    dropped = set().union(*missing.values()) | (set(frame[ROW_ID]) - set(result[ROW_ID]))

    # the kept rows by (event time, entity row), these columns: one copy of the result, not four
    stamps = result.loc[~result[ROW_ID].isin(dropped), [EVENT_TS, ROW_ID]]
    order = stamps.sort_values([EVENT_TS, ROW_ID], kind="stable").index
    columns = [c for c in entity_df.columns if c not in feature_names] + feature_names
    kept = result.loc[order, columns]
    del result, stamps
    kept.reset_index(drop=True, inplace=True)
    share = len(dropped) / len(frame)
    counts = {view: len(ids) for view, ids in missing.items() if ids}
    if share > settings.features.max_dropped_share:
        blame = ", ".join(f"{v}: {n}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        raise DataError(
            "features.max_dropped_share",
            f"{share:.1%} of {len(frame)} entity rows ({len(dropped)}) have no feature value "
            f"inside a view's TTL ({blame}), above the allowed "
            f"{settings.features.max_dropped_share:.1%}",
            "publish fresher feature sources, lengthen the views' TTLs, "
            "or raise features.max_dropped_share",
        )
    return TrainingSet(
        frame=kept,
        feature_names=feature_names,
        requested_rows=len(frame),
        dropped_by_ttl=counts,
        dropped_share=share,
        feature_service=name,
        seconds=time.perf_counter() - started,
    )


# ---- materialize -------------------------------------------------------------------------
def sources_end(settings: Settings) -> datetime:
    """The newest event timestamp over every published source."""
    from esteira.feast_store import read_source, s3_endpoint_override

    store = feature_store(settings, offline=True)
    newest: list[pd.Timestamp] = []
    for view in store.list_feature_views():
        source = view.batch_source
        stamps = read_source(
            source,
            store.config.repo_path,
            [source.timestamp_field],
            s3_endpoint_override(settings),
        )
        newest.append(pd.to_datetime(stamps.iloc[:, 0], utc=True).max())
    if not newest:
        raise ConfigError(
            "features",
            "no feature views are registered",
            "run the training pipeline (`make run`), which publishes and applies them",
        )
    return max(newest).to_pydatetime()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def materialize(
    settings: Settings, end: datetime | None = None, *, full: bool = False
) -> dict[str, Any]:
    """Load the latest values up to ``end`` into the online store.

    ``end`` defaults to the newest source timestamp + 1 s (the demo data is
    historical; wall-clock now would be meaningless). Feast's first incremental
    run would start at ``now - ttl``, after historical data, and load nothing;
    so a view never materialized (or last materialized more than a TTL before
    ``end``) loads the window ``[end - ttl, end]``, which holds every value the
    online store can serve. Later runs are ``materialize_incremental``.
    ``full=True`` reloads the window for every view: for a new or emptied
    online store (e.g. switching to Redis), since the registry, which records
    what was materialized, is shared by all online stores. An online store
    without the sentinel (:func:`esteira.feast_store.read_sentinel`) lost its
    data or never had it, so it is reloaded in full as well; the sentinel is
    written last, once every view is loaded.
    """
    started = time.perf_counter()
    store = feature_store(settings, offline=True)
    end = _aware(end or (sources_end(settings) + timedelta(seconds=1)))
    emptied = read_sentinel(store) is None
    full = full or emptied
    window: list[str] = []
    incremental: list[str] = []
    current: list[str] = []
    for view in store.list_feature_views():
        ttl = view.ttl or timedelta(weeks=52)
        last = view.most_recent_end_time
        if full or last is None or _aware(last) < end - ttl:
            store.materialize(start_date=end - ttl, end_date=end, feature_views=[view.name])
            window.append(view.name)
        elif _aware(last) < end:
            incremental.append(view.name)
        else:
            current.append(view.name)
    if incremental:
        store.materialize_incremental(end_date=end, feature_views=incremental)
    write_sentinel(store, {"end": end.isoformat(), "time": datetime.now(UTC).isoformat()})
    return {
        "end": end.isoformat(),
        "full": full,
        "sentinel_was_absent": emptied,
        "window": sorted(window),
        "incremental": sorted(incremental),
        "up_to_date": sorted(current),
        "online_store": settings.features.online_store,
        "seconds": round(time.perf_counter() - started, 3),
    }
