"""The ``fingerprint`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from esteira.kfp_support import component


@component
def fingerprint(config: str) -> str:
    """The sha256 of the configured source's bytes: never cached, so new content at the same URI gives ingest a new cache key."""
    from esteira.config import settings_from_json
    from esteira.ingest import fingerprint as run
    from esteira.kfp_support import guarded

    with guarded("fingerprint"):
        settings = settings_from_json(config)
        content_hash = run(settings.data.source_uri, settings)
        print(f"source {settings.data.source_uri}: {content_hash[:19]}")
        return content_hash
