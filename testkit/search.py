"""A training set as the pipeline's build-training-set step gives it (features joined as
Feast would), for the search's tests and its benchmark."""

from __future__ import annotations

import pandas as pd

from esteira.contract import load_contract
from esteira.features import compute_feature_tables, label_frame
from testkit.pipeline import PM_REPO, generate_fleet

KEYS = ["machine_id", "event_timestamp"]


def training_frame(
    machines: int = 30, days: int = 90, seed: int = 42, repo: str = str(PM_REPO)
) -> tuple[pd.DataFrame, list[str], str, float]:
    """``(frame, feature names, label, label horizon hours)`` of a seeded demo fleet."""
    contract = load_contract(repo)
    raw = generate_fleet(machines=machines, days=days, seed=seed)
    tables = compute_feature_tables(raw, contract)
    frame = (
        label_frame(raw, contract, 6)
        .merge(tables["telemetry_agg"], on=KEYS)
        .merge(tables["event_history"], on=KEYS)
    )
    frame = frame.merge(
        tables["machine_attributes"].drop(columns="event_timestamp"), on="machine_id"
    )
    label = contract.label.name
    features = [c for c in frame.columns if c not in (*KEYS, label)]
    return frame, features, label, float(contract.label.horizon_hours)
