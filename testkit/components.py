"""What every component folder's tests share: the compiled YAML is the component's public contract."""

from __future__ import annotations

from pathlib import Path


def assert_yaml_round_trip(name: str, tmp_path: Path) -> None:
    """``components/<name>`` compiles alone, and the YAML loads back with the same interface."""
    from kfp import components

    from esteira_cli.catalog import compile_component, load_component

    original = load_component(name).component_spec
    loaded = components.load_component_from_file(str(compile_component(name, tmp_path)))
    spec = loaded.component_spec
    assert loaded.name == name.replace("_", "-")
    assert {k: str(v.type) for k, v in spec.inputs.items()} == {
        k: str(v.type) for k, v in original.inputs.items()
    }
    assert {k: str(v.type) for k, v in (spec.outputs or {}).items()} == {
        k: str(v.type) for k, v in (original.outputs or {}).items()
    }
    assert spec.implementation.container.image == original.implementation.container.image
