"""The ``load_data`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Output

from esteira.kfp_support import component


@component
def load_data(config: str, uri: str, dataset: Output[Dataset]) -> str:
    """Read raw data (path, http(s), s3://) into Parquet; returns the content hash."""
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.errors import ConfigError
    from esteira.ingest import ingest
    from esteira.kfp_support import guarded

    with guarded("load-data"):
        if not uri:
            raise ConfigError("uri", "no data to read", "pass the raw data's path or URI")
        settings = settings_from_json(config)
        result = ingest(uri, settings, load_contract(settings.features.repo_path))
        result.frame.to_parquet(dataset.path, index=False)
        dataset.metadata.update(result.metadata)
        print(f"loaded {len(result.frame)} rows from {uri} ({result.content_hash[:19]})")
        return result.content_hash
