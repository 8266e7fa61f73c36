"""Another team's pipeline, built only from the compiled component YAMLs, runs under kfp.local.

No ``from __future__ import annotations``: KFP reads the pipeline's real annotations.
"""

from pathlib import Path

import pytest

from esteira.config import Settings, settings_to_json
from esteira_cli.catalog import compile_component


@pytest.fixture(scope="module")
def component_files(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("components")
    return {name: compile_component(name, out) for name in ("gate", "retrain_decision")}


def test_a_pipeline_of_loaded_component_yamls_runs_locally(
    component_files: dict[str, Path], tmp_path: Path
) -> None:
    from kfp import components, dsl, local

    gate = components.load_component_from_file(str(component_files["gate"]))
    retrain_decision = components.load_component_from_file(str(component_files["retrain_decision"]))

    @dsl.pipeline(name="borrowed-components")
    def borrowed(config: str, scores: dict, degraded: bool) -> bool:
        passed = gate(config=config, scores=scores)  # no hold-out: the absolute thresholds
        return retrain_decision(drift_detected=passed.outputs["Output"], degraded=degraded).output

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
    )
    config = settings_to_json(Settings())  # gate.thresholds: roc_auc >= 0.8
    assert borrowed(config=config, scores={"roc_auc": 0.9}, degraded=False).output is True
    assert borrowed(config=config, scores={"roc_auc": 0.5}, degraded=False).output is False
    assert borrowed(config=config, scores={"roc_auc": 0.5}, degraded=True).output is True
