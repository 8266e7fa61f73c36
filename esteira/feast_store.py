"""The Feast feature store, built from esteira's settings.

One place decides how Feast is configured:

* the registry and the SQLite online store are the paths in the repository's
  own ``feature_store.yaml``, so ``feast -c feature_repo/<use case> ...`` sees what the
  SDK wrote;
* ``features.online_store: redis`` swaps the online store for Redis at
  ``features.redis_connection``;
* ``features.offline_store: s3`` makes the definitions' FileSources read
  ``s3://<bucket>/<prefix>/features/<table>.parquet`` on the configured
  endpoint (Feast's ``s3_endpoint_override``).

Historical retrieval uses :class:`AsofFileOfflineStore`: Feast's own file
offline store with the point-in-time join done by ``pandas.merge_asof``.
Feast 0.67's Dask join first joins every entity row with every source row of
the same entity and filters afterwards, which is quadratic in history
(100 machines x 30 days of hourly rows: 55 s; a year would need ~10^9 rows).
The semantics are Feast's and a test checks them against the stock store:
the latest row at or before the entity timestamp and within the view's TTL;
an entity row whose entity has rows, but none inside the TTL, is dropped;
an entity that the source does not know gets nulls.

The online store's sentinel: every materialization ends by writing one key into the
online store itself (a Redis key, or a row of its own table in the SQLite file). A
store that lost its data (Redis restarted without persistence, a new SQLite file)
lost the sentinel too, which is how serving tells "empty" from "unknown machine" and
how :func:`esteira.feast_repo.materialize` knows to reload the whole window.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from feast import FeatureStore, FeatureView, FileSource
from feast.infra.offline_stores.dask import (
    DaskOfflineStore,
    DaskOfflineStoreConfig,
    DaskRetrievalJob,
)
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.utils import (
    _get_requested_feature_views_to_features_dict,
    _get_requested_on_demand_feature_views,
)

from esteira.config import Settings, resolve_path
from esteira.errors import ConfigError
from esteira.parquet import read_parquet, read_parquet_between, read_parquet_rows
from esteira.pyfile import import_file

FEATURE_STORE_YAML = "feature_store.yaml"
DEFINITIONS_FILE = "definitions.py"
LOCAL_SOURCES = "data/sources"
ASOF_OFFLINE_STORE = "esteira.feast_store.AsofFileOfflineStore"

_UTC_NS = "datetime64[ns, UTC]"
_TS = "__feast_ts"
_ORDER = "__feast_order"
_POS = "__esteira_source_row"


# ---- settings -> locations ---------------------------------------------------------------
def repo_dir(settings: Settings) -> Path:
    """The feature repository as an absolute path."""
    repo = resolve_path(settings.features.repo_path)
    if not (repo / FEATURE_STORE_YAML).is_file():
        raise ConfigError(
            "features.repo_path",
            f"{repo} has no {FEATURE_STORE_YAML}",
            "point it at a use case's Feast repository (feature_repo/<use case>/)",
        )
    return repo


def sources_root(settings: Settings) -> str:
    """Where the FileSources read: ``data/sources`` (relative to the repo) or an s3:// prefix."""
    if settings.features.offline_store != "s3":
        return LOCAL_SOURCES
    s = settings.storage
    if not s.endpoint:
        raise ConfigError(
            "storage.endpoint",
            "features.offline_store 's3' needs an S3/MinIO endpoint",
            "set storage.endpoint (host:port) or features.offline_store: local",
        )
    prefix = "/".join(p for p in s.prefix.strip("/").split("/") if p)
    return f"s3://{s.bucket}/{prefix + '/' if prefix else ''}features"


def s3_endpoint_override(settings: Settings) -> str | None:
    """``http(s)://host:port`` for s3:// sources, or None for local sources."""
    if settings.features.offline_store != "s3":
        return None
    scheme = "https" if settings.storage.secure else "http"
    return f"{scheme}://{settings.storage.endpoint}"


def source_uri(settings: Settings, table: str) -> str:
    """The absolute location of one table's Parquet file, as the FileSource resolves it."""
    root = sources_root(settings)
    if root.startswith("s3://"):
        return f"{root}/{table}.parquet"
    return str(repo_dir(settings) / root / f"{table}.parquet")


def definitions_hash(repo_path: str | Path) -> str:
    """sha256 over the repository's Python definitions and its dataset contract."""
    repo = Path(repo_path)
    files = sorted(p for p in repo.rglob("*.py") if "data" not in p.relative_to(repo).parts)
    files.append(repo / "dataset.yaml")
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(repo).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


# ---- RepoConfig and the store ------------------------------------------------------------
def _base_config(repo: Path) -> dict[str, Any]:
    text = os.path.expandvars((repo / FEATURE_STORE_YAML).read_text())
    config = yaml.safe_load(text) or {}
    if not isinstance(config, dict) or "project" not in config:
        raise ConfigError(
            f"{repo / FEATURE_STORE_YAML}", "is not a Feast config with a project", "fix the YAML"
        )
    return config


def _redis_connection(connection: str) -> str:
    """Feast's Redis connection string, with timeouts so an outage fails fast."""
    extra = ["socket_connect_timeout=1", "socket_timeout=1"]
    present = {part.split("=", 1)[0] for part in connection.split(",") if "=" in part}
    return ",".join([connection, *(e for e in extra if e.split("=")[0] not in present)])


def spark_offline_store(settings: Settings) -> dict[str, Any]:
    """Feast's Spark offline store with esteira's as-of join (esteira/spark_offline_store.py),
    with esteira's Spark configuration (one session for the tables and the training set)."""
    from esteira.spark_features import spark_conf

    conf = spark_conf(settings.features.spark)
    endpoint = s3_endpoint_override(settings)
    if endpoint:  # s3a:// sources on MinIO; credentials from the environment (the Secret)
        from esteira.spark_submit import s3a_conf

        conf |= {f"spark.hadoop.{key}": value for key, value in s3a_conf(endpoint).items()}
    return {"type": "esteira.spark_offline_store.AsofSparkOfflineStore", "spark_conf": conf}


def _spark_offline(settings: Settings, offline: bool) -> bool:
    """Feast reads the offline store with Spark: the Spark engine, in this process.

    With ``features.spark.run_in: spark_application`` the training set is built inside the
    SparkApplication (whose settings say ``task``); what stays in the KFP task
    (materialization's pulls) reads the same SparkSource files through the as-of store,
    so the component image needs no Spark.
    """
    spark = settings.features.spark
    return offline and settings.features.engine == "spark" and spark.run_in == "task"


def repo_config(settings: Settings, *, offline: bool = False) -> RepoConfig:
    """The Feast config for these settings (the repo's YAML plus the configured variants).

    ``offline``: the store will read the offline store (training sets, materialization).
    With ``features.engine: spark`` that is Feast's Spark offline store, which imports
    pyspark; without ``offline`` (serving's online lookups) it stays the as-of store, so
    the serving image needs no Spark even when the registry holds SparkSources.
    """
    repo = repo_dir(settings)
    config = _base_config(repo)
    if settings.features.online_store == "redis":
        config["online_store"] = {
            "type": "redis",
            "connection_string": _redis_connection(settings.features.redis_connection),
        }
    if settings.features.registry_path:
        config["registry"] = str(resolve_path(settings.features.registry_path))
    config["offline_store"] = {"type": ASOF_OFFLINE_STORE}
    if settings.features.engine == "spark" and s3_endpoint_override(settings):
        config["offline_store"]["s3_endpoint_override"] = s3_endpoint_override(settings)
    if _spark_offline(settings, offline):
        config["offline_store"] = spark_offline_store(settings)
    config.setdefault("entity_key_serialization_version", 3)
    return RepoConfig(repo_path=repo, **config)


_STORES: dict[str, FeatureStore] = {}
_STORES_LOCK = threading.Lock()


def _store_key(settings: Settings, offline: bool = False) -> str:
    return "|".join(
        [
            str(_spark_offline(settings, offline)),
            str(resolve_path(settings.features.repo_path)),
            settings.features.model_dump_json(),
            settings.storage.model_dump_json(),
        ]
    )


def feature_store(
    settings: Settings, *, fresh: bool = False, offline: bool = False
) -> FeatureStore:
    """A FeatureStore for these settings, cached so repeated calls are free.

    ``offline``: the caller reads the offline store (see :func:`repo_config`).
    """
    key = _store_key(settings, offline)
    with _STORES_LOCK:
        if fresh or key not in _STORES:
            config = repo_config(settings, offline=offline)
            registry = _registry_file(config)
            unapplied = settings.features.registry_path and not registry.exists()
            if unapplied:
                registry.parent.mkdir(parents=True, exist_ok=True)
            # repo_path too: Feast resolves the registry against it, not against the config
            store = FeatureStore(repo_path=str(config.repo_path), config=config)
            if settings.features.online_store == "redis":
                _fail_fast_redis(store, settings.features.redis_connection)
            if unapplied:  # a pod's own registry: built from the definitions in its image
                apply_to(store, settings)
            _STORES[key] = store
        return _STORES[key]


def _registry_file(config: RepoConfig) -> Path:
    path = Path(config.registry.path)
    return path if path.is_absolute() else Path(config.repo_path) / path


def _fail_fast_redis(store: FeatureStore, connection: str) -> None:
    """Give Feast's Redis store a client that retries once, without backoff.

    redis-py's default (3 retries, exponential backoff) turns an outage into
    ~11 s per call; a server answering requests wants to fail within ~1 s and
    reconnect on the next call (the pool reconnects by itself).
    """
    from feast.infra.online_stores.redis import RedisOnlineStore
    from redis import Redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    online = store._get_provider().online_store
    if not isinstance(online, RedisOnlineStore) or "," in connection.split(":", 1)[-1]:
        return  # cluster/sentinel or options given: keep Feast's own client
    host, _, port = connection.partition(":")
    online._client = Redis(
        host=host,
        port=int(port or 6379),
        socket_connect_timeout=1,
        socket_timeout=1,
        retry=Retry(NoBackoff(), 1),
    )


def clear_cache() -> None:
    """Forget every cached FeatureStore (tests; after the repo moved)."""
    with _STORES_LOCK:
        _STORES.clear()


# ---- the sentinel ------------------------------------------------------------------------
SENTINEL_TABLE = "esteira_materialized"


def _sentinel_key(store: FeatureStore) -> str:
    return f"esteira:{store.project}:materialized"


def write_sentinel(store: FeatureStore, info: dict[str, Any]) -> None:
    """Record in the online store itself that a materialization completed."""
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    online = store._get_provider().online_store
    value = json.dumps(info, sort_keys=True)
    if isinstance(online, RedisOnlineStore):
        online._get_client(store.config.online_store).set(_sentinel_key(store), value)
    elif isinstance(online, SqliteOnlineStore):
        with closing(sqlite3.connect(SqliteOnlineStore._get_db_path(store.config))) as conn, conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {SENTINEL_TABLE} (project TEXT PRIMARY KEY, info TEXT)"
            )
            conn.execute(
                f"INSERT OR REPLACE INTO {SENTINEL_TABLE} VALUES (?, ?)", (store.project, value)
            )


def read_sentinel(store: FeatureStore) -> dict[str, Any] | None:
    """What the last materialization recorded; None when the online store has no sentinel.

    Raises the store's connection errors when it cannot be reached. An online store of
    another kind has no sentinel to check and counts as materialized (``{}``).
    """
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    online = store._get_provider().online_store
    if isinstance(online, RedisOnlineStore):
        value = online._get_client(store.config.online_store).get(_sentinel_key(store))
        return None if value is None else json.loads(value)
    if isinstance(online, SqliteOnlineStore):
        path = Path(SqliteOnlineStore._get_db_path(store.config))
        if not path.is_file():
            return None
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            try:
                row = conn.execute(
                    f"SELECT info FROM {SENTINEL_TABLE} WHERE project = ?", (store.project,)
                ).fetchone()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return None
                raise
        return None if row is None else json.loads(row[0])
    return {}


# ---- definitions -------------------------------------------------------------------------
_MODULES: dict[str, ModuleType] = {}


def _definitions_module(repo: Path) -> ModuleType:
    path = repo / DEFINITIONS_FILE
    if not path.is_file():
        raise ConfigError(
            "features.repo_path", f"{path} does not exist", "add the Feast definitions file"
        )
    key = f"{path}:{definitions_hash(repo)}"
    if key not in _MODULES:
        name = f"_esteira_feast_definitions_{hashlib.sha1(key.encode()).hexdigest()[:12]}"
        _MODULES[key] = import_file(path, name)
    return _MODULES[key]


def load_definitions(settings: Settings) -> dict[str, Any]:
    """The repository's Feast objects for these settings (sources on local disk or S3).

    Returns ``definitions.build``'s dict: entity, feature_views, request_source,
    on_demand_feature_views, feature_service.
    """
    module = _definitions_module(repo_dir(settings))
    extra = {"engine": settings.features.engine} if settings.features.engine != "pandas" else {}
    return module.build(
        sources_root=sources_root(settings),
        s3_endpoint_override=s3_endpoint_override(settings),
        service_name=settings.features.feature_service,
        **extra,
    )


# ---- the as-of offline store -------------------------------------------------------------
class AsofFileOfflineStoreConfig(DaskOfflineStoreConfig):
    """Config of :class:`AsofFileOfflineStore` (the Dask store's asserts accept it).

    ``s3_endpoint_override``: where ``s3a://`` SparkSources live (a FileSource carries its own).
    """

    type: Literal["esteira.feast_store.AsofFileOfflineStore"] = ASOF_OFFLINE_STORE  # type: ignore[assignment]
    s3_endpoint_override: str | None = None


class _Eager:
    """What DaskRetrievalJob expects from its evaluation function: ``.compute()``."""

    def __init__(self, fn: Callable[[], pd.DataFrame]) -> None:
        self._fn = fn

    def compute(self) -> pd.DataFrame:
        return self._fn()


class _LeanRetrievalJob(DaskRetrievalJob):
    """Feast's retrieval job, with its on-demand views given only the columns they read.

    Feast's ``RetrievalJob.to_arrow`` hands the whole joined table to each on-demand view,
    and a python-mode view turns it into Python lists (``to_pydict``): every feature of
    every row as a Python object, many times the table's size. Here Feast's own
    ``to_arrow`` runs on the columns the views read (their sources' features, request
    values, keys and timestamp), and the columns it appends are appended to the whole
    table, in the same order; ``to_df`` converts without a second copy.
    """

    def _odfv_inputs(self, table: Any) -> list[str]:
        names = set(self.metadata.keys if self.metadata else []) | {
            DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
        }
        for odfv in self.on_demand_feature_views:
            for projection in odfv.source_feature_view_projections.values():
                for feature in projection.features:
                    names |= {feature.name, f"{projection.name}__{feature.name}"}
                    names.add(f"{projection.name_to_use()}__{feature.name}")
            for request in odfv.source_request_sources.values():
                names |= {field.name for field in request.schema}
        return [c for c in table.column_names if c in names]

    def to_arrow(self, validation_reference: Any = None, timeout: int | None = None) -> Any:
        if not self.on_demand_feature_views or validation_reference is not None:
            return super().to_arrow(validation_reference=validation_reference, timeout=timeout)
        table = self._to_arrow_internal(timeout=timeout)
        slim = table.select(self._odfv_inputs(table))
        inner = _TableJob(
            slim,
            full_feature_names=self.full_feature_names,
            repo_path=self.repo_path,
            on_demand_feature_views=self.on_demand_feature_views,
            metadata=self.metadata,
        )
        transformed = inner.to_arrow(timeout=timeout)
        for name in transformed.column_names[len(slim.column_names) :]:
            table = table.append_column(name, transformed[name])
        return table

    def to_df(self, validation_reference: Any = None, timeout: int | None = None) -> pd.DataFrame:
        table = self.to_arrow(validation_reference=validation_reference, timeout=timeout)
        frame = table.to_pandas()  # a RangeIndex already: Feast's reset_index would copy it all
        return frame


class _TableJob(DaskRetrievalJob):
    """A retrieval job whose result is a table in hand (for Feast's on-demand step)."""

    def __init__(self, table: Any, **kwargs: Any) -> None:
        super().__init__(evaluation_function=lambda: None, **kwargs)
        self._table = table

    def _to_arrow_internal(self, timeout: int | None = None) -> Any:
        return self._table


def _source_location(
    source: FileSource, repo_path: Path | str | None, endpoint: str | None = None
) -> tuple[str, dict[str, Any] | None]:
    """A FileSource's Parquet file (local, relative to the repo, or s3://) and its S3 options.

    A SparkSource's file (``features.engine: spark``) is read the same way: its path is
    absolute or ``s3a://`` (on ``endpoint``; keys from the environment).
    """
    if not isinstance(source, FileSource):
        path = getattr(source, "path", None)
        if not path:
            raise ConfigError(f"source {source.name}", "has no file path", "give it a path")
        if path.startswith("s3a://"):
            options = {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else None
            return "s3://" + path.removeprefix("s3a://"), options
        return path, None
    uri = FileSource.get_uri_for_file_path(repo_path=repo_path, uri=source.file_options.uri)
    options: dict[str, Any] | None = None
    if uri.startswith("s3://"):
        options = {}
        creds = source.resolve_credentials()
        if creds:
            options |= {
                "key": creds.get("AWS_ACCESS_KEY_ID"),
                "secret": creds.get("AWS_SECRET_ACCESS_KEY"),
            }
        if source.file_options.s3_endpoint_override:
            options["client_kwargs"] = {"endpoint_url": source.file_options.s3_endpoint_override}
    return uri, options


def read_source(
    source: FileSource,
    repo_path: Path | str | None,
    columns: list[str],
    endpoint: str | None = None,
) -> pd.DataFrame:
    """A FileSource's Parquet file (local, relative to the repo, or s3://), some columns;
    ``endpoint``: that of an ``s3a://`` SparkSource."""
    uri, options = _source_location(source, repo_path, endpoint)
    return read_parquet(uri, columns=columns, storage_options=options)


def read_source_rows(
    source: FileSource, repo_path: Path | str | None, columns: list[str], rows: Any
) -> pd.DataFrame:
    """``read_source(...).iloc[rows]`` (index reset), one column at a time."""
    uri, options = _source_location(source, repo_path)
    return read_parquet_rows(uri, columns, rows, storage_options=options)


def _window(
    source: FileSource,
    repo_path: Path | str | None,
    columns: list[str],
    timestamp_field: str,
    created: str | None,
    start: Any,
    end: Any,
    endpoint: str | None = None,
) -> pd.DataFrame:
    """The source's rows with ``start <= timestamp <= end`` (Dask's store: both ends
    included), timestamps in UTC, ordered by timestamp (then created) as Dask's sorts them."""
    uri, options = _source_location(source, repo_path, endpoint)
    stamps = [timestamp_field, *([created] if created else [])]
    rows = read_parquet_between(
        uri, list(dict.fromkeys([*columns, *stamps])), timestamp_field, start, end, options
    )
    for column in stamps:
        rows[column] = _utc(rows[column])
    rows.sort_values(stamps, kind="stable", inplace=True, ignore_index=True)
    return rows


def _utc(series: pd.Series) -> pd.Series:
    converted = pd.to_datetime(series, utc=True)
    return converted.astype(_UTC_NS)


def _join_view(
    left: pd.DataFrame,
    view: FeatureView,
    features: list[str],
    entity_ts: str,
    repo_path: Path | str | None,
    full_feature_names: bool,
) -> pd.DataFrame:
    """Point-in-time join of one view onto ``left`` (sorted by ``entity_ts``).

    The source's keys and timestamps are read whole; its feature columns only for the rows
    some entity row matches (a source of hourly rolling windows is many times the size of
    the training set). The join is then done on those rows as on the whole source: an
    entity row's match, the latest source row at or before it within the TTL, is among them,
    and no row between it and the entity row is, so every match is the same row.
    """
    source = view.batch_source
    assert isinstance(source, FileSource)
    reverse = {v: k for k, v in (source.field_mapping or {}).items()}
    join_keys = [view.projection.join_key_map.get(c.name, c.name) for c in view.entity_columns]
    source_keys = [c.name for c in view.entity_columns]
    ts_field = source.timestamp_field
    created = source.created_timestamp_column or None
    stamps = [*source_keys, ts_field, *([created] if created else [])]
    wanted = [*stamps, *features]
    ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None

    def prepare(right: pd.DataFrame) -> pd.DataFrame:
        right = right.rename(columns=source.field_mapping or {})
        right = right.rename(columns=dict(zip(source_keys, join_keys, strict=True)))
        names = {
            f: f"{view.projection.name_to_use()}__{f}" if full_feature_names else f
            for f in features
        }
        right = right.rename(columns={ts_field: _TS, **names})
        right[_TS] = _utc(right[_TS])
        order = [_TS, created] if created else [_TS]
        right = right.sort_values(order, kind="stable")
        right = right.drop(columns=[created] if created else [])
        for key in join_keys:
            if right[key].dtype != left[key].dtype:
                right[key] = right[key].astype(left[key].dtype)
        return right

    def asof(left_part: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        return pd.merge_asof(
            left_part,
            right,
            left_on=entity_ts,
            right_on=_TS,
            by=join_keys,
            direction="backward",
            allow_exact_matches=True,
            tolerance=ttl,
        )

    # which source rows any entity row matches, from the keys and timestamps alone
    index = read_source(source, repo_path, [reverse.get(c, c) for c in stamps])
    index[_POS] = np.arange(len(index))
    index = prepare(index)
    matched = asof(left[[*join_keys, entity_ts]], index)[_POS]
    rows = np.unique(matched.dropna().to_numpy(dtype=np.int64))
    entities = pd.MultiIndex.from_frame(index[join_keys].drop_duplicates())
    del index, matched
    right = prepare(read_source_rows(source, repo_path, [reverse.get(c, c) for c in wanted], rows))

    joined = asof(left, right)
    del right
    # Feast's file store keeps unknown entities (nulls) but drops rows whose entity
    # has rows, none of them inside [ts - ttl, ts].
    known = pd.MultiIndex.from_frame(joined[join_keys]).isin(entities)
    keep = joined[_TS].notna().to_numpy() | ~known
    if not keep.all():
        joined = joined.loc[keep]
    # in place: no copy of the joined frame (its timestamp column is a block of its own)
    joined.drop(columns=[_TS], inplace=True)
    joined.reset_index(drop=True, inplace=True)
    return joined


def _file_backed(source: Any) -> bool:
    """A FileSource, or a SparkSource of a file (``features.engine: spark``, read in a task)."""
    return isinstance(source, FileSource) or bool(getattr(source, "path", None))


def _endpoint(config: RepoConfig) -> str | None:
    return getattr(config.offline_store, "s3_endpoint_override", None)


class AsofFileOfflineStore(DaskOfflineStore):
    """Feast's file offline store with a linear-time point-in-time join.

    ``get_historical_features`` with a pandas entity frame, and the materialization pulls
    (``pull_all_from_table_or_query``, ``pull_latest_from_table_or_query``: the rows in the
    window, read batch by batch, not the whole source at once as Dask's) change; the rest
    (writes, non-entity mode) is the Dask store.
    """

    @staticmethod
    def pull_all_from_table_or_query(
        config: RepoConfig,
        data_source: Any,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None = None,
        start_date: Any = None,
        end_date: Any = None,
    ) -> RetrievalJob:
        if not join_key_columns or not _file_backed(data_source):
            return DaskOfflineStore.pull_all_from_table_or_query(
                config,
                data_source,
                join_key_columns,
                feature_name_columns,
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
            )

        def evaluate() -> pd.DataFrame:
            return _window(
                data_source,
                config.repo_path,
                [*join_key_columns, *feature_name_columns],
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
                _endpoint(config),
            )

        return DaskRetrievalJob(
            evaluation_function=lambda: _Eager(evaluate),
            full_feature_names=False,
            repo_path=str(config.repo_path),
        )

    @staticmethod
    def pull_latest_from_table_or_query(
        config: RepoConfig,
        data_source: Any,
        join_key_columns: list[str],
        feature_name_columns: list[str],
        timestamp_field: str,
        created_timestamp_column: str | None,
        start_date: Any = None,
        end_date: Any = None,
    ) -> RetrievalJob:
        if not join_key_columns or not _file_backed(data_source):
            return DaskOfflineStore.pull_latest_from_table_or_query(
                config,
                data_source,
                join_key_columns,
                feature_name_columns,
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
            )

        def evaluate() -> pd.DataFrame:
            rows = _window(
                data_source,
                config.repo_path,
                [*join_key_columns, *feature_name_columns],
                timestamp_field,
                created_timestamp_column,
                start_date,
                end_date,
                _endpoint(config),
            )
            return rows.drop_duplicates(join_key_columns, keep="last", ignore_index=True)

        return DaskRetrievalJob(
            evaluation_function=lambda: _Eager(evaluate),
            full_feature_names=False,
            repo_path=str(config.repo_path),
        )

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        if not isinstance(entity_df, pd.DataFrame):
            return DaskOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names,
                **kwargs,
            )
        entity_ts = _entity_timestamp_column(entity_df)
        odfvs = _get_requested_on_demand_feature_views(feature_refs, project, registry)
        per_view, _ = _get_requested_feature_views_to_features_dict(
            feature_refs, feature_views, odfvs
        )

        def evaluate() -> pd.DataFrame:
            frame = entity_df.copy()
            frame[entity_ts] = _utc(frame[entity_ts])
            frame[_ORDER] = range(len(frame))
            frame = frame.sort_values([entity_ts, _ORDER], kind="stable").reset_index(drop=True)
            for view, features in per_view.items():
                frame = _join_view(
                    frame, view, features, entity_ts, config.repo_path, full_feature_names
                )
            frame.drop(columns=[_ORDER], inplace=True)  # in place: no copy of the whole result
            frame.reset_index(drop=True, inplace=True)
            return frame

        stamps = _utc(entity_df[entity_ts])
        return _LeanRetrievalJob(
            evaluation_function=lambda: _Eager(evaluate),
            full_feature_names=full_feature_names,
            repo_path=str(config.repo_path),
            on_demand_feature_views=OnDemandFeatureView.get_requested_odfvs(
                feature_refs, project, registry
            ),
            metadata=RetrievalMetadata(
                features=feature_refs,
                keys=[c for c in entity_df.columns if c != entity_ts],
                min_event_timestamp=stamps.min() if len(stamps) else None,
                max_event_timestamp=stamps.max() if len(stamps) else None,
            ),
        )


def _entity_timestamp_column(entity_df: pd.DataFrame) -> str:
    """``event_timestamp``, or the one datetime column, as Feast's file store chooses."""
    if DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL in entity_df.columns:
        return DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
    stamps = entity_df.select_dtypes(include=["datetime", "datetimetz"]).columns
    if len(stamps) == 1:
        return str(stamps[0])
    raise ValueError(
        f"Please provide an entity_df with a column named {DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL}"
        " representing the time of events."
    )


# ---- apply (only what changed) -------------------------------------------------------------------------------
def _registered(store: Any, obj: Any) -> Any:
    """The registry's version of ``obj``, or None when it is new."""
    from feast import Entity, FeatureService, FeatureView
    from feast.on_demand_feature_view import OnDemandFeatureView

    getters = {
        Entity: store.get_entity,
        FeatureView: store.get_feature_view,
        OnDemandFeatureView: store.get_on_demand_feature_view,
        FeatureService: store.get_feature_service,
    }
    getter = next(g for kind, g in getters.items() if isinstance(obj, kind))
    try:
        return getter(obj.name)
    except Exception:  # Feast raises a different *NotFound per kind
        return None


# Fields Feast fills in or re-stamps on apply: not part of what a definition says.
_VOLATILE = {"meta", "created_timestamp", "last_updated_timestamp", "entity_columns", "body"}


def _strip(message: Any) -> None:
    for fd, value in list(message.ListFields()):
        if fd.name in _VOLATILE:
            message.ClearField(fd.name)
        elif fd.type == fd.TYPE_MESSAGE:
            if fd.is_repeated:
                items = value.values() if fd.message_type.GetOptions().map_entry else value
                for item in items:
                    if hasattr(item, "ListFields"):
                        _strip(item)
            else:
                _strip(value)


def _fingerprint(obj: Any) -> bytes | None:
    """What a Feast object defines, without the timestamps and inferred fields."""
    if obj is None:
        return None
    spec = type(obj.to_proto().spec)()
    spec.CopyFrom(obj.to_proto().spec)
    _strip(spec)
    return spec.SerializeToString(deterministic=True)


def apply_to(store: Any, settings: Settings) -> dict[str, Any]:
    """Apply the repository's definitions into ``store``; only objects that differ from its
    registry (esteira.feast_repo.apply_definitions, and a pod's own registry on first use)."""
    objects = load_definitions(settings)
    views, odfvs = objects["feature_views"], objects["on_demand_feature_views"]
    entities = objects.get("entities") or [objects["entity"]]
    wanted = [*entities, *views, *odfvs, objects["feature_service"]]
    changed = [obj for obj in wanted if _fingerprint(_registered(store, obj)) != _fingerprint(obj)]
    if changed:
        store.apply(changed)
    return {
        "project": store.project,
        "feature_views": [v.name for v in views],
        "on_demand_feature_views": [v.name for v in odfvs],
        "feature_service": objects["feature_service"].name,
        "definitions_hash": definitions_hash(repo_dir(settings)),
        "applied": [obj.name for obj in changed],
    }
