"""Picking the best trial: the leaderboard's order, floats typed back, the winner's settings,
out-of-fold predictions and the HTML table."""

import pandas as pd
import pytest
from google.protobuf import json_format, struct_pb2

from components.pick_best import logic
from esteira.config import Settings
from esteira.errors import DataError

SPACE = {
    "gradient_boosting": {
        "max_iter": {"type": "int", "low": 10, "high": 300},
        "learning_rate": {"type": "float", "low": 0.01, "high": 0.3, "log": True},
        "max_leaf_nodes": {"type": "categorical", "choices": [15, 31]},
    }
}
SETTINGS = Settings.model_validate(
    {
        "model": {
            "hyperparameters": {"l2_regularization": 0.1},
            "search": {"enabled": True, "space": SPACE},
        }
    }
)


def trial(n, params, scores, fit=1.0):
    import numpy as np

    return {
        "trial": n,
        "params": params,
        "scores": scores,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "fit_seconds": fit,
    }


RESULTS = [
    {
        "batch": 0,
        "results": [
            trial(0, {"max_iter": 50, "learning_rate": 0.1, "max_leaf_nodes": 15}, [0.80, 0.82]),
            trial(1, {"max_iter": 120, "learning_rate": 0.05, "max_leaf_nodes": 31}, [0.86, 0.88]),
        ],
    },
    {
        "batch": 1,
        "results": [
            trial(2, {"max_iter": 200, "learning_rate": 0.2, "max_leaf_nodes": 15}, [0.84, 0.85]),
            trial(3, {"max_iter": 80, "learning_rate": 0.02, "max_leaf_nodes": 31}, [0.87, 0.87]),
        ],
    },
]


def collected(results):
    """What pick-best receives from dsl.Collected under kfp 2.17: every number a float."""
    out = []
    for r in results:
        s = struct_pb2.Struct()
        s.update(r)
        out.append(json_format.MessageToDict(s))
    return out


def test_the_winner_is_the_best_mean_cv_score_and_typed_back_from_floats():
    board = logic.pick(collected(RESULTS), SETTINGS.model)
    assert [r.trial for r in board.rows] == [3, 1, 2, 0]
    assert board.best.mean == max(r.mean for r in board.rows)
    assert board.best.params == {"max_iter": 80, "learning_rate": 0.02, "max_leaf_nodes": 31}
    assert type(board.best.params["max_iter"]) is int and type(board.best.trial) is int
    chosen = logic.winner_settings(SETTINGS, board)
    assert chosen.model.hyperparameters == {"l2_regularization": 0.1, **board.best.params}
    summary = logic.winner_summary(board, SETTINGS.model)
    assert summary["trial"] == 3 and summary["trials"] == 4 and summary["metric"] == "roc_auc"
    metrics = logic.metrics(board)
    assert metrics["best_cv_roc_auc"] == pytest.approx(0.87) and metrics["best_trial"] == 3
    assert metrics["best_cv_roc_auc"] == max(v for k, v in metrics.items() if k.endswith("_mean"))


def test_a_minimized_metric_ranks_the_lowest_first():
    rows = logic.collect(RESULTS, {})
    board = logic.leaderboard(rows, "rmse")
    assert board.best.trial == 0 and board.direction == "minimize"


def test_search_off_leaves_the_settings_as_they_are():
    off = Settings()
    board = logic.pick([{"batch": 0.0, "results": []}], off.model)
    assert board is None and logic.winner_settings(off, board) is off
    assert logic.winner_summary(board, off.model) == {} and "off" in logic.render_html(None)
    with pytest.raises(DataError):
        logic.pick([{"batch": 0, "results": []}], SETTINGS.model)


def test_the_winner_predictions_come_from_the_batch_that_ran_it():
    a = pd.DataFrame(
        {
            "row": [5, 6],
            "event_timestamp": [1, 2],
            "fold": [0, 1],
            "y": [0, 1],
            "trial_0": [0.1, 0.2],
        }
    )
    b = a.drop(columns="trial_0").assign(trial_3=[0.3, 0.9])
    oof = logic.winner_predictions([a, b], 3, "y")
    assert list(oof.columns) == ["row", "event_timestamp", "fold", "y", "prediction"]
    assert oof["prediction"].tolist() == [0.3, 0.9]
    with pytest.raises(DataError):
        logic.winner_predictions([a], 3, "y")


def test_the_html_leaderboard_lists_every_trial_best_first_with_params_mean_std_and_fit_time():
    board = logic.pick(collected(RESULTS), SETTINGS.model)
    page = logic.render_html(board)
    rows = page.split("<tr")[2:]
    assert len(rows) == 4 and "class=w" in rows[0] and "<td>3</td>" in rows[0]
    for header in (
        "trial",
        "learning_rate",
        "max_iter",
        "max_leaf_nodes",
        "CV roc_auc mean",
        "std",
        "fit seconds",
    ):
        assert f"<th>{header}</th>" in page
    assert "0.8700" in rows[0] and "0.0000" in rows[0] and "1.0" in rows[0]
