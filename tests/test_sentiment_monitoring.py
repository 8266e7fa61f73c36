"""Monitoring request-time text: drift by length, out-of-vocabulary rate and the mix of
predicted classes (esteira/text_drift.py, as register and drift-check use it), and live
accuracy from labels that arrive later (a ``class`` label)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from esteira.config import MonitoringSettings, Settings
from esteira.drift import compare, summarize_reference
from esteira.text_drift import current_frame, reference_additions, signals, with_signals
from testkit.sentiment import generate

SIZE = {"products": 40, "reviews_per_day": 0.3, "seed": 8}
FEATURES = ["stars_mean_2160h", "review"]  # a number beside the text


def _frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Rows as the model sees them (a product figure and the text), in time order."""
    mean = raw.groupby("product_id")["stars"].transform("mean")
    return pd.DataFrame({"stars_mean_2160h": mean, "review": raw["review_text"].astype(object)})


@pytest.fixture(scope="module")
def trained():
    from components.train.logic import build_pipeline

    raw = generate(days=120, **SIZE)
    frame = _frame(raw)
    model = build_pipeline(
        Settings(use_case="sentiment_analysis").model, FEATURES[:1], [], ["review"]
    )
    model.fit(frame[FEATURES], raw["sentiment"])
    profiled, names, extra = reference_additions(model, frame, FEATURES, ["review"])
    reference = json.loads(json.dumps(summarize_reference(profiled, names) | extra))
    return model, frame, names, reference


def test_signals_are_length_and_the_share_of_unknown_words() -> None:
    texts = pd.Series(["good good", "gud stuff", "", "42 !"], name="review")
    got = signals(texts, {"good", "stuff"})
    assert got["review_chars"].tolist() == [9.0, 9.0, 0.0, 4.0]
    assert got["review_oov_rate"].tolist()[:2] == [0.0, 0.5]
    assert got["review_oov_rate"].iloc[2:].isna().all()  # no words: no rate
    frame, names = with_signals(
        pd.DataFrame({"a": [1.0] * 4, "review": texts}), ["review", "a"], ["review"], {}
    )
    assert names == ["review_chars", "review_oov_rate", "a"]
    assert frame["review_oov_rate"].iloc[:2].tolist() == [1.0, 1.0]  # no vocabulary


def test_the_reference_profiles_signals_out_of_sample_and_the_predicted_classes(trained) -> None:
    _, frame, names, reference = trained
    assert names == ["stars_mean_2160h", "review_chars", "review_oov_rate", "prediction"]
    vocabulary = reference["text_vocabulary"]["review"]
    assert "great" in vocabulary and len(vocabulary) > 100
    profile = reference["features"]
    assert profile["review_oov_rate"]["count"] == len(frame) - len(frame) // 2  # later half
    assert set(profile["prediction"]["counts"]) == {"0", "1"}


def _logged(model, raw: pd.DataFrame) -> pd.DataFrame:
    frame = _frame(raw)
    return frame.assign(prediction=model.predict(frame[FEATURES]).astype("int64"))


@pytest.mark.parametrize(("period", "drifts"), [("stable", False), ("drifted", True)])
def test_the_drifted_period_moves_text_and_predictions_the_stable_one_does_not(
    trained, period, drifts
) -> None:
    model, _, _, reference = trained
    raw = generate(days=40, start="2025-05-01", period=period, **SIZE)
    current, names = current_frame(_logged(model, raw), FEATURES, ["review"], reference)
    report = compare(reference, current, MonitoringSettings(), names)
    assert names == ["stars_mean_2160h", "review_chars", "review_oov_rate", "prediction"]
    text = {"review_chars", "review_oov_rate"}
    assert bool(text & set(report.significant_features)) is drifts, report.drifted_features
    assert ("prediction" in report.drifted_features) is drifts
    if drifts:
        assert report.drift_detected
        assert (
            report.feature("review_chars").statistics["current_mean"]
            > 1.2 * (report.feature("review_chars").statistics["reference_mean"])
        )


def test_class_labels_join_the_logged_rows_by_key_and_time() -> None:
    from components.live_performance.logic import attach_labels, classification_metrics
    from esteira.contract import load_contract
    from testkit.sentiment import REPO

    contract = load_contract(REPO)
    raw = generate(products=5, days=20, reviews_per_day=1.0, seed=2)
    logged = pd.DataFrame(
        {
            "product_id": raw["product_id"].to_numpy(),
            "event_timestamp": raw["reviewed_at"].to_numpy(),
            "probability": np.linspace(0, 1, len(raw)),
        }
    ).iloc[::2]
    late = raw.iloc[: len(raw) // 2]  # the labels that arrived so far
    joined = attach_labels(logged, late, contract)
    assert 0 < len(joined) <= len(late) // 2 + 1
    mine = raw.set_index(["product_id", "reviewed_at"])["sentiment"]
    keys = list(zip(joined["product_id"], joined["event_timestamp"], strict=True))
    assert joined["positive"].tolist() == [int(mine.loc[k]) for k in keys]
    y = joined["positive"].to_numpy()
    metrics = classification_metrics(y, joined["probability"].to_numpy(), y)
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == pytest.approx(1.0)
