"""Training and evaluation on a small real training set (features joined as Feast would)."""

import io
import pickletools

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from components.train.logic import time_split, train_model
from esteira.config import ModelSettings
from esteira.contract import load_contract
from esteira.errors import ConfigError, DataError
from esteira.evaluation import evaluate, score
from esteira.features import compute_feature_tables, label_frame
from testkit.pipeline import generate_fleet

CONTRACT = load_contract("feature_repo/predictive_maintenance")


FAST = {"max_iter": 40}  # the default family, kept small: these tests check behaviour, not quality
FIXED = {"policy": "fixed"}  # no second fit for the threshold where it is not the point


@pytest.fixture(scope="module")
def training_frame() -> tuple[pd.DataFrame, list[str]]:
    raw = generate_fleet(machines=30, days=90, seed=42)
    tables = compute_feature_tables(raw, CONTRACT)
    keys = ["machine_id", "event_timestamp"]
    frame = (
        label_frame(raw, CONTRACT, 6)
        .merge(tables["telemetry_agg"], on=keys)
        .merge(tables["event_history"], on=keys)
    )
    frame = frame.merge(
        tables["machine_attributes"].drop(columns="event_timestamp"), on="machine_id"
    )
    features = [c for c in frame.columns if c not in (*keys, "fails_24h")]
    return frame, features


@pytest.fixture(scope="module")
def trained(training_frame):
    frame, features = training_frame
    return train_model(
        frame, features, "fails_24h", ModelSettings(hyperparameters=FAST), purge_hours=24
    )


def test_time_split_never_trains_on_the_future():
    ts = pd.date_range("2025-01-01", periods=100, freq="h", tz="UTC")
    frame = pd.DataFrame({"event_timestamp": ts, "x": range(100)})
    train, holdout, cut = time_split(frame, "event_timestamp", 0.2, pd.Timedelta(hours=24))
    assert train.event_timestamp.max() <= cut - pd.Timedelta(hours=24)
    assert holdout.event_timestamp.min() > cut
    assert len(holdout) == 20


@pytest.mark.parametrize("family", ["gradient_boosting", "random_forest", "logistic_regression"])
def test_each_family_learns_the_signal(training_frame, family):
    frame, features = training_frame
    cfg = ModelSettings(
        family=family,
        hyperparameters={"n_estimators": 40} if family == "random_forest" else {},
        threshold=FIXED,
    )
    result = train_model(frame, features, "fails_24h", cfg, purge_hours=24)
    assert result.categorical == ["model"]
    proba = result.model.predict_proba(result.holdout[features])[:, 1]
    assert roc_auc_score(result.holdout.fails_24h, proba) > 0.65  # 0.5 is chance


def test_training_is_reproducible(training_frame):
    frame, features = training_frame
    cfg = ModelSettings(
        hyperparameters=FAST, threshold={"policy": "fixed", "decision_threshold": 0.3}
    )
    first = train_model(frame, features, "fails_24h", cfg)
    a = first.model.predict_proba(frame[features].head(50))
    b = train_model(frame, features, "fails_24h", cfg).model.predict_proba(frame[features].head(50))
    np.testing.assert_array_equal(a, b)
    # policy fixed: the configured threshold, no validation slice
    assert first.threshold.decision_threshold == 0.3 and first.threshold.validation is None


def test_model_holds_only_allowlisted_classes(trained):
    """KServe's sklearn runtime unpickles sklearn/numpy/scipy/pandas classes only."""
    buf = io.BytesIO()
    joblib.dump(trained.model, buf)
    modules = {
        arg.split(" ")[0]
        for op, arg, _ in pickletools.genops(buf.getvalue())
        if op.name in ("GLOBAL", "STACK_GLOBAL") and arg
    }
    allowed = (
        "sklearn",
        "numpy",
        "scipy",
        "pandas",
        "joblib",
        "builtins",
        "copyreg",
        "collections",
        "_codecs",
    )
    assert all(m.split(".")[0] in allowed for m in modules), modules


def test_regression_task(training_frame):
    frame, features = training_frame
    cfg = ModelSettings(task="regression", family="gradient_boosting", hyperparameters=FAST)
    result = train_model(frame, features, "fails_24h", cfg)
    metrics = score(result.model, result.holdout, features, "fails_24h", cfg).metrics
    assert set(metrics) == {"rmse", "mae", "r2"} and metrics["rmse"] > 0


def test_unknown_hyperparameter_names_the_key(training_frame):
    frame, features = training_frame
    with pytest.raises(ConfigError) as err:
        train_model(frame, features, "fails_24h", ModelSettings(hyperparameters={"n_trees": 3}))
    assert err.value.field == "model.hyperparameters.n_trees"


def test_single_class_split_is_a_clear_error(training_frame):
    frame, features = training_frame
    with pytest.raises(DataError, match="one class only"):
        train_model(frame.assign(fails_24h=0), features, "fails_24h", ModelSettings())


def test_evaluation_metrics_curves_and_gate(training_frame, trained):
    _, features = training_frame
    cfg, result = ModelSettings(), trained
    ev = evaluate(result.model, result.holdout, features, "fails_24h", cfg, {"roc_auc": 0.6})
    proba = result.model.predict_proba(result.holdout[features])[:, 1]
    assert ev.metrics["roc_auc"] == pytest.approx(roc_auc_score(result.holdout.fails_24h, proba))
    assert ev.gate_passed and not ev.gate_failures
    assert sum(map(sum, ev.confusion)) == len(result.holdout)
    assert ev.roc["fpr"][0] == 0.0 and ev.roc["tpr"][-1] == 1.0 and len(ev.roc["fpr"]) <= 200
    assert all(0 <= t <= 1 for t in ev.roc["threshold"])
    impossible = evaluate(
        result.model, result.holdout, features, "fails_24h", cfg, {"roc_auc": 0.999}
    )
    assert not impossible.gate_passed and "roc_auc" in impossible.gate_failures[0]


def test_threshold_is_chosen_on_the_training_window_never_the_holdout(training_frame, trained):
    """Changing every hold-out label leaves the chosen decision_threshold as it was."""
    frame, features = training_frame
    choice = trained.threshold
    assert choice is not None and choice.policy == {
        "policy": "min_cost",
        "fn_cost": 20.0,
        "fp_cost": 1.0,
    }
    assert "validation slice" in choice.chosen_on and 0 < choice.decision_threshold < 1
    assert choice.decision_threshold != 0.5
    in_holdout = frame["event_timestamp"] > pd.Timestamp(trained.split_time)
    assert in_holdout.sum() == len(trained.holdout)
    flipped = frame.assign(fails_24h=np.where(in_holdout, 1 - frame.fails_24h, frame.fails_24h))
    again = train_model(
        flipped, features, "fails_24h", ModelSettings(hyperparameters=FAST), purge_hours=24
    )
    assert (again.holdout.fails_24h.to_numpy() != trained.holdout.fails_24h.to_numpy()).all()
    assert again.threshold.decision_threshold == choice.decision_threshold
    assert again.threshold.validation == choice.validation


def test_the_chosen_point_agrees_with_sklearn(training_frame, trained):
    """The report's chosen point: precision and recall of proba >= threshold, counted by sklearn."""
    from sklearn.metrics import precision_score, recall_score

    _, features = training_frame
    t = trained.threshold.decision_threshold
    ev = evaluate(trained.model, trained.holdout, features, "fails_24h", ModelSettings(), {}, t)
    y = trained.holdout.fails_24h.to_numpy()
    pred = (trained.model.predict_proba(trained.holdout[features])[:, 1] >= t).astype(int)
    chosen = ev.threshold["chosen"]
    assert chosen["threshold"] == t == ev.threshold["decision_threshold"]
    assert chosen["precision"] == pytest.approx(precision_score(y, pred, zero_division=0))
    assert chosen["recall"] == pytest.approx(recall_score(y, pred))
    assert ev.metrics["recall"] == pytest.approx(chosen["recall"])
    assert sum(ev.confusion[1]) == chosen["positives"] and ev.confusion[1][1] == chosen["tp"]
    assert any(row["threshold"] == t for row in ev.threshold["table"])
    assert {type(row[k]) for row in ev.threshold["table"] for k in ("tp", "fp", "fn")} == {int}
    assert ev.metrics["expected_cost"] == pytest.approx(
        1000 * (20 * chosen["fn"] + chosen["fp"]) / len(y)
    )


def test_with_a_search_the_threshold_comes_from_the_winners_out_of_fold_predictions(
    training_frame,
):
    """Out-of-fold predictions given: the policy runs on them (no validation fit), and the
    threshold is the one ``choose_threshold`` picks on exactly those rows."""
    from esteira.thresholds import choose_threshold

    frame, features = training_frame
    rng = np.random.default_rng(22)
    labels = rng.integers(0, 2, 400)
    oof = pd.DataFrame({"fails_24h": labels, "prediction": 0.6 * labels + 0.4 * rng.random(400)})
    cfg = ModelSettings(hyperparameters=FAST)
    result = train_model(frame, features, "fails_24h", cfg, purge_hours=24, search_predictions=oof)
    expected = choose_threshold(oof.fails_24h.to_numpy(), oof.prediction.to_numpy(), cfg.threshold)
    assert "out-of-fold" in result.threshold.chosen_on
    assert result.threshold.decision_threshold == expected.decision_threshold
    empty = train_model(
        frame, features, "fails_24h", cfg, purge_hours=24, search_predictions=oof.iloc[:0]
    )
    assert "validation slice" in empty.threshold.chosen_on
