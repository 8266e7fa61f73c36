"""Batch prediction: Feast features for new data, chunked scoring, outputs and the prediction log.

A small fleet (40 machines x 200 days) is trained once per session, in-process with the
same functions the training pipeline's components call; each test works on its own copy
(storage and feature repository in a tmp dir, never the project's own).
"""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from esteira.config import (
    ROOT,
    DataSettings,
    FeatureSettings,
    GateSettings,
    ModelSettings,
    Settings,
    StorageSettings,
)
from esteira.data import write_fleet
from esteira.safe_load import dump_model, load_model
from testkit.pipeline import generate_fleet

MACHINES, DAYS, PERIOD_DAYS = 40, 200, 14
REPO_FILES = ("dataset.yaml", "definitions.py", "feature_store.yaml")


def make_settings(root: Path, machines: int = MACHINES, days: int = DAYS) -> Settings:
    """Settings whose storage, feature repository and data all live under ``root``."""
    return Settings(
        data=DataSettings(source_uri=str(root / "fleet.parquet"), machines=machines, days=days),
        storage=StorageSettings(root=str(root / "store")),
        features=FeatureSettings(repo_path=str(root / "feature_repo")),
        model=ModelSettings(hyperparameters={"max_iter": 60}),
        gate=GateSettings(thresholds={"roc_auc": 0.6}),
    )


def train_production(settings: Settings) -> pd.DataFrame:
    """Generate, publish, train, register and promote, in-process; returns the raw data."""
    from components.register.logic import register_model
    from components.train.logic import train_model
    from esteira.contract import load_contract
    from esteira.evaluation import evaluate
    from esteira.feast_repo import apply_definitions, build_training_set, publish_sources
    from esteira.features import compute_feature_tables, label_frame
    from esteira.registry import registry_for

    repo = Path(settings.features.repo_path)
    repo.mkdir(parents=True, exist_ok=True)
    for name in REPO_FILES:
        shutil.copy(ROOT / "feature_repo" / "predictive_maintenance" / name, repo / name)
    d = settings.data
    raw = generate_fleet(d.machines, d.days, d.start, d.seed, d.period)
    write_fleet(raw, d.source_uri)
    contract = load_contract(repo)
    publish_sources(compute_feature_tables(raw, contract), settings)
    applied = apply_definitions(settings)
    rows = label_frame(raw, contract, settings.features.sample_every_hours)
    training = build_training_set(rows, settings)
    label = contract.label.name
    fitted = train_model(
        training.frame, training.feature_names, label, settings.model,
        purge_hours=contract.label.horizon_hours,
    )  # fmt: skip
    scores = evaluate(
        fitted.model, fitted.holdout, training.feature_names, label, settings.model,
        settings.gate.thresholds, fitted.threshold.decision_threshold,
    )  # fmt: skip
    model_dir = Path(settings.storage.root).parent / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "model.joblib").write_bytes(dump_model(fitted.model))  # Feast (dill) is loaded
    (model_dir / "training.json").write_text(json.dumps(fitted.info(label, settings.model)))
    training_path = model_dir / "training_set.parquet"
    training.frame.to_parquet(training_path, index=False)
    version = register_model(
        settings, str(model_dir), str(training_path), {"feature_service": training.feature_service},
        metrics=scores.metrics, data_hash="test", definitions_hash=applied["definitions_hash"],
        code_version="test", run_id="test",
    )  # fmt: skip
    registry_for(settings).set_alias("production", version.version, reason="test fixture")
    return raw


@dataclass
class Trained:
    root: Path
    settings: Settings
    raw: pd.DataFrame

    def copy(self, dest: Path) -> Trained:
        """A private copy (storage, feature repo, data) whose paths point into ``dest``."""
        shutil.copytree(self.root, dest, dirs_exist_ok=True)
        settings = make_settings(dest, self.settings.data.machines, self.settings.data.days)
        return Trained(dest, settings, self.raw)

    def period(self, kind: str, days: int = PERIOD_DAYS) -> pd.DataFrame:
        """``days`` of telemetry right after the training data, same fleet."""
        d = self.settings.data
        start = pd.Timestamp(d.start) + pd.Timedelta(days=d.days)
        return generate_fleet(d.machines, days, start.strftime("%Y-%m-%d"), d.seed, kind)


def trained_template(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """The trained fleet, built once per session and shared by every test module."""
    root = tmp_path_factory.getbasetemp() / "esteira-trained"
    settings = make_settings(root)
    ready = root / "ready"
    if not ready.exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        train_production(settings)
        ready.touch()
    return Trained(root, settings, pd.read_parquet(settings.data.source_uri))


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return trained_template(tmp_path_factory)


@pytest.fixture
def fleet(trained: Trained, tmp_path: Path) -> Trained:
    return trained.copy(tmp_path / "fleet")


def _in_process_model(settings: Settings):
    from esteira.registry import registry_for

    registry = registry_for(settings)
    version = registry.get("production")
    return version, load_model(registry.read_file(version.version, "model.joblib"))


def test_batch_predictions_equal_the_in_process_model(fleet: Trained) -> None:
    from components.batch_features import logic as bf
    from esteira.contract import load_contract
    from esteira.feast_repo import build_training_set
    from esteira.prediction_log import read_log
    from esteira.storage import open_storage
    from testkit.batch import run_batch

    settings = fleet.settings
    contract = load_contract(settings.features.repo_path)
    new = fleet.period("stable")
    bf.extend_sources(new, fleet.raw, settings, contract)
    rows = bf.entity_rows(new, contract, settings.features.sample_every_hours)
    lines: list[str] = []
    result = run_batch(settings, rows, chunk_rows=500, progress=lines.append)

    version, model = _in_process_model(settings)
    features = version.metadata["feature_names"]
    expected = build_training_set(rows, settings).frame
    key = ["machine_id", "event_timestamp"]
    got = result.frame.sort_values(key).reset_index(drop=True)
    expected = expected.sort_values(key).reset_index(drop=True)
    assert len(got) == len(rows) == len(expected)
    proba = model.predict_proba(expected[features])[:, 1]
    np.testing.assert_allclose(got["probability"].to_numpy(), proba, rtol=0, atol=1e-12)
    threshold = version.metadata["decision_threshold"]
    assert (got["prediction"].to_numpy() == (proba >= threshold)).all()
    assert set(got["model_version"]) == {version.version}
    assert set(got["source"]) == {"batch"}
    assert got["request_id"].is_unique
    assert (got["event_timestamp"] >= pd.Timestamp(new["timestamp"].min())).all()
    chunks = -(-len(rows) // 500)
    assert sum("scored" in line for line in lines) == chunks

    storage = open_storage(settings.storage)
    written = pd.read_parquet(io.BytesIO(storage.get_bytes(result.outputs["key"])))
    assert (
        result.outputs["key"] == f"batch_predictions/{settings.model.name}/{result.run_id}.parquet"
    )
    pd.testing.assert_frame_equal(written, result.frame, check_dtype=False)
    logged = read_log(storage, settings.model.name)
    assert len(logged) == len(result.frame)
    assert set(logged["request_id"]) == set(result.frame["request_id"])


def test_new_rows_get_the_features_of_the_full_history(fleet: Trained) -> None:
    """The warm-up makes windows and "since" counters at the period start exact."""
    from components.batch_features import logic as bf
    from esteira.contract import load_contract
    from esteira.feast_store import source_uri
    from esteira.features import compute_feature_tables

    settings = fleet.settings
    contract = load_contract(settings.features.repo_path)
    new = fleet.period("drifted")
    bf.extend_sources(new, fleet.raw, settings, contract)
    full = compute_feature_tables(pd.concat([fleet.raw, new], ignore_index=True), contract)
    start = pd.Timestamp(new["timestamp"].min())
    for table in (contract.features.rolling.table, contract.features.events.table):
        published = pd.read_parquet(source_uri(settings, table))
        assert published["event_timestamp"].min() == fleet.raw["timestamp"].min()  # kept
        assert not published.duplicated(["machine_id", "event_timestamp"]).any()
        want = full[table].loc[full[table]["event_timestamp"] >= start]
        have = published.loc[published["event_timestamp"] >= start]
        key = ["machine_id", "event_timestamp"]
        pd.testing.assert_frame_equal(
            have.sort_values(key).reset_index(drop=True)[want.columns],
            want.sort_values(key).reset_index(drop=True),
            check_dtype=False,
        )


def test_chunking_does_not_change_predictions(fleet: Trained) -> None:
    from components.batch_features import logic as bf
    from components.batch_predict import logic as bp
    from esteira.contract import load_contract
    from esteira.registry import registry_for

    settings = fleet.settings
    contract = load_contract(settings.features.repo_path)
    rows = bf.entity_rows(fleet.raw.tail(5000), contract, 6)
    features = bf.historical_features(rows, settings).frame
    model = bp.load_production_model(registry_for(settings))
    whole = bp.predict_frame(model, features, entity="machine_id", run_id="a", progress=None)
    lines: list[str] = []
    size = len(features) // 3 + 1
    small = bp.predict_frame(
        model, features, entity="machine_id", run_id="a", chunk_rows=size, progress=lines.append
    )
    pd.testing.assert_frame_equal(whole.drop(columns="served_at"), small.drop(columns="served_at"))
    assert len(lines) == 3
    assert lines[-1].startswith(f"[batch] scored {len(features)}/{len(features)} rows")


def test_entity_file_gets_request_values_from_raw(fleet: Trained, tmp_path: Path) -> None:
    from components.batch_features import logic as bf
    from esteira.contract import load_contract

    settings = fleet.settings
    contract = load_contract(settings.features.repo_path)
    expected = bf.entity_rows(fleet.raw, contract, 24).sample(50, random_state=1)
    path = tmp_path / "entities.csv"
    expected[["machine_id", "event_timestamp"]].to_csv(path, index=False)
    rows = bf.read_entity_rows(str(path), settings, contract, fleet.raw)
    key = ["machine_id", "event_timestamp"]
    pd.testing.assert_frame_equal(
        rows.sort_values(key).reset_index(drop=True)[expected.columns],
        expected.sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )


def test_no_production_model_is_a_clear_error(tmp_path: Path) -> None:
    from components.batch_predict import logic as bp
    from esteira.errors import EsteiraError
    from esteira.registry import registry_for

    with pytest.raises(EsteiraError, match="run `make run` first"):
        bp.load_production_model(registry_for(make_settings(tmp_path)))
