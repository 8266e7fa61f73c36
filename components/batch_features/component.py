"""The ``batch_features`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Output

from esteira.kfp_support import component


@component
def batch_features(
    config: str,
    data: Input[Dataset],
    entities_uri: str,
    history_uri: str,
    every_hours: int,
    features: Output[Dataset],
) -> NamedTuple("BatchFeatures", rows=int, requested_rows=int, dropped_by_ttl=dict):
    """Publish the new data's feature rows to Feast, then point-in-time features per entity row."""
    from collections import namedtuple

    from components.batch_features import logic as bf
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.feast_repo import apply_definitions
    from esteira.ingest import ingest
    from esteira.kfp_support import guarded
    from esteira.parquet import read_parquet
    from esteira.registry import production_version, registry_for

    with guarded("batch-features"):
        settings = settings_from_json(config)
        contract = load_contract(settings.features.repo_path)
        raw = read_parquet(data.path)
        if not history_uri:
            production = production_version(registry_for(settings))
            history_uri = production.metadata.get("source_uri") or settings.data.source_uri
        history = ingest(history_uri, settings, contract).frame
        published = bf.extend_sources(raw, history, settings, contract)
        print(
            f"published features from {published['start']} ({published['warmup_rows']} warm-up rows)"
        )
        apply_definitions(settings)
        if entities_uri:
            rows = bf.read_entity_rows(entities_uri, settings, contract, raw)
        else:
            rows = bf.entity_rows(
                raw, contract, every_hours or settings.features.sample_every_hours
            )
        retrieved = bf.historical_features(rows, settings, features.path, features.uri)
        features.metadata.update(
            {
                "rows": len(retrieved.frame),
                "requested_rows": len(rows),
                "feature_names": retrieved.feature_names,
                "history_uri": history_uri,
            }
        )
        print(f"{len(retrieved.frame)} of {len(rows)} entity rows have features")
        out = namedtuple("BatchFeatures", ["rows", "requested_rows", "dropped_by_ttl"])
        return out(len(retrieved.frame), len(rows), dict(retrieved.dropped_by_ttl))
