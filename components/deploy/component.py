"""The ``deploy`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import Artifact, Output

from esteira.kfp_support import component


@component
def deploy(config: str, version: int, manifest: Output[Artifact]) -> str:
    """The InferenceService for the promoted version: applied on a cluster, else written as a manifest; ``skipped`` when ``kserve.deploy`` is false."""
    import os
    from pathlib import Path

    from esteira.config import settings_from_json
    from esteira.deploy import deploy as run
    from esteira.kfp_support import guarded
    from esteira.registry import Registry
    from esteira.storage import open_storage

    with guarded("deploy"):
        settings = settings_from_json(config)
        os.makedirs(manifest.path, exist_ok=True)
        if not settings.kserve.deploy:
            manifest.metadata.update({"mode": "skipped", "version": version})
            print(f"deploy v{version}: skipped (deploy=false)")
            return "skipped"
        registry = Registry(open_storage(settings.storage), settings.model.name)
        result = run(settings, registry.get(version), Path(manifest.path))
        manifest.metadata.update({"mode": result.mode, "version": version})
        print(f"deploy v{version}: {result.mode}")
        return result.mode
