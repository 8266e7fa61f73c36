"""The one online feature lookup, shared by serving (called on every request).

Built once per process: a warm FeatureStore, the feature service resolved to
its ordered feature list, the request fields its on-demand views need. A call
is then one Feast ``get_online_features`` plus checks. Columns come back in the
feature service order, which is the order training used.
"""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import pandas as pd

from esteira.config import Settings
from esteira.errors import EsteiraError
from esteira.feast_store import feature_store


class UnknownEntityError(EsteiraError):
    """Some entities have no values in the online store."""


class MissingRequestValueError(EsteiraError):
    """A request-time value an on-demand feature needs was not sent."""


class OnlineStoreUnavailable(EsteiraError):
    """The online store (Redis, SQLite) cannot be reached."""


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

    def __init__(self, settings: Settings, store: Any = None) -> None:
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
                "apply the definitions (components.feast_ops.apply_definitions) first",
            ) from None
        self.service = service
        odfvs = {v.name: v for v in self.store.list_on_demand_feature_views()}
        self.entity_key = self.store.list_entities()[0].join_key
        self._refs: list[str] = []
        self._stored: list[str] = []  # features read from the online store (not computed)
        self._requests: list[str] = []
        for projection in service.feature_view_projections:
            names = [f.name for f in projection.features]
            self._refs += [f"{projection.name_to_use()}:{n}" for n in names]
            odfv = odfvs.get(projection.name)
            if odfv is None:
                self._stored += names
                continue
            for source in odfv.source_request_sources.values():
                self._requests += [f.name for f in source.schema if f.name not in self._requests]
        self._names = [ref.split(":", 1)[1] for ref in self._refs]

    @staticmethod
    def _describe(settings: Settings) -> str:
        if settings.features.online_store == "redis":
            return f"Redis at {settings.features.redis_connection}"
        return "the SQLite online store"

    @property
    def feature_names(self) -> list[str]:
        """Every feature, bare names, in the feature service order (as in training)."""
        return list(self._names)

    @property
    def request_fields(self) -> list[str]:
        """Request-time values each lookup needs (for the on-demand features)."""
        return list(self._requests)

    def _entity_rows(
        self, entity_ids: list[int], request: dict[str, list[float]] | None
    ) -> dict[str, list[Any]]:
        rows: dict[str, list[Any]] = {self.entity_key: [int(i) for i in entity_ids]}
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
            bad = [
                i
                for i, v in enumerate(values)
                if v is None or (isinstance(v, float) and math.isnan(v))
            ]
            if bad:
                raise MissingRequestValueError(
                    name, f"is missing for entities at positions {bad}", "send a number"
                )
            rows[name] = [float(v) for v in values]
        return rows

    def lookup(
        self, entity_ids: list[int], request: dict[str, list[float]] | None = None
    ) -> dict[str, list[Any]]:
        """Feature columns (feature service order), one value per entity id, same order."""
        if not entity_ids:
            return {name: [] for name in self._names}
        rows = self._entity_rows(entity_ids, request)
        try:
            response = self.store.get_online_features(features=self._refs, entity_rows=rows)
            values = response.to_dict()
        except _UNAVAILABLE as exc:
            raise OnlineStoreUnavailable(
                "features.online_store",
                f"{self._where} cannot be reached ({type(exc).__name__}: {exc})",
                "start the online store or fix features.redis_connection; lookups recover by themselves",
            ) from None
        self._check_found(entity_ids, values)
        return {name: values[name] for name in self._names}

    def lookup_frame(
        self, entity_ids: list[int], request: dict[str, list[float]] | None = None
    ) -> pd.DataFrame:
        """:meth:`lookup` as a DataFrame indexed by entity id."""
        columns = self.lookup(entity_ids, request)
        index = pd.Index([int(i) for i in entity_ids], name=self.entity_key)
        return pd.DataFrame(columns, index=index, columns=self._names)

    def _check_found(self, entity_ids: list[int], values: dict[str, list[Any]]) -> None:
        missing = sorted(
            {
                int(entity_ids[i])
                for name in self._stored
                for i, v in enumerate(values[name])
                if v is None
            }
        )
        if missing:
            raise UnknownEntityError(
                self.entity_key,
                f"no online feature values for {missing}",
                "check the ids, or publish and materialize their features",
            )
