"""Live performance of a regression: logged forecasts against the actuals that arrived later,
on the demand forecasting use case's data (composite key, value label)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from components.live_performance.logic import attach_labels
from esteira.features import EVENT_TS, entity_frame
from esteira.regression import NAIVE, forecast_metrics


def test_each_forecast_meets_the_actual_it_forecast_and_its_seasonal_naive(demand) -> None:
    _, contract, raw = demand
    rows = entity_frame(raw, contract, 24)
    rows = rows.loc[pd.to_datetime(rows[EVENT_TS]) >= pd.to_datetime(rows[EVENT_TS]).max()
                    - pd.Timedelta(days=20)].copy()  # fmt: skip
    rows[EVENT_TS] = pd.to_datetime(rows[EVENT_TS], utc=True)
    rows["prediction"] = 5.0
    rows["model_version"] = 1
    unknown = rows.iloc[:1].assign(**{EVENT_TS: rows[EVENT_TS].max() + pd.Timedelta(days=3)})
    labelled = attach_labels(pd.concat([rows, unknown], ignore_index=True), raw, contract)
    assert len(labelled) == len(rows)  # the forecast whose day has not come stays unlabelled

    # independently: the actual is the units of that store, item and day, the naive one the
    # units of the same weekday a week before
    units = raw.assign(day=pd.to_datetime(raw["date"], utc=True)).set_index(
        ["store_id", "item_id", "day"]
    )["units"]
    label = contract.label.name
    for row in labelled.sample(n=15, random_state=1).itertuples():
        assert getattr(row, label) == units[(row.store_id, row.item_id, row.event_timestamp)]
        week_ago = (row.store_id, row.item_id, row.event_timestamp - pd.Timedelta(days=7))
        assert getattr(row, NAIVE) == units.get(week_ago, np.nan) or np.isnan(getattr(row, NAIVE))

    scores = forecast_metrics(labelled[label], labelled["prediction"], labelled[NAIVE])
    known = labelled.loc[labelled[NAIVE].notna(), label].to_numpy()
    assert scores["rows"] == len(known) > 0
    assert scores["wape"] == pytest.approx(
        np.abs(known - 5.0).sum() / np.abs(known).sum(), rel=1e-12
    )
