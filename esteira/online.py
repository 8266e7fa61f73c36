"""The one online feature lookup, shared by serving (called on every request).

Built once per process: a warm FeatureStore, the feature service resolved to
its ordered feature list, the request fields its on-demand views need. Columns
come back in the feature service order, which is the order training used.

A call reads through Feast in one of two ways, with the same answer (a test holds
them equal on SQLite):

* ``direct`` (the default where it is faster, see :meth:`_DirectRead.build`):
  the rows Feast's own online store holds, read with Feast's table names and
  entity-key encoding, Feast's value conversion (scalars read straight from the
  proto) and the on-demand view's own transformation, with the view list resolved
  once. What it skips is the SDK's per-call work: resolving references against the
  registry, building protobuf responses and converting them back, and type-checking
  every call into the on-demand view.
  On SQLite every view's rows come in one statement, without the timestamps Feast
  converts row by row (:class:`_SqliteRead`); on Redis every view's HMGETs go out
  in one pipeline, one round trip, as Feast's own batched read sends them
  (:class:`_RedisRead`). Either is a small fraction of an SDK call (``make bench``:
  online). Other stores read view by view through Feast's ``online_read``.
* ``sdk``: ``FeatureStore.get_online_features``. Used for on-demand views the direct
  path does not cover (pandas mode, aggregations, written to the online store) and
  for other stores that batch all views in one round trip.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Any

import pandas as pd

from esteira.config import Settings
from esteira.errors import EsteiraError
from esteira.feast_store import feature_store, read_sentinel

DIRECT, SDK = "direct", "sdk"
KEY_CACHE_SIZE = 100_000  # entity keys kept by the direct read (a fleet, not a stream)
SQLITE_MAX_PARAMETERS = 32_766  # SQLite's default bound on a statement's parameters
SENTINEL_RECHECK_SECONDS = 1.0  # a present sentinel is trusted this long (readiness, requests)
REFILL = "run `esteira features materialize --full`"
Entities = list[Any] | dict[str, list[Any]]  # ids of a single-key entity, or {join key: values}


class UnknownEntityError(EsteiraError):
    """Some entities have no values in the online store."""


class MissingRequestValueError(EsteiraError):
    """A request-time value an on-demand feature needs was not sent."""


class OnlineStoreUnavailable(EsteiraError):
    """The online store (Redis, SQLite) cannot be reached."""


class OnlineStoreEmpty(OnlineStoreUnavailable):
    """The online store holds no materialization (new, or emptied by a restart)."""


def _unavailable_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [sqlite3.OperationalError, ConnectionError, TimeoutError]
    try:
        import redis.exceptions as redis_errors

        errors += [redis_errors.ConnectionError, redis_errors.TimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    return tuple(errors)


_UNAVAILABLE = _unavailable_errors()


class OnlineFeatures:
    """Online feature vectors for entities, in the feature service's order."""

    def __init__(self, settings: Settings, store: Any = None, *, path: str = DIRECT) -> None:
        self.settings = settings
        self.store = store or feature_store(settings)
        self.service_name = settings.features.feature_service
        self._where = self._describe(settings)
        try:
            service = self.store.get_feature_service(self.service_name)
        except Exception as exc:
            raise EsteiraError(
                "features.feature_service",
                f"{self.service_name!r} is not in the Feast registry ({type(exc).__name__})",
                "apply the definitions (esteira.feast_repo.apply_definitions) first",
            ) from None
        self.service = service
        odfvs = {v.name: v for v in self.store.list_on_demand_feature_views()}
        self.entity_keys, self.entity_types = _service_keys(self.store, service, odfvs)
        self._refs: list[str] = []
        self._stored: list[list[str]] = []  # per stored view, the features read from it
        self._requests: list[str] = []
        self._texts: set[str] = set()  # request fields that are text (String), not numbers
        for projection in service.feature_view_projections:
            names = [f.name for f in projection.features]
            self._refs += [f"{projection.name_to_use()}:{n}" for n in names]
            odfv = odfvs.get(projection.name)
            if odfv is None:
                self._stored.append(names)
                continue
            for source in odfv.source_request_sources.values():
                self._requests += [f.name for f in source.schema if f.name not in self._requests]
                self._texts |= {f.name for f in source.schema if _is_text(f.dtype)}
        self._names = [ref.split(":", 1)[1] for ref in self._refs]
        self._direct = _DirectRead.build(self.store, service, odfvs) if path == DIRECT else None
        self.path = DIRECT if self._direct is not None else SDK
        self._sentinel_seen = -float("inf")  # monotonic time the sentinel was last found

    @staticmethod
    def _describe(settings: Settings) -> str:
        if settings.features.online_store == "redis":
            return f"Redis at {settings.features.redis_connection}"
        return "the SQLite online store"

    def empty_reason(self, *, fresh: bool = False) -> str | None:
        """Why the online store cannot serve: its materialization sentinel is absent.

        None when the sentinel is there (trusted for ``SENTINEL_RECHECK_SECONDS``
        unless ``fresh``), and when the store cannot be asked (the lookup answers
        that case itself). An absent sentinel is asked again on every call, so the
        answer turns as soon as `esteira features materialize` wrote it.
        """
        now = time.monotonic()
        if not fresh and now - self._sentinel_seen < SENTINEL_RECHECK_SECONDS:
            return None
        try:
            present = read_sentinel(self.store) is not None
        except _UNAVAILABLE:
            self._sentinel_seen = now  # an outage is the lookup's to report, quickly
            return None
        if present:
            self._sentinel_seen = now
            return None
        self._sentinel_seen = -float("inf")
        return self._empty().message

    def _empty(self) -> OnlineStoreEmpty:
        return OnlineStoreEmpty(
            f"features.online_store ({self._where})",
            f"online store is empty: {REFILL} "
            "(it holds no materialized values; a restart without persistence empties it)",
        )

    @property
    def feature_names(self) -> list[str]:
        """Every feature, bare names, in the feature service order (as in training)."""
        return list(self._names)

    @property
    def request_fields(self) -> list[str]:
        """Request-time values each lookup needs (for the on-demand features)."""
        return list(self._requests)

    @property
    def text_fields(self) -> list[str]:
        """The request fields that are free text (the others are numbers)."""
        return [name for name in self._requests if name in self._texts]

    @property
    def entity_key(self) -> str:
        """The join key of a single-key entity (a composite key has :attr:`entity_keys`)."""
        return self.entity_keys[0]

    def key_columns(self, entities: Entities) -> dict[str, list[Any]]:
        """``entities`` as one list per join key: a list of ids is the single key's column;
        a mapping gives every join key's column (a composite key)."""
        if not isinstance(entities, dict):
            if len(self.entity_keys) != 1:
                raise EsteiraError(
                    "entities",
                    f"the entity has a composite key {self.entity_keys}",
                    "pass one list per join key, {key: [values]}",
                )
            entities = {self.entity_keys[0]: list(entities)}
        missing = [k for k in self.entity_keys if k not in entities]
        extra = sorted(set(entities) - set(self.entity_keys))
        if missing or extra:
            raise EsteiraError(
                "entities", f"join keys {missing} missing, {extra} unknown",
                f"send exactly {self.entity_keys}",
            )  # fmt: skip
        rows = {k: list(entities[k]) for k in self.entity_keys}
        if len({len(v) for v in rows.values()}) > 1:
            raise EsteiraError("entities", "join keys have different lengths", "one value each")
        return {
            k: [int(v) if self.entity_types[k] == "int" else str(v) for v in values]
            for k, values in rows.items()
        }

    def _entity_rows(
        self, keys: dict[str, list[Any]], request: dict[str, list[float]] | None
    ) -> dict[str, list[Any]]:
        rows: dict[str, list[Any]] = dict(keys)
        entity_ids = next(iter(keys.values()))
        request = request or {}
        for name in self._requests:
            values = request.get(name)
            if values is None:
                raise MissingRequestValueError(
                    name, "is required by the on-demand features", f"send {name} with each entity"
                )
            if len(values) != len(entity_ids):
                raise MissingRequestValueError(
                    name,
                    f"has {len(values)} values for {len(entity_ids)} entities",
                    "send one value per entity",
                )
            text = name in self._texts
            bad = [
                i
                for i, v in enumerate(values)
                if v is None
                or (isinstance(v, float) and math.isnan(v))
                or (text and not isinstance(v, str))
            ]
            if bad:
                raise MissingRequestValueError(
                    name,
                    f"is missing for entities at positions {bad}",
                    "send a string" if text else "send a number",
                )
            rows[name] = list(values) if text else [float(v) for v in values]
        return rows

    def lookup(
        self, entities: Entities, request: dict[str, list[float]] | None = None
    ) -> dict[str, list[Any]]:
        """Feature columns (feature service order), one value per entity, same order.

        ``entities``: a list of ids for a single-key entity, or ``{join key: values}``."""
        keys = self.key_columns(entities)
        if not next(iter(keys.values())):
            return {name: [] for name in self._names}
        rows = self._entity_rows(keys, request)
        try:
            if self._direct is not None:
                values = self._direct.read(rows, self.entity_keys)
            else:
                response = self.store.get_online_features(features=self._refs, entity_rows=rows)
                values = response.to_dict()
        except _UNAVAILABLE as exc:
            raise OnlineStoreUnavailable(
                "features.online_store",
                f"{self._where} cannot be reached ({type(exc).__name__}: {exc})",
                "start the online store or fix features.redis_connection; lookups recover by themselves",
            ) from None
        try:
            self._check_found(keys, values)
        except UnknownEntityError:
            empty = self.empty_reason(fresh=True)  # emptied, rather than an unknown machine?
            if empty:
                raise self._empty() from None
            raise
        return {name: values[name] for name in self._names}

    def lookup_frame(
        self, entities: Entities, request: dict[str, list[float]] | None = None
    ) -> pd.DataFrame:
        """:meth:`lookup` as a DataFrame indexed by the entity's join keys."""
        keys = self.key_columns(entities)
        columns = self.lookup(keys, request)
        if len(keys) == 1:
            index = pd.Index(*keys.values(), name=self.entity_key)
        else:
            index = pd.MultiIndex.from_arrays(list(keys.values()), names=list(keys))
        return pd.DataFrame(columns, index=index, columns=self._names)

    def _check_found(self, keys: dict[str, list[Any]], values: dict[str, list[Any]]) -> None:
        rows = list(zip(*keys.values(), strict=True))
        # an entity a view knows nothing of reads as None for every feature of that view; a
        # single None is a value that was missing at the source (a lag before the history)
        absent = {
            rows[i]
            for names in self._stored
            for i in range(len(rows))
            if all(values[name][i] is None for name in names)
        }
        missing = sorted(r[0] if len(r) == 1 else r for r in absent)
        if missing:
            raise UnknownEntityError(
                ", ".join(self.entity_keys),
                f"no online feature values for {missing}",
                "check the ids, or publish and materialize their features",
            )


class _DirectRead:
    """Feast's online read and on-demand transforms, resolved once (see the module doc)."""

    def __init__(self, store: Any, tables: list[tuple[Any, list[str]]], odfvs: list) -> None:
        self.provider = store._get_provider()
        self.config = store.config
        self.tables = tables  # (feature view, requested feature names), service order
        self.odfvs = odfvs  # (on-demand view, its inputs, requested feature names)
        self.value_types = {e.join_key: e.value_type for e in store.list_entities()}
        self._keys: dict[Any, Any] = {}  # entity (a tuple of key values) -> its EntityKey proto
        online_store = self.provider.online_store
        # every view at once (see _batched_read), else Feast's online_read view by view
        batched = _batched_read(type(online_store))
        self._batched = batched(online_store, self.config, tables) if batched else None

    @classmethod
    def build(cls, store: Any, service: Any, odfvs: dict[str, Any]) -> _DirectRead | None:
        """None when the service needs something only the SDK path does, or the SDK is faster.

        A store that reads view by view anyway (SQLite) saves the SDK's per-call work,
        and the direct read asks for every view at once (:class:`_SqliteRead`). Redis
        batches every view into one round trip, and so does the direct read
        (:class:`_RedisRead`). Another store that batches keeps the SDK: read view by
        view, it would pay one network round trip per view on a cluster.
        """
        from feast.infra.online_stores.online_store import OnlineStore

        online_store = type(store._get_provider().online_store)
        batched = online_store._read_features_per_fv is not OnlineStore._read_features_per_fv
        if batched and _batched_read(online_store) is None:
            return None
        entity_keys, _ = _service_keys(store, service, odfvs)
        reads: dict[str, list[str]] = {}  # feature view -> features to read (service order)

        def read(view: str, names: list[str]) -> None:
            wanted = reads.setdefault(view, [])
            wanted += [n for n in names if n not in wanted]

        transforms = []
        for projection in service.feature_view_projections:
            names = [f.name for f in projection.features]
            if projection.name_alias or projection.join_key_map:
                return None
            odfv = odfvs.get(projection.name)
            if odfv is None:
                read(projection.name, names)
                continue
            if (
                odfv.mode != "python"  # pandas mode runs through the SDK only
                or odfv.singleton  # one row at a time, scalars out
                or odfv.aggregations
                or odfv.write_to_online_store
            ):
                return None
            inputs = []
            for source in odfv.source_feature_view_projections.values():
                if source.name_alias:
                    return None
                read(source.name, [f.name for f in source.features])
                inputs += [f.name for f in source.features]
            inputs += [f.name for r in odfv.source_request_sources.values() for f in r.schema]
            transforms.append((odfv, inputs, names))
        tables = [(store.get_feature_view(view), names) for view, names in reads.items()]
        if any({c.name for c in view.entity_columns} != set(entity_keys) for view, _ in tables):
            return None
        return cls(store, tables, transforms)

    def read(self, rows: dict[str, list[Any]], entity_keys: list[str]) -> dict[str, list[Any]]:
        """Every feature column for ``rows`` (join keys and request values), None if absent."""
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values

        ids = list(zip(*(rows[k] for k in entity_keys), strict=True))
        new = [i for i in dict.fromkeys(ids) if i not in self._keys]
        if new:  # an entity's key is built once (Feast type-checks every conversion)
            if len(self._keys) + len(new) > KEY_CACHE_SIZE:
                self._keys.clear()
            protos = [
                python_values_to_proto_values([i[j] for i in new], self.value_types[key])
                for j, key in enumerate(entity_keys)
            ]
            for i, values in zip(new, zip(*protos, strict=True), strict=True):
                self._keys[i] = EntityKey(join_keys=entity_keys, entity_values=list(values))
        keys = [self._keys[i] for i in ids]
        out: dict[str, list[Any]] = {}
        for (_, names), read in zip(self.tables, self._read_views(keys), strict=True):
            for name in names:
                out[name] = [
                    None
                    if found is None or name not in found
                    else _python_value(found[name], feast_value_type_to_python_type)
                    for _, found in read
                ]
        for odfv, inputs, names in self.odfvs:
            # features just read, and the request values next to them
            computed = _transform(odfv, {n: out[n] if n in out else rows[n] for n in inputs})
            for name in names:
                out[name] = list(computed[name])
        return out

    def _read_views(self, keys: list[Any]) -> list[list[tuple[Any, dict | None]]]:
        """Each view's ``(event time, {feature: value proto} or None)`` per key; the
        batched reads give no event time (the lookup does not use it)."""
        if self._batched is not None:
            return self._batched.read(keys)
        return [
            self.provider.online_read(self.config, table, keys, names)
            for table, names in self.tables
        ]


class _RedisRead:
    """Every view's HMGETs in one pipeline, converted view by view: what Feast's
    ``RedisOnlineStore._read_features_per_fv`` sends, without the SDK's response objects.
    The hash fields of each view (murmur hashes of its feature names) are made once."""

    def __init__(self, store: Any, config: Any, tables: list[tuple[Any, list[str]]]) -> None:
        from feast.infra.online_stores.redis import _versioned_fv_name

        self.store, self.config = store, config
        self.plans = []  # (view name, feature names + its timestamp field, hash fields)
        for table, names in tables:
            view = _versioned_fv_name(table, config)
            # Feast appends the view's timestamp field to the names it is given: a copy
            fields, hash_keys = store._generate_hset_keys_for_features(
                table, list(names), fv_name_override=view
            )
            self.plans.append((view, fields, hash_keys))

    def read(self, keys: list[Any]) -> list[list[tuple[Any, dict | None]]]:
        store = self.store
        redis_keys = store._generate_redis_keys_for_entities(self.config, keys)
        commands = [(key, hash_keys) for _, _, hash_keys in self.plans for key in redis_keys]
        answers = store._read_hash_fields(self.config, commands)
        n = len(redis_keys)
        return [
            store._convert_redis_values_to_protobuf(answers[i * n : (i + 1) * n], view, fields)
            for i, (view, fields, _) in enumerate(self.plans)
        ]


class _SqliteRead:
    """Every view's rows in one statement: the tables and entity-key bytes of Feast's
    ``SqliteOnlineStore.online_read``, which reads them one statement per view. It
    selects no timestamps (the lookup does not use them; converting one per feature was
    a quarter of Feast's read) and serializes each entity key once, not once per view."""

    def __init__(self, store: Any, config: Any, tables: list[tuple[Any, list[str]]]) -> None:
        from feast.infra.online_stores.sqlite import _quote_id, _table_id

        self.store, self.config = store, config
        versioning = config.registry.enable_online_feature_view_versioning
        self.names = [_quote_id(_table_id(config.project, view, versioning)) for view, _ in tables]
        self.version = config.entity_key_serialization_version
        # SQLite binds at most 32,766 parameters: keys go in chunks that fit every view
        self.chunk = max(1, SQLITE_MAX_PARAMETERS // len(self.names))
        self._statements: dict[int, str] = {}  # number of keys -> statement

    def _statement(self, n: int) -> str:
        statement = self._statements.get(n)
        if statement is None:
            marks = ",".join("?" * n)
            statement = " UNION ALL ".join(
                f"SELECT {i}, entity_key, feature_name, value FROM {name} "
                f"WHERE entity_key IN ({marks})"
                for i, name in enumerate(self.names)
            )
            if len(self._statements) < 64:
                self._statements[n] = statement
        return statement

    def read(self, keys: list[Any]) -> list[list[tuple[Any, dict | None]]]:
        from feast.infra.key_encoding_utils import serialize_entity_key
        from feast.protos.feast.types.Value_pb2 import Value

        blobs = [
            serialize_entity_key(key, entity_key_serialization_version=self.version) for key in keys
        ]
        unique = list(dict.fromkeys(blobs))
        found: list[dict[bytes, dict[str, Any]]] = [{} for _ in self.names]
        connection = self.store._get_conn(self.config)
        for start in range(0, len(unique), self.chunk):
            part = unique[start : start + self.chunk]
            rows = connection.execute(self._statement(len(part)), part * len(self.names))
            for view, key, name, blob in rows.fetchall():
                value = Value()
                value.ParseFromString(blob)
                found[view].setdefault(key, {})[name] = value
        return [[(None, view.get(blob)) for blob in blobs] for view in found]


def _batched_read(online_store: type) -> type[_RedisRead] | type[_SqliteRead] | None:
    """The direct read that asks for every view at once on this kind of online store:
    one pipeline on Redis, one statement on SQLite; None for any other store."""
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    if issubclass(online_store, RedisOnlineStore):
        return _RedisRead
    if issubclass(online_store, SqliteOnlineStore):
        return _SqliteRead
    return None


def _service_keys(store: Any, service: Any, odfvs: dict[str, Any]) -> tuple[list[str], dict]:
    """The join keys of the service's stored views, in their order, and each one's kind
    (``int`` or ``string``)."""
    from feast import ValueType

    kinds = {e.join_key: e.value_type for e in store.list_entities()}
    keys: list[str] = []
    for projection in service.feature_view_projections:
        if projection.name in odfvs:
            continue
        view = store.get_feature_view(projection.name)
        keys += [c.name for c in view.entity_columns if c.name not in keys]
    keys = keys or [store.list_entities()[0].join_key]
    return keys, {k: "string" if kinds.get(k) == ValueType.STRING else "int" for k in keys}


def _is_text(dtype: Any) -> bool:
    from feast.types import String

    return dtype == String


# value kinds Feast converts to Python as the proto field itself
_PLAIN_KINDS = frozenset(
    ("double_val", "float_val", "int64_val", "int32_val", "string_val", "bool_val", "bytes_val")
)


def _python_value(value: Any, convert: Any) -> Any:
    """Feast's ``feast_value_type_to_python_type``, with scalars read without its dispatch."""
    kind = value.WhichOneof("val")
    if kind in _PLAIN_KINDS:
        return getattr(value, kind)
    return convert(value)


def _transform(odfv: Any, values: dict[str, list[Any]]) -> dict[str, Any]:
    """A python-mode on-demand view's ``transform_dict``, without its per-call type checks.

    Feast type-checks every method of ``OnDemandFeatureView`` at run time (typeguard),
    a fifth of a lookup here. What ``transform_dict`` does besides is give the
    transformation each source feature under its short and its ``view__feature`` name;
    so does this, and the test against ``get_online_features`` holds the two equal.
    """
    given = dict(values)
    for projection in odfv.source_feature_view_projections.values():
        for feature in projection.features:
            if feature.name in values:
                given[f"{projection.name}__{feature.name}"] = values[feature.name]
    return odfv.feature_transformation.transform(given)
