"""The ``ingest`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Dataset, Output, OutputPath

from esteira.kfp_support import component


@component
def ingest(
    config: str, dataset: Output[Dataset], lineage: OutputPath(dict), content_hash: str = ""
) -> str:
    """Read the configured source (path, http(s), s3://, dvc://) into Parquet; returns the
    content hash, and writes ``lineage`` (a dvc:// source's git revision and DVC md5).

    ``content_hash`` (from ``fingerprint``) is part of the task's cache key and is checked
    against the bytes read: new content at the same URI is never served from cache.
    """
    import json

    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.ingest import ingest as run
    from esteira.kfp_support import guarded

    with guarded("ingest"):
        settings = settings_from_json(config)
        contract = load_contract(settings.features.repo_path)
        result = run(settings.data.source_uri, settings, contract, content_hash)
        result.frame.to_parquet(dataset.path, index=False)
        dataset.metadata.update(result.metadata)
        with open(lineage, "w") as handle:
            json.dump(result.lineage, handle, sort_keys=True)
        print(
            f"ingested {len(result.frame)} rows from {result.source_uri} ({result.content_hash[:19]})"
        )
        return result.content_hash
