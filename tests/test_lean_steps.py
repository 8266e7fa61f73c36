"""The lean single-node steps give the very tables and model the straightforward code gives.

compute-features works block by block of whole entities from a narrow read, and the
as-of join reads a source's feature columns only for the rows it matches (issue 25).
Here both are compared, on small data, with a straightforward computation kept in this
file: the whole frame at once, and the join on the whole source as it was written before.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

import esteira.feast_store as feast_store
import esteira.features as features
from esteira.feast_repo import (
    apply_definitions,
    build_training_set,
    compute_and_publish,
    publish_sources,
)
from esteira.features import compute_feature_tables, label_frame
from esteira.parquet import read_parquet, read_parquet_between, read_parquet_narrow
from testkit.pipeline import generate_fleet, small_workspace


def whole_source_join(left, view, wanted, entity_ts, repo_path, full_feature_names):
    """The as-of join of one view on the whole source, as esteira did before issue 25."""
    source = view.batch_source
    reverse = {v: k for k, v in (source.field_mapping or {}).items()}
    join_keys = [view.projection.join_key_map.get(c.name, c.name) for c in view.entity_columns]
    source_keys = [c.name for c in view.entity_columns]
    ts = source.timestamp_field
    created = source.created_timestamp_column or None
    columns = [*source_keys, ts, *([created] if created else []), *wanted]
    right = feast_store.read_source(source, repo_path, [reverse.get(c, c) for c in columns])
    right = right.rename(columns=source.field_mapping or {})
    right = right.rename(columns=dict(zip(source_keys, join_keys, strict=True)))
    names = {
        f: f"{view.projection.name_to_use()}__{f}" if full_feature_names else f for f in wanted
    }
    right = right.rename(columns={ts: feast_store._TS, **names})
    right[feast_store._TS] = feast_store._utc(right[feast_store._TS])
    order = [feast_store._TS, created] if created else [feast_store._TS]
    right = right.sort_values(order, kind="stable").drop(columns=[created] if created else [])
    for key in join_keys:
        if right[key].dtype != left[key].dtype:
            right[key] = right[key].astype(left[key].dtype)
    ttl = view.ttl if view.ttl and view.ttl > timedelta(0) else None
    joined = pd.merge_asof(
        left,
        right,
        left_on=entity_ts,
        right_on=feast_store._TS,
        by=join_keys,
        direction="backward",
        tolerance=ttl,
    )
    known = pd.MultiIndex.from_frame(joined[join_keys]).isin(
        pd.MultiIndex.from_frame(right[join_keys].drop_duplicates())
    )
    joined = joined.loc[joined[feast_store._TS].notna() | ~known]
    return joined.drop(columns=[feast_store._TS]).reset_index(drop=True)


@pytest.fixture(scope="module")
def lean_and_reference(tmp_path_factory):
    """A small fleet through both paths: (lean, reference) training sets, settings, contract."""
    from esteira.contract import load_contract

    root = tmp_path_factory.mktemp("lean")
    settings = small_workspace(root, machines=12, days=60)
    contract = load_contract(settings.features.repo_path)
    raw = read_parquet(settings.data.source_uri)
    apply_definitions(settings)

    publish_sources(compute_feature_tables(raw, contract), settings)
    entities = label_frame(raw, contract, settings.features.sample_every_hours)
    saved = feast_store._join_view
    feast_store._join_view = whole_source_join
    try:
        reference = build_training_set(entities, settings)
    finally:
        feast_store._join_view = saved

    # blocks of 3 machines (1,440 rows each), so the block boundaries are exercised
    features.BLOCK_ROWS, saved_rows = 3 * 60 * 24, features.BLOCK_ROWS
    try:
        published, lean_entities = compute_and_publish(settings.data.source_uri, contract, settings)
    finally:
        features.BLOCK_ROWS = saved_rows
    lean = build_training_set(lean_entities, settings)
    return {
        "settings": settings,
        "contract": contract,
        "raw": raw,
        "entities": (lean_entities, entities),
        "published": published,
        "training": (lean, reference),
    }


def test_blocks_publish_the_whole_frames_tables_and_labels(lean_and_reference):
    case = lean_and_reference
    lean_entities, entities = case["entities"]
    pd.testing.assert_frame_equal(lean_entities, entities, check_exact=True)
    tables = compute_feature_tables(case["raw"], case["contract"])
    assert set(case["published"]) == set(tables)
    for table, uri in case["published"].items():
        pd.testing.assert_frame_equal(read_parquet(uri), tables[table], check_exact=True)


def test_the_training_set_and_model_are_unchanged(lean_and_reference):
    from components.train.logic import train_step
    from esteira.evaluation import score

    case = lean_and_reference
    lean, reference = case["training"]
    assert len(reference.frame) > 1000
    pd.testing.assert_frame_equal(lean.frame, reference.frame, check_exact=True)
    assert lean.dropped_by_ttl == reference.dropped_by_ttl

    aucs = []
    for built in (lean, reference):
        result, info = train_step(
            built.frame, built.feature_names, case["contract"], case["settings"]
        )
        scored = score(
            result.model,
            result.holdout,
            info["feature_names"],
            info["label"],
            case["settings"].model,
            info["decision_threshold"],
        )
        aucs.append(scored.metrics["roc_auc"])
    assert aucs[0] == pytest.approx(aucs[1], abs=1e-9)


def test_blocks_with_composite_keys_lags_calendar_and_value_labels(tmp_path, monkeypatch):
    """The demand use case (two key columns, lags, calendar, a value label) block by block."""
    from testkit.demand import demand_store, generate

    raw = generate(stores=2, items=3, days=50)
    settings, contract = demand_store(tmp_path, raw)
    path = tmp_path / "raw.parquet"
    raw.to_parquet(path, index=False)
    monkeypatch.setattr(features, "BLOCK_ROWS", 120)  # a few series per block
    published, rows = compute_and_publish(str(path), contract, settings)
    whole = compute_feature_tables(raw, contract)
    for table, uri in published.items():
        pd.testing.assert_frame_equal(read_parquet(uri), whole[table], check_exact=True)
    pd.testing.assert_frame_equal(rows, label_frame(raw, contract, 6), check_exact=True)


def test_narrow_and_windowed_reads_match_read_parquet(tmp_path):
    frame = generate_fleet(machines=3, days=3, seed=1)
    path = tmp_path / "fleet.parquet"
    frame.to_parquet(path, index=False)
    narrow, dtypes = read_parquet_narrow(path, ["machine_id", "model", "volt"])
    assert isinstance(narrow["model"].dtype, pd.CategoricalDtype)
    widened = narrow.astype({"model": dtypes["model"]})
    pd.testing.assert_frame_equal(widened, frame[["machine_id", "model", "volt"]])
    low, high = frame.timestamp.iloc[10], frame.timestamp.iloc[30]
    window = read_parquet_between(path, ["machine_id", "volt"], "timestamp", low, high)
    expected = frame.loc[frame.timestamp.between(low, high), ["machine_id", "volt"]]
    pd.testing.assert_frame_equal(window, expected.reset_index(drop=True))


def whole_frame_train(frame, feature_names, label, cfg, purge_hours):
    """The train step's fits as they were before issue 25: whole-table copies for the split,
    the threshold's validation slice and each fit. ``(model, hold-out, decision_threshold)``."""
    from components.train.logic import build_pipeline
    from esteira.thresholds import choose_threshold

    purge = pd.Timedelta(hours=purge_hours)

    def split(part, fraction):
        cut = part["event_timestamp"].quantile(1 - fraction)
        return part[part.event_timestamp <= cut - purge], part[part.event_timestamp > cut]

    train, holdout = split(frame, cfg.test_fraction)
    categorical = [c for c in feature_names if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in feature_names if c not in categorical]
    fit, validation = split(train, cfg.threshold.validation_fraction)
    model = build_pipeline(cfg, numeric, categorical).fit(fit[feature_names], fit[label])
    proba = model.predict_proba(validation[feature_names])[:, 1]
    choice = choose_threshold(validation[label].to_numpy(), proba, cfg.threshold)
    model = build_pipeline(cfg, numeric, categorical).fit(train[feature_names], train[label])
    return model, holdout, choice.decision_threshold


def test_the_lean_train_step_fits_the_very_model_of_the_whole_frame_code(lean_and_reference):
    """train takes each fit's feature columns straight from the training set (no copies of
    the whole table): the same hold-out, threshold and predictions as the copying code."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from components.train.logic import train_step

    case = lean_and_reference
    built = case["training"][0]
    # early stopping draws its own validation rows by position: a change of row order shows
    hyperparameters = {"early_stopping": True, "max_iter": 60}
    model_cfg = case["settings"].model.model_copy(update={"hyperparameters": hyperparameters})
    settings = case["settings"].model_copy(update={"model": model_cfg})
    assert settings.model.family == "gradient_boosting"
    assert settings.model.threshold.policy != "fixed"  # the validation fit runs too
    result, info = train_step(built.frame, built.feature_names, case["contract"], settings)
    model, holdout, threshold = whole_frame_train(
        built.frame,
        built.feature_names,
        info["label"],
        settings.model,
        case["contract"].label.horizon_hours,
    )
    pd.testing.assert_frame_equal(result.holdout, holdout, check_exact=True)
    assert info["decision_threshold"] == threshold
    lean_proba = result.model.predict_proba(holdout[built.feature_names])[:, 1]
    proba = model.predict_proba(holdout[built.feature_names])[:, 1]
    np.testing.assert_array_equal(lean_proba, proba)
    y = holdout[info["label"]]
    assert roc_auc_score(y, lean_proba) == pytest.approx(roc_auc_score(y, proba), abs=1e-9)
    assert info["training_rows"] + len(holdout) < len(built.frame)  # the purge gap is out
    assert len(result.train) == info["training_rows"]  # copied only when asked
    assert result.train.event_timestamp.max() < holdout.event_timestamp.min()
