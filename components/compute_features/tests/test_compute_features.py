"""Feature computation checked against values computed by hand."""

import numpy as np
import pandas as pd
import pytest

from esteira.contract import load_contract
from esteira.features import compute_feature_tables, label_frame

CONTRACT = load_contract("feature_repo/predictive_maintenance")


def raw(hours: int = 30, failure_at: int | None = 20) -> pd.DataFrame:
    ts = pd.date_range("2025-01-01", periods=hours, freq="h", tz="UTC")
    frame = pd.DataFrame(
        {
            "timestamp": ts,
            "machine_id": 1,
            "model": "model1",
            "age": 5,
            "volt": np.arange(hours, dtype=float),
            "rotate": 400.0,
            "pressure": 100.0,
            "vibration": 40.0,
            "error_count": 0,
            "maintenance": 0,
            "failure": 0,
        }
    )
    frame.loc[3, "error_count"] = 2
    frame.loc[10, "maintenance"] = 1
    if failure_at is not None:
        frame.loc[failure_at, "failure"] = 1
    return frame


def test_rolling_windows_are_time_based_and_exact():
    table = compute_feature_tables(raw(), CONTRACT)["telemetry_agg"]
    row = table.iloc[10]  # volt values 8, 9, 10 in the last 3 hours
    assert row.volt_mean_3h == pytest.approx(9.0)
    assert row.volt_min_3h == 8.0 and row.volt_max_3h == 10.0
    assert row.volt_std_3h == pytest.approx(1.0)
    assert table.iloc[0].volt_std_3h == 0.0  # one reading: no spread, not NaN
    assert table.iloc[29].volt_mean_24h == pytest.approx(np.mean(np.arange(6, 30)))


def test_gaps_do_not_stretch_windows():
    frame = raw().drop(index=[8, 9])  # two hours missing
    table = compute_feature_tables(frame, CONTRACT)["telemetry_agg"].set_index("event_timestamp")
    at = pd.Timestamp("2025-01-01 10:00", tz="UTC")
    assert table.loc[at, "volt_mean_3h"] == 10.0  # only hour 10 is inside (07:00, 10:00]


def test_event_history():
    table = compute_feature_tables(raw(), CONTRACT)["event_history"]
    assert (
        table.iloc[2].hours_since_error_count == CONTRACT.features.events.since_cap_hours
    )  # none yet
    assert table.iloc[3].hours_since_error_count == 0
    assert table.iloc[7].hours_since_error_count == 4
    assert table.iloc[12].hours_since_maintenance == 2
    assert table.iloc[5].error_count_sum_24h == 2
    assert table.iloc[28].error_count_sum_24h == 0  # the error left the 24 h window


def test_static_table_has_one_row_per_change():
    frame = raw()
    frame.loc[15:, "model"] = "model5"
    table = compute_feature_tables(frame, CONTRACT)["machine_attributes"]
    assert table.model.tolist() == ["model1", "model5"]
    assert table.event_timestamp.tolist() == [frame.timestamp[0], frame.timestamp[15]]


def test_labels_look_ahead_exactly_the_horizon_and_drop_unknown_futures():
    frame = raw(hours=60, failure_at=30)
    labels = label_frame(frame, CONTRACT, sample_every_hours=1).set_index("event_timestamp")
    t = lambda h: frame.timestamp[h]  # noqa: E731
    assert labels.loc[t(6), "fails_24h"] == 1  # failure 24 h later: inside (t, t+24h]
    assert labels.loc[t(5), "fails_24h"] == 0  # 25 h later: outside
    assert labels.loc[t(29), "fails_24h"] == 1
    assert labels.loc[t(30), "fails_24h"] == 0  # the failure hour itself does not predict itself
    assert labels.index.max() == t(59 - 24)  # the last 24 h have no known label yet
    assert labels.loc[t(6), "volt_now"] == 6.0  # request-time values come from the raw reading


def test_sampling_keeps_one_row_per_bucket():
    labels = label_frame(raw(hours=60), CONTRACT, sample_every_hours=6)
    assert (labels.event_timestamp.dt.hour % 6 == 0).all()
    assert labels.event_timestamp.is_monotonic_increasing
