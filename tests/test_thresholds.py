"""Choosing the decision threshold: each policy against a brute-force search, and the config."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from esteira.config import Settings, ThresholdSettings, load_settings
from esteira.errors import ConfigError, DataError
from esteira.thresholds import choose_threshold, operating, sweep


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = (rng.random(3000) < 0.04).astype(int)
    proba = np.clip(0.25 * y + rng.beta(2, 9, len(y)), 0, 1).round(3)  # ties on purpose
    return y, proba


def _brute(y: np.ndarray, proba: np.ndarray, policy: ThresholdSettings) -> float:
    """The best objective over every distinct cut, by direct counting."""
    best = -np.inf
    for t in np.unique(proba):
        pred = proba >= t
        tp, fp = int(np.sum(pred & (y == 1))), int(np.sum(pred & (y == 0)))
        fn = int(y.sum()) - tp
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / y.sum()
        if policy.policy == "min_cost":
            value = -(policy.fn_cost * fn + policy.fp_cost * fp)
        elif policy.policy == "max_f_beta":
            b2 = policy.beta**2
            value = (1 + b2) * prec * rec / (b2 * prec + rec) if prec + rec else 0.0
        else:
            value = rec if prec >= policy.min_precision else -1.0
        best = max(best, value)
    return best


@pytest.mark.parametrize(
    "policy",
    [
        ThresholdSettings(policy="min_cost", fn_cost=20, fp_cost=1),
        ThresholdSettings(policy="min_cost", fn_cost=3, fp_cost=2),
        ThresholdSettings(policy="max_f_beta", beta=1.0),
        ThresholdSettings(policy="max_f_beta", beta=2.0),
        ThresholdSettings(policy="precision_at_least", min_precision=0.3),
    ],
    ids=lambda p: f"{p.policy}",
)
def test_each_policy_finds_the_best_cut(scored, policy: ThresholdSettings) -> None:
    y, proba = scored
    choice = choose_threshold(y, proba, policy)
    at = choice.validation
    assert 0 < choice.decision_threshold < 1 and not choice.note
    # the reported counts are those of proba >= threshold, counted independently
    pred = (proba >= choice.decision_threshold).astype(int)
    assert at.tp == int(np.sum(pred & y)) and at.fp == int(np.sum(pred & (1 - y)))
    assert at.precision == pytest.approx(skm.precision_score(y, pred))
    assert at.recall == pytest.approx(skm.recall_score(y, pred))
    if policy.policy == "min_cost":
        value = -at.cost
    elif policy.policy == "max_f_beta":
        value = skm.fbeta_score(y, pred, beta=policy.beta)
    else:
        value = at.recall
        assert at.precision >= policy.min_precision
    assert value == pytest.approx(_brute(y, proba, policy))
    # the threshold sits between scores, never on one
    assert choice.decision_threshold not in set(proba.tolist())


def test_min_cost_with_expensive_misses_alerts_more_than_half(scored) -> None:
    y, proba = scored
    choice = choose_threshold(y, proba, ThresholdSettings(policy="min_cost"))
    at_half = operating(y, proba, 0.5, ThresholdSettings())
    assert choice.decision_threshold < 0.5
    assert choice.validation.cost < at_half.cost


def test_sweep_counts_match_direct_counting(scored) -> None:
    y, proba = scored
    thresholds, tps, fps = sweep(y, proba)
    assert np.all(np.diff(thresholds) < 0)
    for t, tp, fp in list(zip(thresholds, tps, fps, strict=True))[::37]:
        assert tp == np.sum((proba >= t) & (y == 1)) and fp == np.sum((proba >= t) & (y == 0))


def test_fixed_policy_and_unreachable_precision(scored) -> None:
    y, proba = scored
    fixed = choose_threshold(y, proba, ThresholdSettings(policy="fixed", decision_threshold=0.3))
    assert fixed.decision_threshold == 0.3 and fixed.policy == {
        "policy": "fixed",
        "decision_threshold": 0.3,
    }
    # the highest score is a false alarm: precision 0.9 is out of reach
    strict = choose_threshold(
        [0, 1, 1, 0, 1, 0, 0],
        [0.95, 0.9, 0.8, 0.7, 0.4, 0.2, 0.1],
        ThresholdSettings(policy="precision_at_least", min_precision=0.9),
    )
    assert "no threshold reaches precision 0.9" in strict.note
    assert strict.validation.precision == pytest.approx(2 / 3)  # the most precise cut: 0.75


def test_one_class_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="one class only") as err:
        choose_threshold(np.zeros(50), np.linspace(0, 1, 50), ThresholdSettings())
    assert err.value.field == "model.threshold"


def test_default_is_min_cost_with_a_missed_failure_worth_20_inspections() -> None:
    policy = Settings().model.threshold
    assert (policy.policy, policy.fn_cost, policy.fp_cost) == ("min_cost", 20.0, 1.0)


@pytest.mark.parametrize(
    ("yaml_text", "field"),
    [
        ("model:\n  threshold:\n    policy: cheapest\n", "model.threshold.policy"),
        ("model:\n  threshold:\n    fn_cost: -1\n", "model.threshold.fn_cost"),
        (
            "model:\n  threshold:\n    decision_threshold: 1.5\n",
            "model.threshold.decision_threshold",
        ),
        ("model:\n  decision_threshold: 0.3\n", "model.decision_threshold"),
        ("gate:\n  compare_metric: expected_cost\n", "gate"),
    ],
)
def test_bad_threshold_config_is_one_line_naming_the_field(tmp_path, yaml_text, field) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert "\n" not in message and f"{field}:" in message and "Fix:" in message
    if field == "model.decision_threshold":
        assert "model.threshold.policy: fixed" in message
