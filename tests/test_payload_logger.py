"""KServe's payload logger, the optional kustomize component: it renders onto each overlay
and the InferenceService stays valid against KServe's CRD schema."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from esteira import manifests as m
from esteira import usecase

ROOT = Path(__file__).resolve().parent.parent
COMPONENT = ROOT / "manifests" / "components" / "payload-logger"

if not shutil.which("kubectl"):
    if os.environ.get("CI"):
        pytest.fail("kubectl is missing in CI: it renders the kustomize overlays")
    pytest.skip("kubectl not installed", allow_module_level=True)


@pytest.mark.usefixtures("kserve_schemas")
@pytest.mark.parametrize("overlay", ["local", "production"])
def test_the_payload_logger_component_renders_a_valid_inferenceservice(
    tmp_path: Path, overlay: str
) -> None:
    base = os.path.relpath(ROOT / "manifests" / "overlays" / overlay, tmp_path)
    component = os.path.relpath(COMPONENT, tmp_path)
    (tmp_path / "kustomization.yaml").write_text(
        f"resources:\n  - {base}\ncomponents:\n  - {component}\n"
    )
    objects = m.parse_objects(m.kustomize_build(tmp_path))
    services = [o for o in objects if o["kind"] == "InferenceService"]
    # every use case's model logs its payloads
    assert sorted(i["metadata"]["name"] for i in services) == sorted(
        usecase.load(name).model_name for name in usecase.names()
    )
    for isvc in services:
        logger = isvc["spec"]["predictor"]["logger"]
        assert logger["mode"] == "all"
        assert logger["url"].startswith("http://")
        assert m.validate_inferenceservice(isvc) == []
    # everything else is the overlay as it was
    plain = m.render_overlay(overlay)
    assert len(plain) == len(objects)
