"""The demand forecasting use case's seeded generator (feature_repo/demand_forecasting/generator.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from esteira.config import Settings
from esteira.usecase import UseCaseError, generate_data, generator_module, load

USE_CASE = "demand_forecasting"


@pytest.fixture(scope="module")
def generator():
    return generator_module(load(USE_CASE))


def test_same_seed_same_rows_and_the_settings_choose_the_size(generator) -> None:
    settings = Settings(use_case=USE_CASE)
    a, args = generate_data(settings, stores=3, items=5, days=40, seed=3)
    b, _ = generate_data(settings, stores=3, items=5, days=40, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert args == {
        "days": 40,
        "start": "2024-09-01",
        "seed": 3,
        "period": "normal",
        "stores": 3,
        "items": 5,
    }
    assert not a.equals(generate_data(settings, stores=3, items=5, days=40, seed=4)[0])
    assert a.groupby(["store_id", "item_id"]).ngroups <= 15
    assert not a.duplicated(["date", "store_id", "item_id"]).any()


def test_the_series_show_what_the_docstring_promises(generator) -> None:
    frame = generator.generate(stores=4, items=40, days=365, seed=11)
    assert frame["units"].min() >= 0 and (frame["units"] == 0).mean() > 0.02  # stock-outs
    closed = frame["date"].dt.month.eq(12) & frame["date"].dt.day.eq(25)
    assert frame.loc[closed, "units"].eq(0).all()
    launches = frame.groupby("item_id")["date"].min()
    assert (launches > launches.min()).any()  # new items with a short history
    promo = frame.groupby("promo")["units"].mean()
    assert promo[1] > promo[0]  # promotions sell
    weekly = frame.groupby(frame["date"].dt.dayofweek)["units"].mean()
    assert weekly.max() / weekly.min() > 1.1  # weekly seasonality


def test_the_drifted_period_moves_prices_and_demand(generator) -> None:
    kw = {"stores": 6, "items": 20, "days": 30, "start": "2026-01-05", "seed": 5}
    stable = generator.generate(period="stable", **kw)
    drifted = generator.generate(period="drifted", **kw)
    assert drifted["price"].mean() > 1.1 * stable["price"].mean()
    assert drifted["promo"].mean() > stable["promo"].mean()


def test_a_generator_parameter_it_does_not_take_is_one_clear_line() -> None:
    with pytest.raises(UseCaseError, match=r"data.generator: \['machines'\] are not parameters"):
        generate_data(Settings(use_case=USE_CASE), machines=3)


def test_a_later_period_continues_the_prices_where_training_left_them(generator) -> None:
    kw = {"stores": 2, "items": 30, "seed": 5}
    before = generator.generate(days=200, start="2025-01-01", **kw)
    after = generator.generate(days=30, start="2025-07-20", period="stable", **kw)
    regular = ["store_id", "item_id"]  # the shelf price of days without a promotion

    def shelf(frame: pd.DataFrame, pick: str) -> pd.Series:
        return frame.loc[frame["promo"] == 0].groupby(regular)["price"].agg(pick)

    last = shelf(before.loc[before["date"] >= "2025-07-10"], "last")
    first = shelf(after.loc[after["date"] < "2025-07-25"], "first")
    both = last.index.intersection(first.index)
    assert len(both) > 20
    # a price step may fall on a boundary day for a few items, not a reset for all
    assert (last[both] == first[both]).mean() > 0.8
