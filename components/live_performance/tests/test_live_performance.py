"""Monitoring under kfp.local on a small fleet, and live performance on hand-built data.

The drifted case runs ``esteira monitor``'s flow (batch prediction pipeline, monitoring
pipeline) and its retraining branch really runs the training pipeline, nested in the
monitoring run (kfp.local), on production's data plus the period: a new registry version
must appear.
The stable case fills the prediction log in-process and runs the monitoring pipeline
alone: no drift, no degradation, no retraining.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from components.batch_predict.tests.test_batch_predict import (
    PERIOD_DAYS,
    Trained,
    make_settings,
    trained_template,
)
from esteira.config import ROOT, FeatureSettings, Settings, StorageSettings


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_template(tmp_path_factory)


def test_drifted_period_triggers_retraining(trained: Trained, tmp_path: Path) -> None:
    from esteira.registry import registry_for
    from esteira.report import feature_anchor
    from esteira_cli.commands.monitor import run_monitor
    from esteira_cli.local_run import task_outputs

    fleet = trained.copy(tmp_path / "fleet")
    registry = registry_for(fleet.settings)
    before = [v.version for v in registry.versions()]
    summary = run_monitor(
        fleet.settings, "drifted", days=PERIOD_DAYS, out_dir=tmp_path / "monitor",
        root=tmp_path / "runs",
    )  # fmt: skip

    assert summary["status"] == "ok", summary.get("error")
    assert summary["batch"]["rows"] == fleet.settings.data.machines * PERIOD_DAYS * 4
    assert summary["drift_detected"] is True
    features = registry.get(before[-1]).metadata["feature_names"]
    assert set(summary["features"]) == set(features)
    assert summary["features"]["model"]["drifted"]  # model5 entered the fleet
    assert summary["features"]["volt_mean_24h"]["severity"] == "significant"
    assert summary["retrain_triggered"] is True
    assert summary["retrain"]["status"] == "ok"
    assert summary["retrained"]["status"] == "ok"
    # the training pipeline ran inside the monitoring run: its tasks are the run's tasks
    assert {"retrain", "ingest", "train", "evaluate", "gate", "register", "promote"} <= set(
        summary["steps"]
    )
    assert summary["retrain"]["mode"] == "nested"
    assert summary["retrained"]["registry"]["version"] == len(before) + 1
    after = [v.version for v in registry.versions()]
    assert len(after) == len(before) + 1  # the training pipeline registered a new version
    new = registry.get(after[-1])
    retrain_data = pd.read_parquet(new.metadata["source_uri"])
    assert len(retrain_data) == len(trained.raw) + len(fleet.period("drifted"))
    assert new.metadata["source_uri"] == summary["retrain"]["data_uri"]
    # judged by the retrain policy (relative to production on the same hold-out), which says so
    assert summary["retrained"]["gate"]["rule"] == new.metadata["gate"]["rule"] == "relative"
    assert new.metadata["retrain"]["trigger"].startswith("drift")

    # the drift task's outputs: Metrics for every feature and an HTML report of each
    outputs = task_outputs(Path(summary["run_dirs"]["monitoring"]))["drift-check"]
    logged = outputs["artifacts"]["metrics"]["metadata"]
    assert {f"{name}.drifted" for name in features} <= set(logged)
    html = Path(summary["drift_report"]).read_text()
    assert all(f'id="{feature_anchor(name)}"' in html for name in features)
    written = json.loads((tmp_path / "monitor" / "summary.json").read_text())
    assert written["retrain_triggered"] is True


def test_stable_period_does_not_retrain(trained: Trained, tmp_path: Path) -> None:
    from components.batch_features import logic as bf
    from esteira.contract import load_contract
    from esteira.data import write_fleet
    from esteira.registry import registry_for
    from esteira_cli.local_run import run_pipeline
    from testkit.batch import run_batch

    fleet = trained.copy(tmp_path / "fleet")
    settings = fleet.settings
    contract = load_contract(settings.features.repo_path)
    new = fleet.period("stable")
    bf.extend_sources(new, fleet.raw, settings, contract)
    run_batch(settings, bf.entity_rows(new, contract, 6), progress=None)
    path = tmp_path / "stable.parquet"
    write_fleet(new, str(path))
    versions = len(registry_for(settings).versions())

    run = run_pipeline(
        "monitoring", settings,
        {"labels_uri": str(path), "start": str(new["timestamp"].min())},
        root=tmp_path / "runs",
    )  # fmt: skip

    assert run.status == "ok", run.error
    drift = run.outputs["drift-check"]["parameters"]
    assert drift["drift_detected"] is False
    assert not any(f["severity"] == "significant" for f in drift["features"].values())
    assert run.outputs["live-performance"]["parameters"]["degraded"] is False
    assert run.outputs["retrain-decision"]["parameters"]["Output"] is False
    assert "retrain" not in run.steps
    assert len(registry_for(settings).versions()) == versions


# ---- live performance on hand-built predictions and labels ------------------------------------
def _registered(tmp_path: Path, metrics: dict[str, float], **extra: Any) -> Settings:
    """A registry whose production version recorded ``metrics`` (no real model needed)."""
    import shutil

    from esteira.registry import registry_for

    settings = make_settings(tmp_path)
    repo = Path(settings.features.repo_path)
    repo.mkdir(parents=True)
    shutil.copy(
        ROOT / "feature_repo" / "predictive_maintenance" / "dataset.yaml", repo / "dataset.yaml"
    )
    registry = registry_for(settings)
    meta = {"metrics": metrics, "task": "classification", "feature_names": ["volt_mean_24h"]}
    meta |= extra
    version = registry.register({"model.joblib": b"unused"}, meta)
    registry.set_alias("production", version.version)
    return settings


def _raw(machines: int, hours: int, failures: dict[int, list[int]]) -> pd.DataFrame:
    stamps = pd.date_range("2026-01-01", periods=hours, freq="h", tz="UTC")
    parts = []
    for machine in range(1, machines + 1):
        failure = np.zeros(hours, dtype=np.int8)
        failure[failures.get(machine, [])] = 1
        parts.append(pd.DataFrame({"timestamp": stamps, "machine_id": machine, "failure": failure}))
    return pd.concat(parts, ignore_index=True)


def _predictions(raw: pd.DataFrame, every: int, score) -> pd.DataFrame:
    rows = raw.loc[raw["timestamp"].dt.hour % every == 0, ["machine_id", "timestamp"]]
    rows = rows.rename(columns={"timestamp": "event_timestamp"}).reset_index(drop=True)
    proba = score(rows)
    return rows.assign(
        model_version=1, probability=proba, prediction=(proba >= 0.5).astype(int), source="batch"
    )


def _truth(rows: pd.DataFrame, failures: dict[int, list[int]], start: pd.Timestamp) -> np.ndarray:
    """1 when the machine fails in (t, t + 24h]: the contract's label, computed directly."""
    out = np.zeros(len(rows), dtype=int)
    for i, (machine, t) in enumerate(zip(rows["machine_id"], rows["event_timestamp"], strict=True)):
        for hour in failures.get(machine, []):
            event = start + pd.Timedelta(hours=hour)
            out[i] |= int(t < event <= t + pd.Timedelta(hours=24))
    return out


FAILURES = {m: [30 + 13 * m, 130 + 7 * m] for m in range(1, 9)}


def test_live_performance_joins_late_labels(tmp_path: Path) -> None:
    from components.live_performance.logic import live_performance

    settings = _registered(tmp_path, {"roc_auc": 0.9, "f1": 0.5})
    raw = _raw(8, 10 * 24, FAILURES)
    start = raw["timestamp"].min()

    def perfect(rows: pd.DataFrame) -> np.ndarray:
        return _truth(rows, FAILURES, start) * 0.8 + 0.1

    predictions = _predictions(raw, 3, perfect)
    result = live_performance(predictions, raw, settings, min_positives=5)

    last = raw["timestamp"].max()
    known = predictions["event_timestamp"] + pd.Timedelta(hours=24) <= last
    assert result["labelled_rows"] == int(known.sum())
    assert result["unlabelled_rows"] == int((~known).sum())
    truth = _truth(predictions.loc[known], FAILURES, start)
    assert result["metrics"]["positives"] == int(truth.sum()) > 5
    assert result["metrics"]["roc_auc"] == 1.0
    assert result["metrics"]["precision"] == result["metrics"]["recall"] == 1.0
    assert result["status"] == "ok" and result["degraded"] is False
    assert set(result["per_day"]) == {
        f"{d:%Y-%m-%d}" for d in predictions.loc[known, "event_timestamp"].dt.date.unique()
    }
    assert sum(day["rows"] for day in result["per_day"].values()) == result["labelled_rows"]


def test_live_performance_cuts_at_the_versions_decision_threshold(tmp_path: Path) -> None:
    """Failures scored 0.35 are caught at the version's threshold 0.3 (a 0.5 cut misses all)."""
    from components.live_performance.logic import live_performance

    settings = _registered(tmp_path, {"roc_auc": 0.9}, decision_threshold=0.3)
    raw = _raw(8, 10 * 24, FAILURES)
    start = raw["timestamp"].min()
    predictions = _predictions(raw, 3, lambda rows: _truth(rows, FAILURES, start) * 0.3 + 0.05)
    result = live_performance(predictions, raw, settings, min_positives=5)
    assert result["decision_threshold"] == 0.3
    assert result["metrics"]["recall"] == result["metrics"]["precision"] == 1.0
    assert result["metrics"]["expected_cost"] == 0.0


def test_live_performance_flags_degradation(tmp_path: Path) -> None:
    from components.live_performance.logic import live_performance

    settings = _registered(tmp_path, {"roc_auc": 0.9})
    raw = _raw(8, 10 * 24, FAILURES)
    start = raw["timestamp"].min()
    inverted = _predictions(raw, 3, lambda rows: 0.9 - 0.8 * _truth(rows, FAILURES, start))
    result = live_performance(inverted, raw, settings, min_positives=5)
    assert result["metrics"]["roc_auc"] == 0.0
    assert result["comparison"]["roc_auc"]["degraded"] is True
    assert result["degraded"] is True

    few = live_performance(inverted, raw, settings, min_positives=10_000)
    assert few["status"] == "insufficient_labels" and few["degraded"] is False


@pytest.mark.parametrize("delta, degraded", [(-0.04, False), (-0.06, True), (0.2, False)])
def test_degradation_uses_the_tolerance(delta: float, degraded: bool) -> None:
    from components.live_performance.logic import degradation

    result = degradation({"roc_auc": 0.8 + delta}, {"roc_auc": 0.8}, ["roc_auc"], 0.05)
    assert result["roc_auc"]["degraded"] is degraded


def test_monitor_without_production_model_says_run_make_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from esteira_cli.cli import main

    settings = Settings(
        storage=StorageSettings(root=str(tmp_path / "store")),
        features=FeatureSettings(repo_path=str(ROOT / "feature_repo" / "predictive_maintenance")),
    )
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json")))
    assert main(["--config", str(config), "monitor", "--out", str(tmp_path / "out")]) == 2
    assert "run `make run` first" in capsys.readouterr().err
