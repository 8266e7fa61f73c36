"""What every component folder's tests share: the compiled YAML is the component's public contract."""

from __future__ import annotations

from pathlib import Path


def assert_yaml_round_trip(name: str, tmp_path: Path) -> None:
    """``components/<name>`` compiles alone, the YAML loads back with the same interface, and
    the example in its README builds a pipeline from that YAML."""
    from kfp import components

    from esteira_cli.catalog import COMPONENTS_DIR, compile_component, load_component

    original = load_component(name).component_spec
    compiled = compile_component(name, tmp_path)
    loaded = components.load_component_from_file(str(compiled))
    spec = loaded.component_spec
    assert loaded.name == name.replace("_", "-")
    assert {k: str(v.type) for k, v in spec.inputs.items()} == {
        k: str(v.type) for k, v in original.inputs.items()
    }
    assert {k: str(v.type) for k, v in (spec.outputs or {}).items()} == {
        k: str(v.type) for k, v in (original.outputs or {}).items()
    }
    assert spec.implementation.container.image == original.implementation.container.image

    readme = (COMPONENTS_DIR / name / "README.md").read_text()
    example = readme.split("```python\n", 1)[1].split("```", 1)[0]
    example = example.replace(f"dist/components/{name}.yaml", str(compiled))
    example = example.replace(f'"{name}_example.yaml"', repr(str(tmp_path / "example.yaml")))
    exec(compile(example, f"components/{name}/README.md", "exec", dont_inherit=True), {})
    assert (tmp_path / "example.yaml").is_file()
