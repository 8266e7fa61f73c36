"""Search trials on a small real training set: time-ordered folds inside the training window,
scores and out-of-fold predictions, and the hold-out never reaching them."""

import numpy as np
import pandas as pd
import pytest

from components.pick_best.logic import pick
from components.search_trials.logic import oof_frame, run_trials, time_folds, training_window
from components.train.logic import time_split
from esteira.config import ModelSettings
from esteira.errors import DataError
from esteira.search import plan_trials
from testkit.search import training_frame

# the linear family keeps these fast: they check behaviour, not quality
MODEL = ModelSettings(
    family="logistic_regression",
    search={"enabled": True, "trials": 3, "trials_per_task": 3, "folds": 3},
)


@pytest.fixture(scope="module")
def data():
    return training_frame(machines=20, days=60)


@pytest.fixture(scope="module")
def searched(data):
    frame, features, label, horizon = data
    return run_trials(frame, plan_trials(MODEL), features, label, MODEL, purge_hours=horizon)


def test_folds_fit_on_the_past_and_score_the_future_inside_the_training_window(data, searched):
    frame, _, label, horizon = data
    _, folds = searched
    train, holdout, cut = time_split(
        frame, "event_timestamp", MODEL.test_fraction, pd.Timedelta(hours=horizon)
    )
    ts = folds.window["event_timestamp"]
    assert len(folds.window) == len(train) and ts.max() <= cut - pd.Timedelta(hours=horizon)
    assert ts.max() < holdout["event_timestamp"].min()
    assert len(folds.splits) == 3
    previous_end = None
    for fit, val in folds.splits:
        assert ts.iloc[fit].max() <= ts.iloc[val].min() - pd.Timedelta(hours=horizon)
        if previous_end is not None:
            assert ts.iloc[val].min() > previous_end  # folds score successive blocks
        previous_end = ts.iloc[val].max()
        assert not set(fit) & set(val)


def test_every_trial_scores_every_fold_and_predicts_each_validation_row(data, searched):
    _, _, label, _ = data
    results, folds = searched
    assert [r.trial for r in results] == [0, 1, 2]
    for r in results:
        assert len(r.scores) == 3 and all(0.5 < s <= 1.0 for s in r.scores)
        assert r.mean == pytest.approx(np.mean(r.scores)) and r.fit_seconds > 0
        assert len(r.oof) == len(folds.validation)
    oof = oof_frame(folds, results, label)
    assert list(oof.columns) == [
        "row",
        "event_timestamp",
        "fold",
        label,
        "trial_0",
        "trial_1",
        "trial_2",
    ]
    assert oof["fold"].tolist() == sorted(oof["fold"])  # time order kept


def test_changing_the_holdout_labels_changes_neither_leaderboard_nor_chosen_params(data, searched):
    frame, features, label, horizon = data
    _, holdout, _ = time_split(
        frame, "event_timestamp", MODEL.test_fraction, pd.Timedelta(hours=horizon)
    )
    flipped = frame.copy()
    flipped.loc[holdout.index, label] = 1 - flipped.loc[holdout.index, label]
    assert (flipped[label] != frame[label]).sum() == len(holdout)

    def board(results):
        return pick([{"batch": 0, "results": [r.as_dict() for r in results]}], MODEL)

    again, _ = run_trials(flipped, plan_trials(MODEL), features, label, MODEL, purge_hours=horizon)
    before, after = board(searched[0]), board(again)
    assert [(r.trial, r.params, r.scores) for r in after.rows] == [
        (r.trial, r.params, r.scores) for r in before.rows
    ]
    assert after.best.params == before.best.params
    assert np.array_equal(again[0].oof, searched[0][0].oof)
    # the same change inside the training window does move the scores: the check can fail
    window = frame.index.difference(holdout.index)
    inside = frame.copy()
    inside.loc[window, label] = 1 - inside.loc[window, label]
    moved, _ = run_trials(
        inside, plan_trials(MODEL)[:1], features, label, MODEL, purge_hours=horizon
    )
    assert moved[0].scores != searched[0][0].scores


def test_too_many_folds_for_the_data_is_one_line(data):
    frame, features, label, horizon = data
    tiny = training_window(frame.head(300), MODEL, "event_timestamp", horizon)
    with pytest.raises(DataError) as err:
        time_folds(tiny, 8, label=label, task="classification", purge_hours=horizon)
    assert err.value.message.startswith("model.search.folds:") and "Fix:" in err.value.message
