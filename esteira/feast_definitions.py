"""Feast objects from a dataset contract, for any use case: the general builder.

A use case's ``definitions.py`` calls :func:`build` with its contract; every name
(entities, tables, features, request fields) comes from the contract:

* one Feast ``Entity`` per key column (a composite key is several), INT64 or STRING;
* one ``FeatureView`` per feature kind in the contract (``rolling``, ``lags``,
  ``calendar``, ``static``, ``events``), on ``<sources root>/<table>.parquet``, its source
  from :func:`data_source` (``FileSource`` or ``SparkSource``, by ``features.engine``);
* one ``OnDemandFeatureView`` for the ``on_demand`` features (request values, alone or
  against a stored feature) and the ``text`` features (request-time text, as sent), whose
  UDF source is generated with the names written in;
* one ``FeatureService`` with all of them.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from esteira.contract import Contract

EVENT_TIMESTAMP = "event_timestamp"
EPSILON = 1e-6
DEFAULT_TTL_HOURS = {"rolling": 6, "lags": 6, "calendar": 6, "events": 6, "static": 24 * 3650}
ON_DEMAND_VIEW = "request_features"


def rolling_features(c: Contract) -> list[str]:
    r = c.features.rolling
    if r is None:
        return []
    return [f"{col}_{stat}_{h}h" for h in r.windows_hours for stat in r.stats for col in r.columns]


def lag_features(c: Contract) -> list[str]:
    spec = c.features.lags
    return [f"{col}_lag_{k}" for k in spec.lags for col in spec.columns] if spec else []


def calendar_features(c: Contract) -> list[str]:
    return list(c.features.calendar.parts) if c.features.calendar else []


def event_features(c: Contract) -> list[str]:
    e = c.features.events
    if e is None:
        return []
    return [f"{col}_sum_{h}h" for col, h in e.counts.items()] + [
        f"hours_since_{col}" for col in e.since
    ]


def on_demand_source(c: Contract) -> str:
    """Self-contained source of the on-demand UDF (python mode) with the contract's names in.

    Feast stores this text in the registry and re-executes it wherever the view is
    served, so it must not reference this module.
    """
    lines = ["def request_features(inputs):", "    return {"]
    for spec in c.features.on_demand or []:
        x = f"inputs[{spec.request!r}]"
        if spec.op == "identity":
            expr = f"[None if v is None else float(v) for v in {x}]"
        elif spec.op == "ratio":
            expr = (
                f"[None if v is None or m is None else v / (m + {EPSILON!r})"
                f" for v, m in zip({x}, inputs[{spec.feature!r}])]"
            )
        else:
            expr = (
                f"[None if v is None or m is None or s is None else (v - m) / (s + {EPSILON!r})"
                f" for v, m, s in zip({x}, inputs[{spec.feature!r}], inputs[{spec.scale!r}])]"
            )
        lines.append(f"        {spec.name!r}: {expr},")
    for text in c.features.text or []:  # request-time text, as sent
        expr = f"[None if v is None else str(v) for v in inputs[{text.request!r}]]"
        lines.append(f"        {text.name!r}: {expr},")
    return "\n".join([*lines, "    }", ""])


def data_source(
    engine: str,
    table: str,
    *,
    sources_root: str,
    s3_endpoint_override: str | None = None,
    repo: Path | None = None,
) -> Any:
    """The Feast source of one table for the feature engine: the factory both engines share.

    Same name, same file, same timestamp field; only the class differs. ``pandas``: a
    ``FileSource`` (esteira's as-of offline store reads it; a relative root resolves against
    the repository). ``spark``: a ``SparkSource``, the only file source Feast's Spark offline
    store accepts; Spark resolves paths against its own working directory, so a relative
    root is made absolute under ``repo``, and ``s3://`` becomes Hadoop's ``s3a://``.
    """
    path = f"{sources_root.rstrip('/')}/{table}.parquet"
    name = f"{table}_source"
    if engine == "pandas":
        from feast import FileSource

        return FileSource(
            name=name,
            path=path,
            timestamp_field=EVENT_TIMESTAMP,
            s3_endpoint_override=s3_endpoint_override or None,
        )
    if engine != "spark":
        raise ValueError(f"features.engine must be pandas or spark, got {engine!r}")
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    if path.startswith("s3://"):
        path = "s3a://" + path.removeprefix("s3://")
    elif not Path(path).is_absolute():
        path = str((repo or Path.cwd()) / path)
    return SparkSource(name=name, path=path, file_format="parquet", timestamp_field=EVENT_TIMESTAMP)


def build(
    c: Contract,
    *,
    sources_root: str,
    s3_endpoint_override: str | None = None,
    service_name: str,
    engine: str = "pandas",
    repo: Path | None = None,
) -> dict[str, Any]:
    """Every Feast object of the contract, by role (as ``definitions.build`` returns them)."""
    from feast import (
        Entity,
        FeatureService,
        FeatureView,
        Field,
        RequestSource,
        ValueType,
    )
    from feast.on_demand_feature_view import OnDemandFeatureView
    from feast.types import Float64, Int64, String

    dtypes = {"int": Int64, "float": Float64, "string": String, "bool": Int64}
    entities = [
        Entity(
            name=key.removesuffix("_id"),
            join_keys=[key],
            value_type=ValueType.STRING if c.columns[key].dtype == "string" else ValueType.INT64,
            description=f"keyed by {key}",
        )
        for key in c.keys
    ]

    def view(kind: str, fields: list[Any]) -> FeatureView:
        spec = getattr(c.features, kind)
        ttl = timedelta(hours=spec.ttl_hours or DEFAULT_TTL_HOURS[kind])
        return FeatureView(
            name=spec.table,
            entities=entities,
            ttl=ttl,
            schema=fields,
            source=data_source(
                engine,
                spec.table,
                sources_root=sources_root,
                s3_endpoint_override=s3_endpoint_override,
                repo=repo,
            ),
            online=True,
        )

    def floats(names: list[str]) -> list[Any]:
        return [Field(name=n, dtype=Float64) for n in names]

    f = c.features
    views: dict[str, FeatureView] = {}
    if f.rolling:
        views["rolling"] = view("rolling", floats(rolling_features(c)))
    if f.lags:
        views["lags"] = view("lags", floats(lag_features(c)))
    if f.calendar:
        views["calendar"] = view(
            "calendar", [Field(name=n, dtype=Int64) for n in calendar_features(c)]
        )
    if f.static:
        views["static"] = view(
            "static", [Field(name=n, dtype=dtypes[c.columns[n].dtype]) for n in f.static.columns]
        )
    if f.events:
        views["events"] = view("events", floats(event_features(c)))

    odfvs = []
    request = None
    if c.request:
        texts = set(c.text_requests)
        request = RequestSource(
            name="request_values",
            schema=[Field(name=n, dtype=String if n in texts else Float64) for n in c.request],
        )
    if f.on_demand or f.text:
        assert request is not None
        needed = {n for s in f.on_demand or [] for n in (s.feature, s.scale) if n}
        owners = [v for v in views.values() if any(fl.name in needed for fl in v.schema)]
        sources: list[Any] = [v[[fl.name for fl in v.schema if fl.name in needed]] for v in owners]
        source = on_demand_source(c)
        namespace: dict[str, Any] = {}
        exec(source, namespace)  # our own generated code, the same text Feast re-executes
        odfvs.append(
            OnDemandFeatureView(
                name=ON_DEMAND_VIEW,
                sources=[*sources, request],
                schema=[
                    *floats([s.name for s in f.on_demand or []]),
                    *[Field(name=t.name, dtype=String) for t in f.text or []],
                ],
                mode="python",
                udf=namespace["request_features"],
                udf_string=source,
                description="features of the request-time values",
            )
        )
    service = FeatureService(
        name=service_name,
        features=[*views.values(), *odfvs],
        description=f"every feature the {c.label.name} model is trained and served with",
    )
    return {
        "entity": entities[0],
        "entities": entities,
        "feature_views": list(views.values()),
        "request_source": request,
        "on_demand_feature_views": odfvs,
        "feature_service": service,
    }
