"""General contract mechanisms on the demand forecasting use case: composite and string keys,
lags, rolling windows, calendar, on-demand features, value labels, point in time."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import yaml

from esteira.contract import load_contract
from esteira.feast_repo import build_training_set
from esteira.features import EVENT_TS, label_frame
from testkit.demand import REPO, demand_store, generate

PLANTED = 99_999
BEFORE = 3_001  # below PLANTED / 28: a mean holding PLANTED is larger


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return generate(stores=2, items=3, days=60, seed=3)


def test_a_value_planted_at_or_after_the_row_time_never_reaches_the_row(tmp_path, raw) -> None:
    target = pd.Timestamp("2025-02-10", tz="UTC")  # the entity row's time: the day forecast
    key = (raw["store_id"] == 1) & (raw["item_id"] == 2)
    planted = raw.copy()
    planted.loc[key & (planted["date"] == target), "units"] = PLANTED  # the label row itself
    planted.loc[key & (planted["date"] == target + pd.Timedelta(days=3)), "units"] = PLANTED
    planted.loc[key & (planted["date"] == target - pd.Timedelta(days=1)), "units"] = BEFORE
    settings, contract = demand_store(tmp_path, planted)
    rows = label_frame(planted, contract, 24)
    row = rows[(rows["store_id"] == 1) & (rows["item_id"] == 2) & (rows[EVENT_TS] == target)]
    assert row["units_next_day"].tolist() == [PLANTED]  # the label is the day forecast
    features = build_training_set(row, settings).frame.iloc[0]
    lags = [f"units_lag_{k}" for k in (1, 2, 7, 14, 28)]
    rolling = ["units_mean_168h", "units_mean_672h"]
    assert features["units_lag_1"] == BEFORE  # the day before is known: it does reach the row
    assert features["units_mean_168h"] >= BEFORE / 7
    for name in lags + rolling:
        assert features[name] < PLANTED / 28, name  # never the planted value, nor in a mean
    assert features["day_of_week"] == target.dayofweek  # the calendar of the day forecast


def test_composite_keys_join_each_pair_and_on_demand_uses_the_request(demand) -> None:
    settings, contract, raw = demand
    rows = label_frame(raw, contract, 24)
    built = build_training_set(rows, settings)
    frame = built.frame
    assert built.dropped_share < 0.05
    assert frame.groupby(["store_id", "item_id"]).ngroups == 15
    day = frame[EVENT_TS].iloc[-1] - pd.Timedelta(days=1)
    one = frame[(frame[EVENT_TS] == day)].set_index(["store_id", "item_id"])
    raw_day = raw[raw["date"] == day - pd.Timedelta(days=1)].set_index(["store_id", "item_id"])
    pd.testing.assert_series_equal(
        one["units_lag_1"], raw_day["units"].astype(float).rename("units_lag_1")
    )
    ratio = frame["price"] / (frame["price_mean_672h"] + 1e-6)
    assert (frame["price_ratio_28d"] - ratio).abs().max() < 1e-9
    assert (frame["promo_now"] == frame["promo"]).all()


def test_string_keys_work_end_to_end(tmp_path, raw) -> None:
    def string_store(contract: dict) -> dict:
        contract["columns"]["store_id"] = {"dtype": "string"}
        return contract

    text = raw.assign(store_id="S" + raw["store_id"].astype(str))
    text["store_id"] = text["store_id"].astype("string")
    settings, contract = demand_store(tmp_path, text, string_store)
    rows = label_frame(text, contract, 24)
    frame = build_training_set(rows, settings).frame
    assert set(frame["store_id"]) == {"S1", "S2"}
    assert frame["units_lag_1"].notna().mean() > 0.9


def test_a_contract_names_its_kinds_and_rejects_what_does_not_fit(tmp_path) -> None:
    from esteira.errors import ConfigError

    contract = load_contract(REPO)
    assert contract.keys == ["store_id", "item_id"] and contract.task == "regression"
    data = yaml.safe_load((REPO / "dataset.yaml").read_text())
    data["label"] = {"name": "x", "kind": "value", "horizon_hours": 24}
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="label.kind 'value' needs `column`"):
        load_contract(tmp_path)
    shutil.rmtree(tmp_path)
