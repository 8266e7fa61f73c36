"""Ingestion from every source kind, and a clear error for every way a file can be broken."""

import hashlib

import pandas as pd
import pytest

from esteira.config import Settings
from esteira.contract import load_contract
from esteira.data import write_fleet
from esteira.errors import DataError
from esteira.ingest import detect_format, ingest
from esteira.storage import open_storage
from testkit.pipeline import generate_fleet

CONTRACT = load_contract("feature_repo/predictive_maintenance")


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(machines=3, days=2)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_local_csv_and_parquet_give_the_same_frame_and_hash_the_bytes(tmp_path, fleet, suffix):
    path = tmp_path / f"fleet.{suffix}"
    write_fleet(fleet, str(path))
    got = ingest(str(path), Settings(), CONTRACT)
    assert got.content_hash == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert got.metadata["rows"] == len(fleet) and got.metadata["columns"] == len(fleet.columns)
    assert str(got.frame.timestamp.dt.tz) == "UTC"
    pd.testing.assert_series_equal(got.frame.volt, fleet.volt)
    assert got.frame.timestamp.tolist() == fleet.timestamp.tolist()


def test_s3_source(tmp_path, fleet, s3_settings):
    path = tmp_path / "fleet.parquet"
    write_fleet(fleet, str(path))
    open_storage(s3_settings).put_bytes("raw/fleet.parquet", path.read_bytes())
    settings = Settings(storage=s3_settings)
    got = ingest(f"s3://{s3_settings.bucket}/raw/fleet.parquet", settings, CONTRACT)
    assert len(got.frame) == len(fleet)


def test_unknown_extension():
    with pytest.raises(DataError, match="cannot tell the format"):
        detect_format("data/fleet.xlsx")


def _fails(tmp_path, name: str, content: bytes, match: str):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as err:
        ingest(str(path), Settings(), CONTRACT)
    assert err.value.field == "data.source_uri" or err.value.field == "timestamp"
    return err.value


def test_empty_file(tmp_path):
    _fails(tmp_path, "empty.csv", b"", "is empty")


def test_truncated_parquet(tmp_path, fleet):
    good = tmp_path / "good.parquet"
    write_fleet(fleet, str(good))
    _fails(
        tmp_path,
        "cut.parquet",
        good.read_bytes()[: good.stat().st_size // 2],
        "not a readable Parquet",
    )


def test_wrong_delimiter(tmp_path, fleet):
    _fails(tmp_path, "semi.csv", fleet.head().to_csv(sep=";", index=False).encode(), "delimiter")


def test_wrong_encoding(tmp_path, fleet):
    text = fleet.head().to_csv(index=False).replace("model1", "modèle").replace("model2", "modèle")
    _fails(
        tmp_path,
        "latin.csv",
        text.encode("latin-1") if "è" in text else b"timestamp,m\xe9\n",
        "not UTF-8",
    )


def test_duplicate_header(tmp_path):
    _fails(
        tmp_path,
        "dup.csv",
        b"timestamp,volt,volt\n2025-01-01T00:00:00Z,1,2\n",
        r"repeats header column\(s\) \['volt'\]",
    )


def test_unparseable_timestamps(tmp_path):
    err = _fails(tmp_path, "ts.csv", b"timestamp,volt\nyesterday,1\n", "not ISO-8601")
    assert err.field == "timestamp"


def test_mixed_types_fail_validation_not_ingestion(tmp_path, fleet):
    """A column of mixed types reads as text; the validate step names it (see test_validate)."""
    frame = fleet.head(20).copy()
    frame["volt"] = frame["volt"].astype(object)
    frame.loc[3, "volt"] = "high"
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    got = ingest(str(path), Settings(), CONTRACT)
    from components.validate.logic import validate

    report = validate(got.frame, CONTRACT, Settings().validation.model_copy(update={"min_rows": 1}))
    assert [(v.column, v.rule, v.count) for v in report.violations] == [("volt", "dtype", 1)]
