"""Drift statistics checked against scipy on known distributions (fixed seeds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from esteira.config import MonitoringSettings
from esteira.drift import (
    JS_MODERATE,
    DriftReport,
    chi_square_test,
    compare,
    js_distance,
    ks_test,
    psi,
    quantile_cuts,
    summarize_reference,
)
from esteira.errors import DataError

N = 5000
MODELS = ["model1", "model2", "model3", "model4"]
SETTINGS = MonitoringSettings()


def normal(mean: float, seed: int, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, 1.0, n)


def fleet(
    seed: int, n: int = N, *, shift: float = 0.0, p: list[float] | None = None
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "volt_mean_24h": rng.normal(170 + 15 * shift, 15, n),
            "vibration_std_3h": rng.gamma(4, 2.5, n) * (1 + shift),
            "age": rng.integers(0, 21, n),
            "model": rng.choice(MODELS, n, p=p),
            "datetime": pd.date_range("2025-01-01", periods=n, freq="h"),
        }
    )


# ---- PSI --------------------------------------------------------------------------------


def test_psi_same_distribution_is_low() -> None:
    assert psi(normal(0, 1), normal(0, 2)) < 0.02


def test_psi_shifted_distribution_is_high() -> None:
    assert psi(normal(0, 1), normal(0.5, 2)) > 0.1


def test_psi_identical_is_zero() -> None:
    x = normal(0, 3)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert psi(x, x[::-1].copy()) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
    st.integers(2, 20),
)
def test_psi_is_non_negative_and_finite(ref: list[float], cur: list[float], bins: int) -> None:
    value = psi(ref, cur, bins=bins)
    assert value >= 0.0
    assert np.isfinite(value)


def test_psi_counts_current_values_outside_reference_range() -> None:
    ref = np.random.default_rng(0).uniform(0, 1, N)
    assert psi(ref, ref + 5) > 1.0  # everything above the reference maximum
    assert psi(ref, ref - 5) > 1.0  # everything below the minimum


def test_psi_constant_reference_detects_change() -> None:
    ref = np.zeros(100)
    assert psi(ref, ref) == 0.0
    assert psi(ref, np.ones(100)) > 1.0
    assert psi(ref, -np.ones(100)) > 1.0


def test_quantile_cuts_dedupe_point_mass() -> None:
    ref = np.concatenate([np.zeros(800), np.arange(1, 201, dtype=float)])
    cuts = quantile_cuts(ref, 10)
    assert np.all(np.diff(cuts) > 0)
    assert cuts[0] == 0.0  # values below zero fall in the first, empty reference bin


# ---- KS, chi-square, JS against scipy ---------------------------------------------------


@pytest.mark.parametrize("mean", [0.0, 0.1, 0.5])
def test_ks_equals_scipy(mean: float) -> None:
    ref, cur = normal(0, 1), normal(mean, 2)
    expected = stats.ks_2samp(ref, cur)
    assert ks_test(ref, cur) == (expected.statistic, expected.pvalue)


def test_compare_ks_equals_scipy_after_dropping_nans() -> None:
    ref, cur = fleet(1), fleet(2, shift=0.1)
    cur.loc[::7, "volt_mean_24h"] = np.nan
    result = compare(ref, cur, SETTINGS, ["volt_mean_24h"]).feature("volt_mean_24h")
    expected = stats.ks_2samp(ref["volt_mean_24h"], cur["volt_mean_24h"].dropna())
    assert result.statistics["ks_statistic"] == expected.statistic
    assert result.p_value == expected.pvalue
    assert result.current_null_share == pytest.approx(cur["volt_mean_24h"].isna().mean())
    assert result.current_count == cur["volt_mean_24h"].notna().sum()


@pytest.mark.parametrize(
    ("p", "q"),
    [
        ([0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.25]),
        ([0.25, 0.25, 0.25, 0.25], [0.4, 0.2, 0.2, 0.2]),
        ([10, 20, 30, 0], [5, 5, 5, 30]),
        ([1, 0], [0, 1]),
    ],
)
def test_js_equals_scipy(p: list[float], q: list[float]) -> None:
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2), abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=12))
def test_js_matches_scipy_property(pairs: list[tuple[int, int]]) -> None:
    p, q = np.array(pairs, dtype=float).T
    if p.sum() == 0 or q.sum() == 0:
        return
    value = js_distance(p, q)
    assert value == pytest.approx(jensenshannon(p, q, base=2), abs=1e-9)
    assert 0.0 <= value <= 1.0


def test_chi_square_equals_scipy_on_union_table() -> None:
    ref, cur = [400, 300, 300, 0], [350, 330, 280, 40]
    expected = stats.chi2_contingency(np.array([ref, cur]), correction=False)
    chi2, p, dof = chi_square_test(ref, cur)
    assert (chi2, p, dof) == (pytest.approx(expected.statistic), pytest.approx(expected.pvalue), 3)


def test_chi_square_single_category_is_no_evidence() -> None:
    assert chi_square_test([10], [20]) == (0.0, 1.0, 0)


# ---- compare: numeric --------------------------------------------------------------------


def test_numeric_same_distribution_no_drift() -> None:
    ref = pd.DataFrame({"x": normal(0, 1)})
    cur = pd.DataFrame({"x": normal(0, 2)})
    result = compare(ref, cur, SETTINGS).feature("x")
    assert result.kind == "numeric"
    assert not result.drifted
    assert result.severity == "none"
    assert result.psi is not None and result.psi < 0.02
    assert result.js is None


def test_numeric_shifted_distribution_drifts() -> None:
    ref = pd.DataFrame({"x": normal(0, 1)})
    cur = pd.DataFrame({"x": normal(0.5, 2)})
    result = compare(ref, cur, SETTINGS).feature("x")
    assert result.drifted
    assert result.psi is not None and result.psi > 0.1
    assert result.p_value < SETTINGS.p_value
    assert result.severity in {"moderate", "significant"}


def test_numeric_tiny_shift_on_large_sample_is_not_drift() -> None:
    """KS rejects on 200k rows, but PSI is far below the moderate threshold."""
    ref = pd.DataFrame({"x": normal(0, 1, 200_000)})
    cur = pd.DataFrame({"x": normal(0.03, 2, 200_000)})
    result = compare(ref, cur, SETTINGS).feature("x")
    assert result.p_value < SETTINGS.p_value
    assert not result.drifted


def test_numeric_histogram_is_shares_over_edges() -> None:
    result = compare(fleet(1), fleet(2), SETTINGS, ["age"]).feature("age")
    hist = result.histogram
    assert hist.edges is not None and hist.categories is None
    assert len(hist.edges) == len(hist.reference) + 1 == len(hist.current) + 1
    assert sum(hist.reference) == pytest.approx(1.0)
    assert sum(hist.current) == pytest.approx(1.0)


# ---- compare: categorical -----------------------------------------------------------------


def test_categorical_same_proportions_no_drift() -> None:
    result = compare(fleet(1), fleet(2), SETTINGS, ["model"]).feature("model")
    assert result.kind == "categorical"
    assert not result.drifted
    assert result.severity == "none"
    assert result.js is not None and result.js < JS_MODERATE
    assert result.psi is None


def test_categorical_shifted_proportions_drift() -> None:
    cur = fleet(2, p=[0.55, 0.15, 0.15, 0.15])
    result = compare(fleet(1), cur, SETTINGS, ["model"]).feature("model")
    assert result.drifted
    assert result.p_value < SETTINGS.p_value
    assert result.js is not None and result.js >= JS_MODERATE


def test_categorical_new_category_drifts() -> None:
    cur = fleet(2)
    cur.loc[: N // 4, "model"] = "model5"
    result = compare(fleet(1), cur, SETTINGS, ["model"]).feature("model")
    assert result.drifted
    assert result.statistics["new_categories"] == 1
    assert result.histogram.categories is not None
    assert "model5" in result.histogram.categories
    ref_share = result.histogram.reference[result.histogram.categories.index("model5")]
    assert ref_share == 0.0


def test_categorical_kinds_from_dtype() -> None:
    ref = pd.DataFrame(
        {
            "flag": np.tile([True, False], N // 2),
            "cat": pd.Categorical(np.tile(MODELS, N // 4)),
            "text": pd.array(np.tile(MODELS, N // 4), dtype="string"),
            "n": pd.array(np.arange(N), dtype="Int64"),
        }
    )
    report = compare(ref, ref, SETTINGS)
    kinds = {f.feature: f.kind for f in report.features}
    assert kinds == {
        "flag": "categorical",
        "cat": "categorical",
        "text": "categorical",
        "n": "numeric",
    }
    assert report.drifted_features == []


# ---- dataset verdict and serialisation -------------------------------------------------------


def test_dataset_drift_share() -> None:
    ref = fleet(1)
    cur = fleet(2, shift=1.0, p=[0.7, 0.1, 0.1, 0.1])
    report = compare(ref, cur, SETTINGS)
    assert isinstance(report, DriftReport)
    assert report.skipped == ["datetime"]
    assert set(report.drifted_features) == {"volt_mean_24h", "vibration_std_3h", "model"}
    assert report.drift_share == pytest.approx(3 / 4)
    assert report.dataset_drift
    assert (report.reference_rows, report.current_rows) == (N, N)

    calm = compare(ref, fleet(2), SETTINGS)
    assert calm.drift_share == 0.0 and not calm.dataset_drift


def test_to_dict_is_json_safe() -> None:
    report = compare(fleet(1), fleet(2, shift=2.0), SETTINGS)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["dataset_drift"] is True
    assert [f["feature"] for f in data["features"]] == [
        "volt_mean_24h",
        "vibration_std_3h",
        "age",
        "model",
    ]
    assert data["features"][0]["histogram"]["edges"]


# ---- reference profile -----------------------------------------------------------------------


def _verdicts(report: DriftReport) -> dict[str, tuple[bool, str]]:
    return {f.feature: (f.drifted, f.severity) for f in report.features}


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_profile_round_trip_equals_dataframe(shift: float) -> None:
    ref = fleet(1)
    ref.loc[::11, "age"] = np.nan
    cur = fleet(2, shift=shift, p=[0.25 + shift / 4, 0.25, 0.25, 0.25 - shift / 4])
    profile = json.loads(json.dumps(summarize_reference(ref), allow_nan=False))
    from_frame, from_profile = compare(ref, cur, SETTINGS), compare(profile, cur, SETTINGS)
    assert _verdicts(from_profile) == _verdicts(from_frame)
    # up to 5000 rows the profile keeps everything: the statistics are identical
    assert from_profile.to_dict() == from_frame.to_dict()


def test_profile_of_large_reference_is_small_and_agrees() -> None:
    ref = fleet(1, n=50_000)
    profile = summarize_reference(ref, ["volt_mean_24h", "model"])
    text = json.dumps(profile)
    assert len(profile["features"]["volt_mean_24h"]["sample"]) == 5000
    assert profile["features"]["model"]["counts"] == ref["model"].value_counts().to_dict()
    assert len(text) < 200_000
    assert summarize_reference(ref, ["volt_mean_24h"]) == summarize_reference(
        ref, ["volt_mean_24h"]
    )
    for cur in (fleet(2), fleet(3, shift=0.5, p=[0.55, 0.15, 0.15, 0.15])):
        expected = _verdicts(compare(ref, cur, SETTINGS, ["volt_mean_24h", "model"]))
        assert _verdicts(compare(json.loads(text), cur, SETTINGS)) == expected


# ---- errors name the field -------------------------------------------------------------------


def test_empty_reference_and_current() -> None:
    with pytest.raises(DataError, match="reference: has no rows"):
        compare(fleet(1).iloc[:0], fleet(2), SETTINGS)
    with pytest.raises(DataError, match="current: has no rows"):
        compare(fleet(1), fleet(2).iloc[:0], SETTINGS)


def test_missing_feature_in_current_is_named() -> None:
    with pytest.raises(DataError, match="vibration_std_3h: missing from the current data") as err:
        compare(fleet(1), fleet(2).drop(columns="vibration_std_3h"), SETTINGS)
    assert err.value.field == "vibration_std_3h"
    assert err.value.fix


def test_missing_feature_in_profile_is_named() -> None:
    profile = summarize_reference(fleet(1), ["age"])
    with pytest.raises(DataError, match="model: is not in the reference profile"):
        compare(profile, fleet(2), SETTINGS, ["age", "model"])


@pytest.mark.parametrize("side", ["reference", "current"])
def test_all_nan_column_is_named(side: str) -> None:
    ref, cur = fleet(1), fleet(2)
    (ref if side == "reference" else cur)["age"] = np.nan
    with pytest.raises(DataError, match=f"age: all values are null in the {side} data"):
        compare(ref, cur, SETTINGS)


def test_numeric_reference_with_text_current_is_named() -> None:
    cur = fleet(2)
    cur["age"] = cur["age"].astype(str)
    with pytest.raises(DataError, match="age: is numeric in the reference"):
        compare(fleet(1), cur, SETTINGS)


def test_bad_reference_type() -> None:
    with pytest.raises(DataError, match="reference: is neither a DataFrame nor a profile"):
        compare({"volt_mean_24h": [1.0]}, fleet(2), SETTINGS)
