"""The whole training pipeline under kfp.local on small data: gate both ways, and a bad source."""

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest

from esteira.registry import Registry
from esteira.storage import LocalStorage
from esteira_cli.cli import main
from esteira_cli.training_run import run_training
from testkit.pipeline import small_workspace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("training")


# a small search (the `search` run parameter): 4 trials, 2 per task, 2 at once, 2 folds
SEARCH = {
    "trials": 4,
    "trials_per_task": 2,
    "parallelism": 2,
    "folds": 2,
    "space": {
        "gradient_boosting": {
            "max_iter": {"type": "int", "low": 20, "high": 60},
            "learning_rate": {"type": "float", "low": 0.05, "high": 0.2, "log": True},
        }
    },
}


@pytest.fixture(scope="module")
def passing(workspace):
    settings = small_workspace(workspace, model={"search": SEARCH})
    summary = run_training(
        settings, workspace / "run", root=workspace / "outputs", arguments={"search": True}
    )
    return settings, summary


def test_a_passing_model_is_registered_promoted_and_loadable(passing):
    settings, summary = passing
    assert summary["status"] == "ok" and summary["gate_passed"] is True
    assert {"pipeline", "status", "steps", "metrics", "gate_passed", "model_uri"} <= set(summary)
    assert set(summary["steps"]) >= {
        "ingest",
        "validate",
        "train",
        "evaluate",
        "gate",
        "register",
        "deploy",
    }
    assert 0.6 <= summary["metrics"]["roc_auc"] <= 1.0
    # every step: its wall seconds and its processes' peak resident memory (MiB), measured
    # per task, not the driver's own (a small step stays far below compute-features)
    steps = summary["steps"]
    assert all(set(s) == {"seconds", "peak_rss_mb"} for s in steps.values()), steps
    assert all(30 < s["peak_rss_mb"] < 4096 for s in steps.values()), steps
    assert steps["resolve-settings"]["peak_rss_mb"] < steps["compute-features"]["peak_rss_mb"]
    model_dir = Path(summary["model_uri"])
    assert [p.name for p in model_dir.glob("*.joblib")] == ["model.joblib"]
    model = joblib.load(model_dir / "model.joblib")
    meta = json.loads((model_dir / "metadata.json").read_text())
    frame = pd.read_parquet(settings.data.source_uri).head(1)
    assert meta["data_hash"] == summary["data"]["content_hash"]
    for key in (
        "feature_definitions_hash",
        "code_version",
        "pipeline_run_id",
        "library_versions",
        "parameters",
    ):
        assert meta[key], key
    row = pd.DataFrame([{f: 0.0 for f in meta["feature_names"]}]).assign(model=frame.model[0])
    assert model.predict_proba(row[meta["feature_names"]]).shape == (1, 2)
    assert summary["registry"] == {
        **summary["registry"],
        "model": "machine-failure",
        "version": 1,
        "promoted": True,
        "production_version": 1,
    }
    assert summary["features"]["feature_service"] == "machine_failure"
    assert summary["features"]["training_rows"] > 0 and summary["features"]["dropped_by_ttl"] >= 0
    assert summary["deploy"]["mode"] == "manifest-only"
    # the decision threshold: chosen by the default policy on the training window, stored, summarised
    threshold = summary["threshold"]
    assert threshold["policy"] == {"policy": "min_cost", "fn_cost": 20.0, "fp_cost": 1.0}
    assert meta["decision_threshold"] == threshold["decision_threshold"] != 0.5
    assert meta["threshold_policy"] == threshold["policy"]
    # this run searches (the fixture): the threshold comes from the winner's out-of-fold
    # predictions, on the training window (the search test checks they end before the split)
    assert "out-of-fold" in meta["threshold_choice"]["chosen_on"]
    assert threshold["holdout_expected_cost"] == pytest.approx(
        summary["metrics"]["expected_cost"], abs=1e-5
    )
    assert threshold["holdout_expected_cost_at_0.5"] > 0


def test_online_store_is_materialized(passing):
    from esteira.online import OnlineFeatures

    settings, _ = passing
    online = OnlineFeatures(settings)
    ids = list(range(1, settings.data.machines + 1))
    request = {name: [1.0] * len(ids) for name in online.request_fields}
    features = online.lookup_frame(ids, request)
    assert len(features) == len(ids)
    assert not features[online.feature_names].isna().any().any()


def test_an_impossible_gate_saves_nothing(passing, workspace):
    settings, _ = passing
    strict = settings.model_copy(
        update={"gate": settings.gate.model_copy(update={"thresholds": {"roc_auc": 0.999}})}
    )
    summary = run_training(strict, workspace / "run-strict", root=workspace / "outputs")
    assert summary["status"] == "ok" and summary["gate_passed"] is False
    assert summary["model_uri"] is None and "registry" not in summary
    assert not {"register", "promote", "deploy", "materialize"} & set(summary["steps"])
    versions = Registry(LocalStorage(settings.storage.root), settings.model.name).versions()
    assert [v.version for v in versions] == [1]


def test_a_run_that_changes_only_model_family_trains_that_family(passing, workspace):
    from components.resolve_settings.logic import settings_diff
    from esteira.config import settings_to_json
    from esteira_cli.local_run import run_pipeline

    settings, _ = passing
    run = run_pipeline(
        "training", settings, {"model_family": "random_forest"}, root=workspace / "outputs"
    )
    assert run.status == "ok", run.error
    assert run.outputs["gate"]["parameters"]["Output"] is True
    version = run.outputs["register"]["parameters"]["version"]
    registry = Registry(LocalStorage(settings.storage.root), settings.model.name)
    meta = registry.get(version).metadata
    assert meta["family"] == "random_forest"
    assert "n_estimators" in meta["parameters"]  # RandomForestClassifier's, not HGB's
    assert registry.get(1).metadata["family"] == "gradient_boosting"
    # the typed parameter reached every step through resolve-settings; nothing else changed
    resolved = run.outputs["resolve-settings"]["parameters"]["Output"]
    assert settings_diff(settings_to_json(settings), resolved) == {"model.family": "random_forest"}


def test_a_missing_column_stops_the_run_with_its_name(workspace, tmp_path, monkeypatch, capsys):
    broken = tmp_path / "broken.parquet"
    pd.read_parquet(small_workspace(workspace).data.source_uri).drop(
        columns=["vibration"]
    ).to_parquet(broken)
    monkeypatch.setenv("ESTEIRA_DATA__SOURCE_URI", str(broken))
    monkeypatch.setenv("ESTEIRA_STORAGE__ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("ESTEIRA_FEATURES__REPO_PATH", str(workspace / "feature_repo"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "training", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "vibration" in err and "required" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "vibration" in summary["error"]
    # nothing downstream ran
    # plan-search needs only the settings, so it runs beside ingestion
    assert set(summary["steps"]) == {
        "resolve-settings",
        "plan-search",
        "fingerprint",
        "ingest",
        "validate",
    }
    assert not (tmp_path / "store" / "models").exists()


def test_a_truncated_file_stops_the_run_at_ingestion(workspace, tmp_path, monkeypatch, capsys):
    source = Path(small_workspace(workspace).data.source_uri)
    truncated = tmp_path / "truncated.parquet"
    truncated.write_bytes(source.read_bytes()[:4096])
    monkeypatch.setenv("ESTEIRA_DATA__SOURCE_URI", str(truncated))
    monkeypatch.setenv("ESTEIRA_STORAGE__ROOT", str(tmp_path / "store"))
    monkeypatch.setenv("ESTEIRA_FEATURES__REPO_PATH", str(workspace / "feature_repo"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", "training", "--out", str(tmp_path / "run")]) == 1
    assert "not a readable Parquet file" in capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    steps = {"resolve-settings", "plan-search", "fingerprint", "ingest"}
    assert set(summary["steps"]) == steps  # and no further


def test_the_search_ran_in_parallel_picked_the_best_trial_and_refit_it(passing):
    settings, summary = passing
    search = summary["search"]
    assert search["trials"] == 4 and search["metric"] == "roc_auc"
    run_dir = Path(summary["run_dir"])
    batches = sorted(run_dir.glob("for-loop-*-iteration-*/search-trials/executor_output.json"))
    assert len(batches) == 2  # the ParallelFor ran both batches
    results = [
        r
        for p in batches
        for r in json.loads(p.read_text())["parameterValues"]["Output"]["results"]
    ]
    assert sorted(int(r["trial"]) for r in results) == [0, 1, 2, 3]
    assert search["cv_mean"] == max(r["mean"] for r in results)  # the best on the leaderboard
    picked = json.loads((run_dir / "pick-best" / "executor_output.json").read_text())
    board = {a: g["artifacts"][0] for a, g in picked["artifacts"].items()}
    assert board["leaderboard"]["metadata"]["best_cv_roc_auc"] == search["cv_mean"]
    assert Path(board["table"]["uri"]).read_text().count("<tr") == 5  # header + 4 trials
    oof = pd.read_parquet(board["winner_predictions"]["uri"])
    assert list(oof.columns) == ["row", "event_timestamp", "fold", "fails_24h", "prediction"]
    meta = json.loads((Path(summary["model_uri"]) / "metadata.json").read_text())
    assert len(oof) > 0 and oof["event_timestamp"].max() < pd.Timestamp(meta["split_time"])
    # the final model is refit with the winner's hyperparameters; the hold-out is reported apart
    for name, value in search["params"].items():
        assert meta["parameters"][name] == value
    assert summary["holdout"]["roc_auc"] == summary["metrics"]["roc_auc"]
    # the decision threshold is chosen on the winner's out-of-fold predictions (issue 19)
    assert "out-of-fold" in meta["threshold_choice"]["chosen_on"]
