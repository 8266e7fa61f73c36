"""The regression path of the training pipeline, in-process, on tiny demand data: baseline,
train, rolling-origin backtest, evaluate (report), gate, register, champion/challenger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esteira.evaluation import check_thresholds
from esteira.features import label_frame


@pytest.fixture(scope="module")
def trained(demand):
    from components.train.logic import train_step
    from esteira.feast_repo import build_training_set
    from esteira.forecasting import evaluate_forecast

    settings, contract, raw = demand
    built = build_training_set(label_frame(raw, contract, 24), settings)
    result, info = train_step(built.frame, built.feature_names, contract, settings)
    scores, html = evaluate_forecast(result.model, result.holdout, info, settings)
    return settings, result, scores, html, info


def test_the_model_beats_seasonal_naive_by_the_gates_margin(trained) -> None:
    settings, _, scores, _, info = trained
    assert settings.gate.thresholds == {"wape_improvement": 0.1, "backtest_wape_improvement": 0.1}
    assert 0 < scores["wape"] < scores["wape_naive"]
    assert scores["mase"] < 1
    assert {"mae", "rmse", "wape", "mase", "wape_naive", "backtest_wape"} <= set(scores)
    assert len(info["backtest"]["folds"]) == settings.evaluation.backtest_folds
    assert check_thresholds(scores, settings.gate.thresholds) == []
    raised = {"wape_improvement": scores["wape_improvement"] + 0.01}
    assert check_thresholds(scores, raised)  # the gate can fail: a margin beyond the model's


def test_the_report_shows_series_segments_and_folds(trained) -> None:
    _, _, _, html, _ = trained
    assert html.count("<svg") == 3 and "Error by segment" in html and "Rolling-origin" in html
    assert "<script" not in html


def test_champion_challenger_minimises_wape(trained, tmp_path: Path) -> None:
    from components.promote.logic import champion_challenger
    from components.register.logic import register_model
    from esteira.registry import registry_for
    from esteira.safe_load import dump_model

    settings, result, scores, _, info = trained
    settings = settings.model_copy(
        update={"storage": settings.storage.model_copy(update={"root": str(tmp_path / "reg")})}
    )
    assert settings.gate.compare_metric == "wape" and settings.gate.direction == "minimize"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(dump_model(result.model))
    training = {
        **info,
        "parameters": result.parameters,
        "family": settings.model.family,
        "task": "regression",
        "categorical": result.categorical,
        "training_rows": len(result.train),
        "holdout_rows": len(result.holdout),
        "split_time": result.split_time,
    }
    (model_dir / "training.json").write_text(json.dumps(training))
    train_path = tmp_path / "train.parquet"
    result.train.to_parquet(train_path)
    holdout_path = tmp_path / "holdout.parquet"
    result.holdout.to_parquet(holdout_path)
    versions = []
    for i, metrics in enumerate((scores, {**scores, "wape": scores["wape"] * 1.5})):
        registered = register_model(
            settings,
            str(model_dir),
            str(train_path),
            {},
            metrics=metrics,
            data_hash="0" * 64,
            definitions_hash="0" * 64,
            code_version="test",
            run_id="test",
            holdout_path=None if i else str(holdout_path),  # the first with its model card
        )
        versions.append(registered.version)
    # a regressor's card: error metrics with intervals, by store_type, no calibration curve
    card = json.loads(registry_for(settings).read_file(versions[0], "card.json"))
    assert [m["metric"] for m in card["evaluation"]["metrics"]] == ["mae", "rmse", "wape"]
    wape = card["evaluation"]["metrics"][2]
    assert (
        wape["value"] == pytest.approx(scores["wape"])
        and wape["low"] < wape["value"] < wape["high"]
    )
    assert (
        card["evaluation"]["slice_column"] == "store_type"
        and "calibration" not in card["evaluation"]
    )
    assert {s["value"] for s in card["evaluation"]["slices"]} == set(
        result.holdout.store_type.astype(str)
    )
    first = champion_challenger(settings, versions[0], result.holdout)
    assert first["promoted"] and first["metric"] == "wape"
    # the second's recorded WAPE is worse; the champion is re-scored on the same hold-out
    second = champion_challenger(settings, versions[1], result.holdout)
    assert not second["promoted"] and second["winner"] == "champion"
