"""The model card's figures against independent computations on small sets, and its pages."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LinearRegression, LogisticRegression

from esteira import model_card


@pytest.fixture(scope="module")
def classified():
    """400 rows: x_strong decides most, x_weak a little, x_noise nothing; a fitted model."""
    rng = np.random.default_rng(3)
    n = 400
    frame = pd.DataFrame(
        {
            "x_strong": rng.normal(size=n),
            "x_weak": rng.normal(size=n),
            "x_noise": rng.normal(size=n),
            "group": rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2]),
        }
    )
    logit = 2.0 * frame.x_strong + 0.5 * frame.x_weak - 1.0
    frame["y"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    features = ["x_strong", "x_weak", "x_noise"]
    model = LogisticRegression().fit(frame[features], frame.y)
    proba = model.predict_proba(frame[features])[:, 1]
    return frame, features, model, proba


def test_bootstrap_interval_matches_scipy_and_the_normal_approximation():
    rng = np.random.default_rng(0)
    y = rng.normal(10, 2, 80)
    s = y + rng.normal(0, 1.5, 80)
    mae = model_card.metric_functions("regression")["mae"]
    low, high = model_card.bootstrap_ci(mae, y, s, resamples=3000, confidence=0.9, seed=1)
    ref = stats.bootstrap(
        (y, s),
        lambda a, b: np.abs(a - b).mean(),
        paired=True,
        vectorized=False,
        n_resamples=3000,
        confidence_level=0.9,
        method="percentile",
        random_state=7,
    ).confidence_interval
    width = ref.high - ref.low
    assert low == pytest.approx(ref.low, abs=0.1 * width)
    assert high == pytest.approx(ref.high, abs=0.1 * width)
    # the MAE is a mean: its interval is close to mean +- z * sd / sqrt(n)
    errors = np.abs(y - s)
    half = stats.norm.ppf(0.95) * errors.std(ddof=1) / np.sqrt(len(errors))
    assert low == pytest.approx(errors.mean() - half, abs=0.15 * width)
    assert high == pytest.approx(errors.mean() + half, abs=0.15 * width)
    assert low < mae(y, s) < high


def test_bootstrap_skips_undefined_resamples_and_gives_up_when_most_are():
    auc = model_card.metric_functions("classification")["roc_auc"]
    y, s = np.array([0, 0, 0, 0, 0, 0, 0, 1]), np.linspace(0, 1, 8)
    low, high = model_card.bootstrap_ci(auc, y, s, resamples=200, seed=0)
    assert low is not None and 0 <= low <= high <= 1  # resamples without the 1 are skipped
    assert model_card.bootstrap_ci(auc, np.zeros(8), s, resamples=50) == (None, None)


def test_slice_metrics_equal_a_groupby_by_hand(classified):
    frame, _, _, proba = classified
    fns = model_card.metric_functions("classification", decision_threshold=0.4)
    slices = model_card.slice_metrics(frame.group, frame.y.to_numpy(), proba, fns)
    assert [s["value"] for s in slices] == ["a", "b", "c"]  # largest first
    for item in slices:
        mask = (frame.group == item["value"]).to_numpy()
        y, p = frame.y.to_numpy()[mask], proba[mask]
        assert item["rows"] == mask.sum()
        assert item["label_mean"] == pytest.approx(y.mean())
        assert item["metrics"]["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
        assert item["metrics"]["recall"] == pytest.approx(skm.recall_score(y, p >= 0.4))
        assert item["metrics"]["f1"] == pytest.approx(skm.f1_score(y, p >= 0.4))
    assert sum(s["rows"] for s in slices) == len(frame)


def test_permutation_importance_matches_a_shuffle_loop_by_hand(classified):
    frame, features, model, _ = classified
    y = frame.y.to_numpy()
    got = model_card.permutation_importances(
        model, frame[features], y, "classification", repeats=12, seed=0
    )
    base = skm.roc_auc_score(y, model.predict_proba(frame[features])[:, 1])
    rng = np.random.default_rng(123)
    by_hand = {}
    for name in features:
        drops = []
        for _ in range(12):
            shuffled = frame[features].copy()
            shuffled[name] = rng.permutation(shuffled[name].to_numpy())
            drops.append(base - skm.roc_auc_score(y, model.predict_proba(shuffled)[:, 1]))
        by_hand[name] = float(np.mean(drops))
    assert [r["feature"] for r in got] == sorted(features, key=lambda f: -by_hand[f])
    for row in got:
        assert row["mean"] == pytest.approx(by_hand[row["feature"]], abs=0.025)
    assert got[0]["feature"] == "x_strong" and got[0]["mean"] > 0.2
    regression = LinearRegression().fit(frame[features], 3 * frame.x_strong)
    reg = model_card.permutation_importances(
        regression, frame[features], 3 * frame.x_strong.to_numpy(), "regression", repeats=5
    )
    # minus MAE: shuffling x_strong costs about E|3(a - b)| for a, b ~ N(0, 1): 3 * 2 / sqrt(pi)
    assert reg[0]["feature"] == "x_strong"
    assert reg[0]["mean"] == pytest.approx(6 / np.sqrt(np.pi), rel=0.15)


def test_calibration_matches_sklearn_and_its_errors_by_hand(classified):
    frame, _, _, proba = classified
    y = frame.y.to_numpy()
    got = model_card.calibration(y, proba, bins=10)
    observed, predicted = calibration_curve(y, proba, n_bins=10, strategy="uniform")
    assert [b["observed"] for b in got["bins"]] == pytest.approx(list(observed))
    assert [b["predicted"] for b in got["bins"]] == pytest.approx(list(predicted))
    assert sum(b["rows"] for b in got["bins"]) == len(y)
    assert got["brier"] == pytest.approx(skm.brier_score_loss(y, proba))
    ece = sum(b["rows"] * abs(b["observed"] - b["predicted"]) for b in got["bins"]) / len(y)
    assert got["ece"] == pytest.approx(ece)


def _card(classified, task="classification"):
    frame, features, model, _ = classified
    settings = SimpleNamespace(
        confidence=0.95,
        bootstrap=50,
        slice_column="group",
        importance_rows=300,
        importance_repeats=2,
        calibration_bins=5,
    )
    computed = model_card.compute(
        model,
        frame,
        features=features,
        label="y",
        task=task,
        decision_threshold=0.4,
        card=settings,
    )
    return model_card.build(
        name="m",
        version=3,
        metadata={"task": task, "family": "logistic_regression", "label": "y"}
        | {"feature_names": features, "feature_service": "svc", "data_hash": "sha256:ab"},
        computed=computed,
        intended_use="Rank <risky> rows.",
        limitations=["only **test** data"],
        data={"source_uri": "dvc://repo?path=x.csv&rev=v1", "git_rev": "83b7", "rows": 400},
        gate={"passed": True, "rule": "relative", "reason": "no worse than champion v2"},
        champion={"winner": "champion", "promote": False, "reason": "does not beat"},
    )


def test_the_card_holds_every_section_and_the_html_is_self_contained(classified):
    card = _card(classified)
    computed = card["evaluation"]
    assert {m["metric"] for m in computed["metrics"]} == {
        "roc_auc",
        "pr_auc",
        "precision",
        "recall",
        "f1",
    }
    assert all(m["low"] <= m["value"] <= m["high"] for m in computed["metrics"])
    assert computed["importance"][0]["feature"] == "x_strong"
    markdown = model_card.render_markdown(card)
    for heading in (
        "# Model card: m v3",
        "## Intended use and limits",
        "## Data",
        "## Features",
        "## Hold-out metrics",
        "## Metrics by group",
        "## Permutation importance",
        "## Calibration",
        "## Gate and champion/challenger",
        "## Lineage",
    ):
        assert heading in markdown
    assert "83b7" in markdown and "no worse than champion v2" in markdown
    page = model_card.render_html(card)
    assert page.count("<svg") == 2 and "&lt;risky&gt;" in page  # escaped, both figures
    for outside in ("<script", "<link", "<img", "src=", "href=", "@import", "url("):
        assert outside not in page


def test_a_regressors_card_has_no_calibration(classified):
    frame, features, _, _ = classified
    model = LinearRegression().fit(frame[features], frame.x_strong * 2)
    computed = model_card.compute(
        model,
        frame.assign(y=frame.x_strong * 2 + 0.1),
        features=features,
        label="y",
        task="regression",
        decision_threshold=0.5,
        card=SimpleNamespace(
            confidence=0.9,
            bootstrap=30,
            slice_column="absent",
            importance_rows=100,
            importance_repeats=1,
            calibration_bins=5,
        ),
    )
    assert "calibration" not in computed and "absent" in computed["slices_note"]
    assert [m["metric"] for m in computed["metrics"]] == ["mae", "rmse", "wape"]
    assert computed["metrics"][0]["value"] == pytest.approx(0.1)
