"""fingerprint: the hash ingest records, and ingest refuses bytes other than those fingerprinted."""

from __future__ import annotations

from pathlib import Path

import pytest

from esteira.config import ROOT, Settings
from esteira.contract import load_contract
from esteira.data import write_fleet
from esteira.errors import DataError
from esteira.ingest import fingerprint, ingest
from testkit.components import assert_yaml_round_trip
from testkit.pipeline import generate_fleet


def test_the_fingerprint_is_ingests_content_hash_and_follows_the_content(tmp_path: Path) -> None:
    source = tmp_path / "fleet.parquet"
    write_fleet(generate_fleet(machines=3, days=5, seed=1), str(source))
    contract = load_contract(ROOT / "feature_repo" / "predictive_maintenance")
    first = fingerprint(str(source), Settings())
    assert ingest(str(source), Settings(), contract, first).content_hash == first

    write_fleet(generate_fleet(machines=3, days=5, seed=2), str(source))  # same path
    assert fingerprint(str(source), Settings()) != first
    with pytest.raises(DataError, match="changed while the run read it"):
        ingest(str(source), Settings(), contract, first)


def test_fingerprint_yaml_has_the_component_interface(tmp_path: Path) -> None:
    assert_yaml_round_trip("fingerprint", tmp_path)
