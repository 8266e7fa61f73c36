"""Feast definitions of this use case, built from its ``dataset.yaml`` by the general builder
(``esteira/feast_definitions.py``). The module-level names are what ``feast apply`` discovers.

* ``ESTEIRA_FEATURE_SOURCES``: where the source Parquet files live (a directory, relative
  to this repository, or ``s3://bucket/prefix/features``); default ``data/sources``.
* ``ESTEIRA_FEATURE_S3_ENDPOINT``: ``http(s)://host:port`` of a MinIO/S3 endpoint.
* ``ESTEIRA_FEATURE_SERVICE``: the feature service name; default ``review_sentiment``.
* ``ESTEIRA_FEATURES__ENGINE``: ``pandas`` (FileSources, default) or ``spark`` (SparkSources).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from esteira.contract import Contract, load_contract
from esteira.feast_definitions import build as build_from_contract

REPO = Path(__file__).resolve().parent
LOCAL_SOURCES = "data/sources"
DEFAULT_SERVICE = "review_sentiment"


def build(
    sources_root: str = LOCAL_SOURCES,
    s3_endpoint_override: str | None = None,
    service_name: str = DEFAULT_SERVICE,
    contract: Contract | None = None,
    engine: str = "pandas",
) -> dict[str, Any]:
    """Every Feast object of this repository, by role (sources by ``engine``: pandas | spark)."""
    return build_from_contract(
        contract or load_contract(REPO),
        sources_root=sources_root,
        s3_endpoint_override=s3_endpoint_override,
        service_name=service_name,
        engine=engine,
        repo=REPO,
    )


_objects = build(
    sources_root=os.environ.get("ESTEIRA_FEATURE_SOURCES") or LOCAL_SOURCES,
    s3_endpoint_override=os.environ.get("ESTEIRA_FEATURE_S3_ENDPOINT") or None,
    service_name=os.environ.get("ESTEIRA_FEATURE_SERVICE") or DEFAULT_SERVICE,
    engine=os.environ.get("ESTEIRA_FEATURES__ENGINE") or "pandas",
)
# The names `feast apply` discovers (it scans module attributes, not lists).
(product_entity,) = _objects["entities"]
rolling_view, static_view = _objects["feature_views"]
request_source = _objects["request_source"]
(request_view,) = _objects["on_demand_feature_views"]
feature_service = _objects["feature_service"]
