"""Feast's Spark offline store with a linear point-in-time join (``features.engine: spark``).

Feast 0.67's Spark store joins every entity row with every source row of its entity and
filters on time afterwards (``ON subquery.event_timestamp <= entity_timestamp AND >=
entity_timestamp - ttl`` after an equi-join on the key): per entity, entity rows x source
rows, evaluated pair by pair. For `make run`'s fleet that is ~10^9 pairs per view. This
store subclasses it and replaces only ``get_historical_features`` with a pandas entity
frame, as esteira's as-of store does for the file store (esteira/feast_store.py): per
view, the entity rows and the source rows of each entity are put in one time order and
each entity row takes the last source row at or before it (a window over the entity's
partition: a sort, not a product). Semantics are the Spark store's: the latest row with
``event_timestamp <= t`` and ``>= t - ttl``, else nulls; the job is Feast's
``SparkRetrievalJob`` (on-demand views applied as usual). Everything else (materialization
pulls, writes, non-entity retrieval) is Feast's Spark store; tests/test_spark_engine.py
checks the result against the pandas engine, value by value.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from feast import FeatureView
from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
    SparkOfflineStore,
    SparkOfflineStoreConfig,
    SparkRetrievalJob,
    get_spark_session_or_start_new_with_repoconfig,
)
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import get_temp_entity_table_name
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig
from feast.utils import (
    _get_requested_feature_views_to_features_dict,
    _get_requested_on_demand_feature_views,
)

ASOF_SPARK_OFFLINE_STORE = "esteira.spark_offline_store.AsofSparkOfflineStore"
_TS, _SIDE, _HIT = "__esteira_ts", "__esteira_side", "__esteira_hit"


class AsofSparkOfflineStoreConfig(SparkOfflineStoreConfig):
    """Feast's Spark offline store config (``spark_conf``, ...), under esteira's type name."""

    type: Literal["esteira.spark_offline_store.AsofSparkOfflineStore"] = ASOF_SPARK_OFFLINE_STORE  # type: ignore[assignment]


def _join_view(
    session: Any,
    left: Any,
    view: FeatureView,
    features: list[str],
    entity_ts: str,
    full_feature_names: bool,
) -> Any:
    """``left`` with ``features`` of ``view`` as of each row's ``entity_ts`` (within the TTL)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    source = view.batch_source
    mapping = source.field_mapping or {}
    reverse = {v: k for k, v in mapping.items()}
    join_keys = [view.projection.join_key_map.get(c.name, c.name) for c in view.entity_columns]
    source_keys = [c.name for c in view.entity_columns]
    names = {
        f: f"{view.projection.name_to_use()}__{f}" if full_feature_names else f for f in features
    }
    table = session.sql(f"SELECT * FROM {source.get_table_query_string()}")
    right = table.select(
        *[F.col(reverse.get(k, k)).alias(j) for k, j in zip(source_keys, join_keys, strict=True)],
        F.col(source.timestamp_field).cast("timestamp").alias(_TS),
        *[F.col(reverse.get(f, f)).alias(names[f]) for f in features],
    )
    for key in join_keys:  # the entity frame's key types decide
        right = right.withColumn(key, F.col(key).cast(dict(left.dtypes)[key]))
    found = F.struct(F.col(_TS).alias(_TS), *[F.col(n) for n in names.values()])
    both = (
        left.withColumn(_TS, F.col(entity_ts)).withColumn(_SIDE, F.lit(1))
        .unionByName(right.withColumn(_SIDE, F.lit(0)), allowMissingColumns=True)
    )  # fmt: skip
    # source rows first at equal times: a value stamped at t is known at t
    upto = (
        Window.partitionBy(*join_keys)
        .orderBy(_TS, _SIDE)
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    latest = F.last(F.when(F.col(_SIDE) == 0, found), ignorenulls=True).over(upto)
    joined = both.withColumn(_HIT, latest).where(F.col(_SIDE) == 1)
    ttl = view.ttl.total_seconds() if view.ttl else 0
    inside = F.col(f"{_HIT}.{_TS}").isNotNull()
    if ttl > 0:
        earliest = F.timestamp_micros(F.unix_micros(F.col(entity_ts)) - F.lit(int(ttl * 1e6)))
        inside = inside & (F.col(f"{_HIT}.{_TS}") >= earliest)
    values = [F.when(inside, F.col(f"{_HIT}.`{n}`")).alias(n) for n in names.values()]
    return joined.select(*left.columns, *values)


class _UtcRetrievalJob(SparkRetrievalJob):
    """Feast's Spark retrieval job; timestamps come back UTC-aware, as the pandas engine's do
    (Spark hands them to pandas naive, in the session's time zone, which esteira sets to UTC)."""

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        frame = super()._to_df_internal(timeout)
        for name in frame.columns:
            if pd.api.types.is_datetime64_dtype(frame[name]):  # naive only
                frame[name] = frame[name].dt.tz_localize("UTC")
        return frame


class AsofSparkOfflineStore(SparkOfflineStore):
    """Feast's Spark offline store; ``get_historical_features`` with a pandas entity frame
    is a sorted as-of join per entity instead of a range join."""

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
            return SparkOfflineStore.get_historical_features(
                config,
                feature_views,
                feature_refs,
                entity_df,
                registry,
                project,
                full_feature_names,
                **kwargs,
            )
        session = get_spark_session_or_start_new_with_repoconfig(config.offline_store)
        from esteira.feast_store import _entity_timestamp_column

        entity_ts = _entity_timestamp_column(entity_df)
        odfvs = _get_requested_on_demand_feature_views(feature_refs, project, registry)
        per_view, _ = _get_requested_feature_views_to_features_dict(
            feature_refs, feature_views, odfvs
        )
        frame = entity_df.copy()
        frame[entity_ts] = pd.to_datetime(frame[entity_ts], utc=True)
        result = session.createDataFrame(frame)
        for view, features in per_view.items():
            result = _join_view(session, result, view, features, entity_ts, full_feature_names)
        name = get_temp_entity_table_name()
        result.createOrReplaceTempView(name)
        stamps = frame[entity_ts]
        return _UtcRetrievalJob(
            spark_session=session,
            query=f"SELECT * FROM {name}",
            full_feature_names=full_feature_names,
            config=config,
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
