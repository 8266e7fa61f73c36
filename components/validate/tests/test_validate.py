"""Every validation rule, failing on its own, names the column, the rule and the count."""

import pandas as pd
import pytest

from components.validate.logic import validate
from esteira.config import ValidationSettings
from esteira.contract import load_contract
from esteira.errors import DataError
from testkit.pipeline import generate_fleet

CONTRACT = load_contract("feature_repo/predictive_maintenance")
RULES = ValidationSettings(min_rows=10, max_null_ratio=0.01)
NOW = pd.Timestamp("2026-01-01", tz="UTC")


@pytest.fixture
def good() -> pd.DataFrame:
    return generate_fleet(machines=3, days=2)


def violations(frame, rules=RULES):
    return [
        (v.column, v.rule, v.count) for v in validate(frame, CONTRACT, rules, now=NOW).violations
    ]


def test_clean_data_passes(good):
    report = validate(good, CONTRACT, RULES, now=NOW)
    assert report.ok
    report.raise_for_violations()  # no error
    assert set(report.null_ratios) == set(CONTRACT.columns)


def test_required_column(good):
    assert violations(good.drop(columns=["pressure"])) == [("pressure", "required", len(good))]


def test_dtype(good):
    good["age"] = good["age"].astype(str)
    assert violations(good) == [("age", "dtype", len(good))]


def test_null_ratio(good):
    good.loc[good.index[:5], "vibration"] = float("nan")
    assert violations(good) == [("vibration", "max_null_ratio", 5)]


def test_value_ranges(good):
    good.loc[good.index[:2], "volt"] = -1.0
    good.loc[good.index[2:5], "maintenance"] = 7
    assert sorted(violations(good)) == [("maintenance", "max", 3), ("volt", "min", 2)]


def test_duplicate_keys(good):
    frame = pd.concat([good, good.head(4)], ignore_index=True)
    assert violations(frame) == [("machine_id,timestamp", "unique", 4)]


def test_timestamps_in_the_future(good):
    good.loc[good.index[:3], "timestamp"] = NOW + pd.to_timedelta([30, 31, 32], unit="D")
    assert violations(good) == [("timestamp", "not_in_future", 3)]


def test_minimum_rows(good):
    assert violations(good.head(5)) == [("(dataset)", "min_rows", 5)]


def test_error_message_names_column_rule_count_and_puts_missing_columns_first(good):
    frame = good.drop(columns=["rotate"])
    frame.loc[frame.index[:2], "age"] = -3
    with pytest.raises(DataError) as err:
        validate(frame, CONTRACT, RULES, now=NOW).raise_for_violations()
    msg = err.value.message
    assert msg.startswith("rotate: rule 'required'")
    assert "age: min (2 offending)" in msg
    assert "Fix:" in msg
