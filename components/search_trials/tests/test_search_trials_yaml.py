"""`search_trials` as another team takes it: the compiled YAML alone."""

from pathlib import Path

from testkit.components import assert_yaml_round_trip


def test_search_trials_yaml_has_the_component_interface(tmp_path: Path) -> None:
    assert_yaml_round_trip("search_trials", tmp_path)
