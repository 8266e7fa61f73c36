"""`plan_search` as another team takes it: the compiled YAML alone."""

from pathlib import Path

from testkit.components import assert_yaml_round_trip


def test_plan_search_yaml_has_the_component_interface(tmp_path: Path) -> None:
    assert_yaml_round_trip("plan_search", tmp_path)
