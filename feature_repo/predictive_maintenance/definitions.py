"""Feast definitions for the dataset described in ``dataset.yaml``.

Every name (entity, tables, feature columns, request fields) comes from the
dataset contract, so a new dataset is a new ``dataset.yaml`` next to a copy of
this file. The objects are built by :func:`build`; the module-level names are
what ``feast apply`` discovers, built from the environment:

* ``ESTEIRA_FEATURE_SOURCES``: where the source Parquet files live, a directory
  (relative paths resolve against this repository) or ``s3://bucket/prefix/features``;
  default ``data/sources``. Each table is ``<root>/<table>.parquet``.
* ``ESTEIRA_FEATURE_S3_ENDPOINT``: ``http(s)://host:port`` of a MinIO/S3 endpoint
  for ``s3://`` sources (Feast's ``s3_endpoint_override``); default: AWS.
* ``ESTEIRA_FEATURE_SERVICE``: the feature service name; default ``machine_failure``.
* ``ESTEIRA_FEATURES__ENGINE``: ``pandas`` (FileSources, default) or ``spark`` (SparkSources,
  which Feast's Spark offline store requires); same views, service and names either way.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, RequestSource, ValueType
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.types import Float64, Int64, PrimitiveFeastType, String

from esteira.contract import Contract, load_contract
from esteira.feast_definitions import data_source

REPO = Path(__file__).resolve().parent

SOURCES_ENV = "ESTEIRA_FEATURE_SOURCES"
S3_ENDPOINT_ENV = "ESTEIRA_FEATURE_S3_ENDPOINT"
SERVICE_ENV = "ESTEIRA_FEATURE_SERVICE"
ENGINE_ENV = "ESTEIRA_FEATURES__ENGINE"
LOCAL_SOURCES = "data/sources"
DEFAULT_SERVICE = "machine_failure"
EVENT_TIMESTAMP = "event_timestamp"

# Freshness: a value older than this is "missing" (dropped from training, absent online).
ROLLING_TTL = timedelta(hours=6)  # hourly telemetry: a few missed readings are tolerated
EVENTS_TTL = timedelta(hours=6)  # hourly event counters
STATIC_TTL = timedelta(days=3650)  # attributes change rarely (model, age)

ZSCORE_EPSILON = 1e-6
_DTYPES: dict[str, PrimitiveFeastType] = {
    "int": Int64,
    "float": Float64,
    "string": String,
    "bool": Int64,
}


def source_path(table: str, root: str = LOCAL_SOURCES) -> str:
    """Where a table's Parquet file lives under ``root`` (a directory or an s3:// prefix)."""
    return f"{root.rstrip('/')}/{table}.parquet"


def rolling_features(c: Contract) -> list[str]:
    r = c.features.rolling
    return [f"{col}_{stat}_{h}h" for h in r.windows_hours for stat in r.stats for col in r.columns]


def event_features(c: Contract) -> list[str]:
    e = c.features.events
    return [f"{col}_sum_{h}h" for col, h in e.counts.items()] + [
        f"hours_since_{col}" for col in e.since
    ]


def zscore_window(c: Contract) -> int:
    """The longest rolling window: the baseline a request-time value is compared with."""
    return max(c.features.rolling.windows_hours)


def zscore_pairs(c: Contract) -> list[tuple[str, str, str, str]]:
    """(request field, mean feature, std feature, output) for each request-time value."""
    w = zscore_window(c)
    return [
        (field, f"{col}_mean_{w}h", f"{col}_std_{w}h", f"{col}_zscore_{w}h")
        for field, col in c.request.items()
    ]


def _view(
    table: str,
    entity: Entity,
    fields: list[Field],
    ttl: timedelta,
    root: str,
    s3_endpoint_override: str | None,
    engine: str = "pandas",
) -> FeatureView:
    source = data_source(
        engine, table, sources_root=root, s3_endpoint_override=s3_endpoint_override, repo=REPO
    )
    return FeatureView(
        name=table, entities=[entity], ttl=ttl, schema=fields, source=source, online=True
    )


ZSCORE_MODE = "python"  # measured faster than "pandas" for one-row online requests


def zscore_source(c: Contract, mode: str = ZSCORE_MODE) -> str:
    """Self-contained source of the z-score UDF with the contract's names written in.

    Feast stores this text in the registry and re-executes it (with ``pd``/``np``
    available) wherever the view is served, so it must not reference this module.
    """
    pairs = zscore_pairs(c)
    if mode == "pandas":
        body = [
            f"    out[{out!r}] = (frame[{field!r}] - frame[{mean!r}]) / (frame[{std!r}] + {ZSCORE_EPSILON!r})"
            for field, mean, std, out in pairs
        ]
        lines = ["def request_zscores(frame):", "    out = pd.DataFrame(index=frame.index)"]
        return "\n".join([*lines, *body, "    return out", ""])
    body = [
        f"        {out!r}: [None if x is None or m is None or s is None else (x - m) / (s + {ZSCORE_EPSILON!r})"
        f" for x, m, s in zip(inputs[{field!r}], inputs[{mean!r}], inputs[{std!r}])],"
        for field, mean, std, out in pairs
    ]
    return "\n".join(["def request_zscores(inputs):", "    return {", *body, "    }", ""])


def _zscore_view(
    c: Contract, request: RequestSource, rolling: FeatureView, mode: str = ZSCORE_MODE
) -> OnDemandFeatureView:
    pairs = zscore_pairs(c)
    source = zscore_source(c, mode)
    namespace: dict[str, Any] = {"pd": pd}
    exec(source, namespace)  # our own generated code, the same text Feast re-executes
    return OnDemandFeatureView(
        name="request_zscores",
        sources=[rolling[[n for _, mean, std, _ in pairs for n in (mean, std)]], request],
        schema=[Field(name=out, dtype=Float64) for *_, out in pairs],
        mode=mode,
        udf=namespace["request_zscores"],
        udf_string=source,
        description="how far each request-time reading is from its rolling mean, in std units",
    )


def build(
    sources_root: str = LOCAL_SOURCES,
    s3_endpoint_override: str | None = None,
    service_name: str = DEFAULT_SERVICE,
    contract: Contract | None = None,
    zscore_mode: str = ZSCORE_MODE,
    engine: str = "pandas",
) -> dict[str, Any]:
    """Every Feast object of this repository, by role (sources by ``engine``: pandas | spark)."""
    c = contract or load_contract(REPO)
    f = c.features
    entity = Entity(
        name=c.entity.removesuffix("_id"),
        join_keys=[c.entity],
        value_type=ValueType.INT64,
        description=f"one {c.entity.removesuffix('_id')}, keyed by {c.entity}",
    )

    def floats(names: list[str]) -> list[Field]:
        return [Field(name=n, dtype=Float64) for n in names]

    static_fields = [Field(name=n, dtype=_DTYPES[c.columns[n].dtype]) for n in f.static.columns]
    rolling = _view(
        f.rolling.table,
        entity,
        floats(rolling_features(c)),
        ROLLING_TTL,
        sources_root,
        s3_endpoint_override,
        engine,
    )
    static = _view(
        f.static.table,
        entity,
        static_fields,
        STATIC_TTL,
        sources_root,
        s3_endpoint_override,
        engine,
    )
    events = _view(
        f.events.table,
        entity,
        floats(event_features(c)),
        EVENTS_TTL,
        sources_root,
        s3_endpoint_override,
        engine,
    )
    request = RequestSource(
        name="request_values", schema=[Field(name=n, dtype=Float64) for n in c.request]
    )
    zscores = _zscore_view(c, request, rolling, zscore_mode)
    service = FeatureService(
        name=service_name,
        features=[rolling, static, events, zscores],
        description=f"every feature the {c.label.name} model is trained and served with",
    )
    return {
        "entity": entity,
        "feature_views": [rolling, static, events],
        "request_source": request,
        "on_demand_feature_views": [zscores],
        "feature_service": service,
    }


def feast_objects(objects: dict[str, Any]) -> list[Any]:
    """The flat list ``FeatureStore.apply`` takes."""
    return [
        objects["entity"],
        *objects["feature_views"],
        *objects["on_demand_feature_views"],
        objects["feature_service"],
    ]


_objects = build(
    sources_root=os.environ.get(SOURCES_ENV) or LOCAL_SOURCES,
    s3_endpoint_override=os.environ.get(S3_ENDPOINT_ENV) or None,
    service_name=os.environ.get(SERVICE_ENV) or DEFAULT_SERVICE,
    engine=os.environ.get(ENGINE_ENV) or "pandas",
)
# The names `feast apply` discovers (it scans module attributes, not lists).
entity = _objects["entity"]
rolling_view, static_view, events_view = _objects["feature_views"]
request_source = _objects["request_source"]
(request_view,) = _objects["on_demand_feature_views"]
feature_service = _objects["feature_service"]
