"""The component repository's checks: folders, generated READMEs, metadata, component imports, layers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from esteira_cli import catalog
from testkit import layers

GATE = catalog.COMPONENTS_DIR / "gate"


def test_every_component_folder_is_complete() -> None:
    assert len(catalog.component_names()) >= 20
    assert catalog.missing_files() == []


def test_every_readme_is_current() -> None:
    assert catalog.stale_readmes() == []


def _changed_gate(tmp_path: Path, old: str, new: str):
    source = (GATE / "component.py").read_text()
    assert old in source
    path = tmp_path / "changed_gate.py"
    path.write_text(source.replace(old, new))
    spec = importlib.util.spec_from_file_location("changed_gate", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.gate


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("holdout: Input[Dataset] = None", "holdout: Input[Dataset] = None, margin: float = 0.0"),
        ("config: str, scores: dict, verdict", "config: str, scores: list, verdict"),
    ],
    ids=["new-parameter", "changed-type"],
)
def test_a_changed_parameter_without_regenerating_fails_the_readme_check(
    tmp_path: Path, old: str, new: str
) -> None:
    changed = _changed_gate(tmp_path, old, new)
    assert catalog.stale_readmes(["gate"]) == []
    stale = catalog.stale_readmes(["gate"], load=lambda name: changed)
    assert stale == ["components/gate/README.md is stale: run `esteira docs`"]


def test_every_metadata_is_valid() -> None:
    assert catalog.invalid_metadata() == []


def _gate_metadata() -> dict:
    return yaml.safe_load((GATE / "metadata.yaml").read_text())


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda m: m.pop("lastVerified"), "'lastVerified' is a required property"),
        (lambda m: m.update(stability="experimental"), "stability"),
        (lambda m: m["dependencies"]["kubeflow"][0].update(version="latest"), "version"),
        (lambda m: m["dependencies"].update(kubeflow=[]), "dependencies.kubeflow"),
        (lambda m: m.update(tags="gate"), "tags"),
        (lambda m: m.update(name="the_gate"), "is not the folder's name"),
        (lambda m: m.update(lastVerified="2999-01-01T00:00:00Z"), "in the future"),
        (lambda m: m.update(owner="me"), "Additional properties"),
    ],
    ids=["no-date", "stability", "version", "no-kubeflow", "tags", "name", "future", "extra"],
)
def test_an_invalid_metadata_fails_the_schema_check(change, expected: str) -> None:
    metadata = _gate_metadata()
    assert catalog.metadata_errors(metadata, "gate") == []
    change(metadata)
    errors = catalog.metadata_errors(metadata, "gate")
    assert errors and any(expected in e for e in errors), errors


def test_an_invalid_metadata_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "gate"
    folder.mkdir()
    (folder / "component.py").write_text("")
    (folder / "metadata.yaml").write_text(json.dumps(_gate_metadata() | {"stability": "gold"}))
    problems = catalog.invalid_metadata(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("components/gate/metadata.yaml: stability")


def test_component_modules_import_only_kfp_at_top_level() -> None:
    problems = [
        p
        for name in catalog.component_names()
        for p in catalog.top_level_import_violations(catalog.COMPONENTS_DIR / name / "component.py")
    ]
    assert problems == []


def test_a_third_party_top_level_import_in_a_component_fails(tmp_path: Path) -> None:
    path = tmp_path / "component.py"
    source = (GATE / "component.py").read_text()
    path.write_text("import pandas as pd\n" + source)
    problems = catalog.top_level_import_violations(path)
    assert len(problems) == 1 and "top-level import of pandas" in problems[0]


def test_layers_hold_and_nothing_imports_in_a_circle() -> None:
    graph = layers.import_graph()
    assert "esteira.registry" in graph and "components.gate.component" in graph
    assert layers.forbidden_imports(graph) == []
    assert layers.cycles(graph) == []


@pytest.mark.parametrize("target", ["components", "pipelines", "serving", "bench", "esteira_cli"])
def test_a_core_import_of_an_outer_layer_fails(tmp_path: Path, target: str) -> None:
    (tmp_path / "esteira").mkdir()
    (tmp_path / target).mkdir(exist_ok=True)
    (tmp_path / target / "thing.py").write_text("VALUE = 1\n")
    (tmp_path / "esteira" / "core.py").write_text(
        f"def lazy():\n    from {target}.thing import VALUE\n    return VALUE\n"
    )
    graph = layers.import_graph(tmp_path, ["esteira", target])
    assert layers.forbidden_imports(graph) == [f"esteira.core imports {target}.thing"]


def test_a_cycle_anywhere_fails(tmp_path: Path) -> None:
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "a.py").write_text("from serving.b import B\nA = 1\n")
    (tmp_path / "serving" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from serving.a import A\nB = 2\n"
    )
    (tmp_path / "serving" / "c.py").write_text("import serving.a\n")
    graph = layers.import_graph(tmp_path, ["serving"])
    assert layers.forbidden_imports(graph) == []
    assert layers.cycles(graph) == [["serving.a", "serving.b"]]
