"""The array path (``serving.fast_model``): the same numbers as the Pipeline, or not used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from components.train.logic import build_pipeline
from esteira.config import ModelSettings
from serving.fast_model import FastPipeline, TreeEnsemble, verified_array_path
from serving.predictor import FeatureSchema, Scorer

NUMERIC = [f"x{i}" for i in range(6)]


def _data(rows: int, seed: int = 0, missing: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(0, 10, (rows, len(NUMERIC))), columns=NUMERIC)
    frame["model"] = rng.choice(["model1", "model2", "model3"], rows)
    signal = frame["x0"] + 0.5 * frame["x1"] * (frame["model"] == "model2") - 0.3 * frame["x2"]
    if missing:  # NaN in training, so the trees learn a side for missing values
        frame.loc[frame.index % 9 == 0, "x3"] = np.nan
        signal = signal + frame["x3"].isna() * 8
    return frame, signal.to_numpy()


def _schema() -> FeatureSchema:
    return FeatureSchema.from_metadata(
        {
            "feature_names": [*NUMERIC, "model"],
            "feature_types": {**dict.fromkeys(NUMERIC, "float64"), "model": "string"},
            "categorical_features": ["model"],
        }
    )


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: frame[c].to_numpy() for c in frame.columns}


def _pipeline(task: str, family: str) -> tuple[object, pd.DataFrame]:
    frame, signal = _data(2000, missing=family == "gradient_boosting")
    # max_iter is a gradient-boosting parameter (the config refuses it for a random forest)
    fast = {"max_iter": 40} if family == "gradient_boosting" else {}
    cfg = ModelSettings(task=task, family=family, hyperparameters=fast)
    target = (signal > 0).astype(int) if task == "classification" else signal
    model = build_pipeline(cfg, NUMERIC, ["model"]).fit(frame, target)
    return model, frame


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_tree_walk_gives_sklearns_numbers_row_by_row(task: str) -> None:
    model, _ = _pipeline(task, "gradient_boosting")
    fast = verified_array_path(model, _schema(), task, lambda c: pd.DataFrame(c))
    assert fast is not None and fast.trees is not None
    assert any(any(tree[3]) for tree in fast.trees.trees)  # some node sends NaN left
    fresh, _ = _data(300, seed=1)
    fresh.loc[fresh.index % 4 == 0, "x3"] = np.nan
    fresh.loc[fresh.index % 5 == 0, "model"] = "model9"  # unseen category
    for i in range(len(fresh)):
        row = fresh.iloc[i : i + 1]
        if task == "classification":
            ours, theirs = fast.predict_proba(_columns(row)), model.predict_proba(row)
        else:
            ours, theirs = fast.predict(_columns(row)), model.predict(row)
        np.testing.assert_array_equal(ours, theirs)


def test_batches_above_the_walks_size_go_to_sklearn() -> None:
    model, _ = _pipeline("classification", "gradient_boosting")
    fast = verified_array_path(model, _schema(), "classification", lambda c: pd.DataFrame(c))
    assert fast is not None and fast.trees is not None
    fresh, _ = _data(TreeEnsemble.MAX_ROWS + 1, seed=2)
    walked = np.concatenate([fast.predict_proba(_columns(fresh.iloc[i : i + 1])) for i in range(9)])
    assert fast._walkable(_columns(fresh)) is None  # nine rows: sklearn's own walk
    assert fast._walkable(_columns(fresh.iloc[:8])) is not None
    np.testing.assert_allclose(fast.predict_proba(_columns(fresh)), walked, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "scaler",
    [StandardScaler(), StandardScaler(with_mean=False), StandardScaler(with_std=False)],
    ids=["center and scale", "scale only", "center only"],
)
def test_rows_for_the_walk_are_the_column_transformers_output(scaler: StandardScaler) -> None:
    frame, signal = _data(1000)
    prep = ColumnTransformer(
        [("numeric", scaler, NUMERIC), ("categorical", OneHotEncoder(
            handle_unknown="ignore", sparse_output=False), ["model"])],
        verbose_feature_names_out=False,
    )  # fmt: skip
    model = Pipeline([("prepare", prep), ("estimator", HistGradientBoostingClassifier(
        max_iter=20, random_state=0))]).fit(frame, (signal > 0).astype(int))  # fmt: skip
    fast = verified_array_path(model, _schema(), "classification", lambda c: pd.DataFrame(c))
    assert fast is not None and fast.trees is not None
    fresh, _ = _data(6, seed=3)
    fresh.loc[0, "model"] = "model9"
    columns = _columns(fresh)
    np.testing.assert_array_equal(np.array(fast.rows(columns, 6)), prep.transform(fresh))
    as_lists = {k: v.tolist() for k, v in columns.items()}  # what the predictor's parser gives
    np.testing.assert_array_equal(fast.predict_proba(as_lists), model.predict_proba(fresh))


@pytest.mark.parametrize(
    "estimator",
    [
        HistGradientBoostingClassifier(max_iter=5, categorical_features=[6]),
        RandomForestClassifier(n_estimators=3, random_state=0),
    ],
    ids=["categorical splits", "random forest"],
)
def test_models_the_walk_does_not_reproduce_are_not_compiled(estimator: object) -> None:
    frame, signal = _data(300, missing=False)
    matrix = frame[NUMERIC].to_numpy()
    matrix = np.column_stack([matrix, np.arange(len(frame)) % 3])
    estimator.fit(matrix, (signal > 0).astype(int))
    assert TreeEnsemble.compile(estimator) is None


def test_multiclass_boosting_is_not_compiled() -> None:
    frame, signal = _data(300, missing=False)
    estimator = HistGradientBoostingClassifier(max_iter=3).fit(
        frame[NUMERIC].to_numpy(), np.digitize(signal, [-5, 5])
    )
    assert TreeEnsemble.compile(estimator) is None


def test_regressor_walk_uses_the_models_link() -> None:
    frame, signal = _data(500, missing=False)
    estimator = HistGradientBoostingRegressor(max_iter=10, loss="poisson")
    matrix = frame[NUMERIC].to_numpy()
    estimator.fit(matrix, np.exp(signal / 20))
    trees = TreeEnsemble.compile(estimator)
    assert trees is not None
    matrix = matrix[:5]
    np.testing.assert_array_equal(trees.predict(matrix), estimator.predict(matrix))


def test_a_walk_that_disagrees_with_the_pipeline_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, _ = _pipeline("classification", "gradient_boosting")
    schema = _schema()
    monkeypatch.setattr(TreeEnsemble, "raw", lambda self, row: 0.0)
    assert verified_array_path(model, schema, "classification", lambda c: pd.DataFrame(c)) is None


def test_the_scorer_on_the_training_pipeline_takes_the_walk() -> None:
    model, frame = _pipeline("classification", "gradient_boosting")
    metadata = {"task": "classification", "decision_threshold": 0.5}
    scorer = Scorer(model, _schema(), metadata)
    assert scorer.path == "array path, tree walk"
    labels, proba = scorer.score(_columns(frame.iloc[:1]))
    np.testing.assert_array_equal(proba, model.predict_proba(frame.iloc[:1])[:, 1])
    np.testing.assert_array_equal(labels, model.predict(frame.iloc[:1]))


@pytest.mark.parametrize("family", ["logistic_regression", "random_forest"])
def test_other_families_keep_the_array_path_without_the_walk(family: str) -> None:
    model, frame = _pipeline("classification", family)
    fast = FastPipeline.compile(model, _schema())
    assert fast is not None and fast.trees is None
    verified = verified_array_path(model, _schema(), "classification", lambda c: pd.DataFrame(c))
    assert verified is not None
    np.testing.assert_allclose(
        verified.predict_proba(_columns(frame.iloc[:3])),
        model.predict_proba(frame.iloc[:3]),
        rtol=0,
        atol=1e-12,
    )
