"""The sentiment analysis use case up to a trained model: the review generator, the contract's
text feature and class label, the point-in-time product features, and the text pipeline."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import yaml

from esteira.config import Settings
from esteira.contract import Contract
from esteira.usecase import generate_data
from testkit.sentiment import REPO, USE_CASE, generate, sentiment_store

SMALL = {"products": 30, "days": 120, "reviews_per_day": 0.3, "seed": 5}


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return generate(**SMALL)


def test_same_seed_same_reviews_and_the_settings_choose_the_size(reviews) -> None:
    settings = Settings(use_case=USE_CASE)
    a, args = generate_data(settings, **SMALL)
    pd.testing.assert_frame_equal(a, reviews)
    assert args["products"] == 30 and args["period"] == "normal"
    assert not a.equals(generate_data(settings, **{**SMALL, "seed": 6})[0])
    assert not reviews.duplicated(["product_id", "reviewed_at"]).any()
    assert reviews["product_id"].nunique() > 20


def test_the_corpus_holds_what_the_docstring_promises(reviews) -> None:
    text = reviews["review_text"]
    words = text.str.split().str.len()
    assert words.min() == 1 and words.max() > 30  # one word to many sentences
    assert text.str.contains(r"\bnot\b|can't|never").mean() > 0.1  # negation
    assert text.str.contains(r"\bbut\b|[Aa]lthough").mean() > 0.15  # mixed reviews
    loans = "muito bom|genial|kaputt|schlecht|ruim|très bien|wunderbar|péssimo|nul|malo"
    assert text.str.contains(loans, case=False).mean() > 0.05  # loan words
    vocabulary = set(re.findall(r"[a-z]+", " ".join(text.str.lower())))
    assert {"reliable", "disappointing"} <= vocabulary
    assert len(vocabulary) > 400  # typos make many rare spellings
    # the documented label noise: stars follow the true polarity, the label is flipped for 7 %
    clear = reviews["stars"].isin([1, 5])  # neither mixed nor near 3
    disagree = (reviews.loc[clear, "stars"] == 5) != (reviews.loc[clear, "sentiment"] == 1)
    assert 0.03 < disagree.mean() < 0.12


def test_the_drifted_period_moves_length_vocabulary_and_class_mix(reviews) -> None:
    drifted = generate(**{**SMALL, "days": 60}, period="drifted", start="2025-06-01")
    stable = generate(**{**SMALL, "days": 60}, period="stable", start="2025-06-01")
    length = {n: f["review_text"].str.len().mean() for n, f in (("d", drifted), ("s", stable))}
    assert length["d"] > 1.2 * length["s"]
    assert drifted["sentiment"].mean() < stable["sentiment"].mean() - 0.05
    slang = "bussin|no cap|sus|mid|firmware|subscription"
    assert drifted["review_text"].str.contains(slang).mean() > 0.2
    assert stable["review_text"].str.contains(slang).mean() == 0


def _contract(edit) -> Contract:
    values = yaml.safe_load((REPO / "dataset.yaml").read_text())
    return Contract.model_validate(edit(values))


def test_the_contract_keeps_text_and_numbers_apart() -> None:
    def text_on_a_number(v: dict) -> dict:
        v["request"] = {"review_text": "stars"}
        return v

    with pytest.raises(ValueError, match="must be a string"):
        _contract(text_on_a_number)

    def text_not_named(v: dict) -> dict:
        v["features"].pop("text")
        return v

    with pytest.raises(ValueError, match="name it under features.text"):
        _contract(text_not_named)

    def class_without_column(v: dict) -> dict:
        v["label"].pop("column")
        return v

    with pytest.raises(ValueError, match="needs `column`"):
        _contract(class_without_column)
    contract = _contract(lambda v: v)
    assert contract.task == "classification"
    assert contract.text_features == ["review"] and contract.text_requests == ["review_text"]


@pytest.fixture(scope="module")
def training(reviews, tmp_path_factory):
    from esteira.feast_repo import build_training_set
    from esteira.features import label_frame

    root = tmp_path_factory.mktemp("sentiment-data")
    settings, contract = sentiment_store(root, reviews, features={"max_dropped_share": 0.2})
    labels = label_frame(reviews, contract, 24)
    return settings, contract, labels, build_training_set(labels, settings)


def test_every_review_is_a_row_with_its_own_label_and_text(reviews, training) -> None:
    _, contract, labels, _ = training
    assert len(labels) == len(reviews)  # a class label: no sampling
    assert labels[contract.label.name].dtype == np.int64
    assert labels["review_text"].map(type).eq(str).all()
    joined = labels.merge(
        reviews.rename(columns={"reviewed_at": "event_timestamp"}),
        on=["product_id", "event_timestamp"],
    )
    assert (joined["positive"] == joined["sentiment"]).all()
    assert (joined["review_text_x"] == joined["review_text_y"]).all()


def test_product_figures_are_point_in_time_and_never_see_the_review_itself(
    reviews, training
) -> None:
    _, _, _, built = training
    frame = built.frame
    assert built.feature_names[-1] == "review" and frame["review"].map(type).eq(str).all()
    product = frame["product_id"].value_counts().index[0]
    mine = frame.loc[frame["product_id"] == product].sort_values("event_timestamp")
    raw = reviews.loc[reviews["product_id"] == product].sort_values("reviewed_at")
    for row in mine.tail(5).itertuples():
        # reviews known (posted + 1 h) by this one's time, within the 90-day window
        known = raw.loc[raw["reviewed_at"] + pd.Timedelta(hours=1) <= row.event_timestamp]
        last = known["reviewed_at"].max()
        window = known.loc[known["reviewed_at"] > last - pd.Timedelta(hours=2160)]
        assert row.stars_count_2160h == len(window)
        assert row.stars_mean_2160h == pytest.approx(window["stars"].mean())
    assert built.dropped_rows <= reviews["product_id"].nunique() * 2  # a product's first reviews


def test_the_text_pipeline_trains_scores_and_loads_through_the_allowlist(training) -> None:
    from components.train.logic import train_step
    from esteira.evaluation import score
    from esteira.safe_load import dump_model, load_model

    settings, contract, _, built = training
    result, info = train_step(built.frame, built.feature_names, contract, settings)
    assert info["text"] == ["review"] and "review" not in info["categorical"]
    prep = result.model.named_steps["prepare"]
    analyzers = sorted(t.analyzer for _, t, _ in prep.transformers_ if hasattr(t, "analyzer"))
    assert analyzers == ["char_wb", "word"]
    metrics = score(
        result.model, result.holdout, built.feature_names, "positive", settings.model
    ).metrics
    assert 0.6 < metrics["macro_f1"] < 0.97 and 0.6 < metrics["accuracy"] < 0.97
    loaded = load_model(dump_model(result.model))
    sample = result.holdout[built.feature_names].head(20)
    np.testing.assert_array_equal(loaded.predict_proba(sample), result.model.predict_proba(sample))
    flipped = pd.DataFrame({**sample.iloc[[0]].to_dict("list"), "review": ["Awful, it broke."]})
    assert loaded.predict_proba(flipped)[0, 1] < 0.5


def test_the_search_trials_vectorise_the_text_too(training) -> None:
    from components.search_trials.logic import run_trials
    from esteira.search import plan_trials

    settings, contract, _, built = training
    model = settings.model.model_copy(
        update={"search": {"enabled": True, "trials": 1, "trials_per_task": 1, "folds": 2}}
    )
    model = type(model).model_validate(model.model_dump())
    (result,), _ = run_trials(
        built.frame,
        plan_trials(model)[:1],
        built.feature_names,
        contract.label.name,
        model,
        text=contract.text_features,
    )
    assert min(result.scores) > 0.8  # ROC AUC: the words carry it; one-hot texts would not
