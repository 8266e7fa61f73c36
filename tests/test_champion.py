"""Champion/challenger decisions: direction, minimum improvement, ties, missing metrics."""

from __future__ import annotations

import io
from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from esteira.champion import Decision, decide, evaluate_champion_on
from esteira.config import GateSettings
from esteira.errors import EsteiraError
from esteira.registry import Registry
from esteira.storage import LocalStorage


def gate(**kw: object) -> GateSettings:
    return GateSettings(**kw)


def test_no_champion_promotes() -> None:
    d = decide({"roc_auc": 0.81}, None, gate())
    assert isinstance(d, Decision)
    assert (d.promote, d.winner, d.champion_value, d.improvement) == (
        True,
        "challenger",
        None,
        None,
    )
    assert "no champion" in d.reason


def test_better_challenger_wins_with_readable_reason() -> None:
    d = decide({"roc_auc": 0.912}, {"roc_auc": 0.903}, gate())
    assert d.promote and d.winner == "challenger"
    assert d.improvement == pytest.approx(0.009)
    assert d.reason == "challenger roc_auc 0.912 beats champion 0.903 by 0.009 (min 0.000)"


def test_worse_challenger_loses() -> None:
    d = decide({"roc_auc": 0.90}, {"roc_auc": 0.903}, gate())
    assert not d.promote and d.winner == "champion"
    assert d.improvement == pytest.approx(-0.003)
    assert "does not beat" in d.reason


def test_tie_keeps_champion() -> None:
    assert not decide({"roc_auc": 0.9}, {"roc_auc": 0.9}, gate()).promote


def test_min_improvement_is_inclusive_and_float_safe() -> None:
    g = gate(min_improvement=0.009)
    assert decide({"roc_auc": 0.912}, {"roc_auc": 0.903}, g).promote  # 0.00900000000000001
    assert not decide({"roc_auc": 0.911}, {"roc_auc": 0.903}, g).promote


def test_minimize_direction() -> None:
    g = gate(compare_metric="rmse", direction="minimize", thresholds={"rmse": 5.0})
    better = decide({"rmse": 1.2}, {"rmse": 1.5}, g)
    assert better.promote and better.improvement == pytest.approx(0.3)
    assert "lower is better" in better.reason
    assert not decide({"rmse": 1.6}, {"rmse": 1.5}, g).promote


@pytest.mark.parametrize(
    ("challenger", "champion", "field"),
    [
        ({"f1": 0.8}, {"roc_auc": 0.9}, "challenger_metrics.roc_auc"),
        ({"roc_auc": 0.8}, {"f1": 0.9}, "champion_metrics.roc_auc"),
        ({"roc_auc": float("nan")}, None, "challenger_metrics.roc_auc"),
        ({"roc_auc": "high"}, None, "challenger_metrics.roc_auc"),
    ],
)
def test_missing_or_bad_metric_is_a_clear_error(
    challenger: dict, champion: dict | None, field: str
) -> None:
    with pytest.raises(EsteiraError) as err:
        decide(challenger, champion, gate())
    assert err.value.field == field
    assert err.value.fix


def _auc(model: object, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"roc_auc": float(roc_auc_score(y, model.predict_proba(X)[:, 1]))}


def test_evaluate_champion_on_the_challengers_holdout(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=200) > 0).astype(int)
    registry = Registry(LocalStorage(tmp_path), "machine-failure")
    assert evaluate_champion_on(X, y, registry, _auc) is None  # no champion yet

    buf = io.BytesIO()
    joblib.dump(LogisticRegression().fit(X[:100], y[:100]), buf)
    registry.register({"model.joblib": buf.getvalue()}, {"metrics": {"roc_auc": 0.5}})
    registry.set_alias("production", 1)

    metrics = evaluate_champion_on(X[100:], y[100:], registry, _auc)
    assert metrics is not None and metrics["roc_auc"] > 0.9  # measured now, not the stored 0.5
    assert decide({"roc_auc": 0.8}, metrics, gate()).winner == "champion"


def test_a_small_margin_is_shown_with_enough_digits() -> None:
    decision = decide({"roc_auc": 0.83712}, {"roc_auc": 0.83705}, GateSettings())
    assert decision.promote
    assert decision.reason.startswith(
        "challenger roc_auc 0.837120 beats champion 0.837050 by 0.000070"
    )


def test_expected_cost_can_decide_lower_is_better() -> None:
    """With policy min_cost, expected cost on the same hold-out can be the compared metric."""
    from esteira.config import Settings

    settings = Settings.model_validate(
        {"gate": {"compare_metric": "expected_cost", "direction": "minimize"}}
    )
    cheaper = decide({"expected_cost": 120.0}, {"expected_cost": 137.5}, settings.gate)
    assert cheaper.promote and "lower is better" in cheaper.reason
    dearer = decide({"expected_cost": 150.0}, {"expected_cost": 137.5}, settings.gate)
    assert not dearer.promote and dearer.winner == "champion"


def test_promotion_shows_both_expected_costs_under_min_cost() -> None:
    from components.promote.logic import _expected_costs
    from esteira.config import Settings

    costs = _expected_costs(Settings(), {"expected_cost": 120.0}, {"expected_cost": 137.5})
    assert costs == {"challenger_expected_cost": 120.0, "champion_expected_cost": 137.5}
    fixed = Settings.model_validate({"model": {"threshold": {"policy": "fixed"}}})
    assert _expected_costs(fixed, {"expected_cost": 120.0}, None) == {}
