"""The Spark feature engine against the pandas engine: same tables, same training set, same model.

One local SparkSession for the module (local[1], 1 GB, no UI, bound to 127.0.0.1); a small
fleet. Parity is value by value, to the bit: every column of every table and of the
point-in-time training set (a tree model's bins cut at data values, so 1e-13 can move a split
and the hold-out ROC AUC), with a future value planted in the sources that neither engine
may join.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyspark")

from esteira import feast_repo as feast_ops  # noqa: E402
from esteira.config import Settings  # noqa: E402
from esteira.contract import load_contract  # noqa: E402
from esteira.feast_store import clear_cache, feature_store, load_definitions  # noqa: E402
from esteira.feature_engine import publish_feature_tables  # noqa: E402
from esteira.features import EVENT_TS, compute_feature_tables, label_frame  # noqa: E402
from testkit.pipeline import generate_fleet  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "feature_repo" / "predictive_maintenance"
SPARK = {"master": "local[1]", "driver_memory": "1g", "shuffle_partitions": 1}


@pytest.fixture(scope="module")
def session():
    from esteira.config import SparkSettings
    from esteira.spark_features import spark_session

    spark = spark_session(SparkSettings(**SPARK))
    yield spark
    spark.stop()


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    frame = generate_fleet(machines=3, days=6, seed=11)
    frame.loc[5, "volt"] = np.nan  # a missing reading: both engines skip it in windows
    return frame


@pytest.fixture(scope="module")
def contract():
    return load_contract(REPO)


def _repo(root: Path) -> Path:
    root.mkdir()
    for path in REPO.iterdir():
        if path.suffix in (".py", ".yaml"):
            shutil.copy(path, root / path.name)
    return root


def settings_for(repo: Path, engine: str) -> Settings:
    return Settings(features={"repo_path": str(repo), "engine": engine, "spark": SPARK})


def test_feature_tables_equal_the_pandas_engines(session, raw, contract) -> None:
    from esteira.spark_features import compute_feature_tables as spark_tables
    from esteira.spark_features import to_pandas

    expected = compute_feature_tables(raw, contract)
    got = to_pandas(spark_tables(raw, contract, session), contract)
    assert set(got) == set(expected) == {"telemetry_agg", "machine_attributes", "event_history"}
    for name, table in expected.items():
        assert list(got[name].columns) == list(table.columns), name
        pd.testing.assert_frame_equal(  # the same bits: a tree model's splits cut at values
            got[name], table.reset_index(drop=True), check_dtype=False, check_exact=True
        )
    # the windows are time ranges: the NaN reading is skipped, not counted as a row
    rolling = got["telemetry_agg"]
    assert rolling["volt_mean_3h"].notna().all()
    assert (got["event_history"]["hours_since_maintenance"] <= 2160).all()


def test_window_edges_match_on_irregular_data(session, contract) -> None:
    """A gap and readings exactly a window apart: (t - 3h, t] in both engines."""
    from esteira.spark_features import compute_feature_tables as spark_tables
    from esteira.spark_features import to_pandas

    stamps = pd.to_datetime(
        [
            "2025-01-01 00:00",
            "2025-01-01 01:00",
            "2025-01-01 03:00",
            "2025-01-01 04:00",
            "2025-01-01 09:30",
            "2025-01-01 12:30",
        ],  # fmt: skip
        utc=True,
    )
    frame = generate_fleet(machines=1, days=3, seed=3).iloc[: len(stamps)].copy()
    frame["timestamp"] = stamps
    frame["volt"] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0]
    frame["maintenance"] = [0, 1, 0, 0, 0, 0]
    expected = compute_feature_tables(frame, contract)
    got = to_pandas(spark_tables(frame, contract, session), contract)
    # 03:00's 3h window is (00:00, 03:00]: 2 and 4, not 1
    assert got["telemetry_agg"]["volt_mean_3h"].tolist()[2] == 3.0
    assert got["event_history"]["hours_since_maintenance"].tolist()[4] == 8.5
    for name, table in expected.items():
        pd.testing.assert_frame_equal(got[name], table, check_dtype=False, check_exact=True)


@pytest.fixture(scope="module")
def training_sets(session, raw, contract, tmp_path_factory):
    """Both engines end to end: publish, apply, point-in-time training set; a planted future row."""
    entities = label_frame(raw, contract, 6)
    out = {}
    for engine in ("pandas", "spark"):
        repo = _repo(tmp_path_factory.mktemp(engine) / "feature_repo")
        settings = settings_for(repo, engine)
        publish_feature_tables(raw, contract, settings)
        _plant_future_value(repo, entities)
        feast_ops.apply_definitions(settings)
        out[engine] = (settings, feast_ops.build_training_set(entities, settings))
    yield out
    clear_cache()


PLANTED = 1e6


def _plant_future_value(repo: Path, entities: pd.DataFrame) -> None:
    """A rolling row for the first entity row's machine one second after that row: never joined."""
    path = repo / "data" / "sources" / "telemetry_agg.parquet"
    table = pd.read_parquet(path)
    first = entities.iloc[0]
    row = table.loc[table["machine_id"] == first["machine_id"]].iloc[[0]].copy()
    row[EVENT_TS] = pd.Timestamp(first[EVENT_TS]) + pd.Timedelta(seconds=1)
    row["volt_mean_3h"] = PLANTED
    pd.concat([table, row], ignore_index=True).to_parquet(path, index=False)


def test_sources_differ_only_in_class(training_sets) -> None:
    from feast import FileSource
    from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource

    views = {}
    for engine, (settings, _) in training_sets.items():
        objects = load_definitions(settings)
        views[engine] = {v.name: v for v in objects["feature_views"]}
        service = objects["feature_service"]
        assert service.name == "machine_failure"
    assert views["pandas"].keys() == views["spark"].keys()
    for name, view in views["spark"].items():
        other = views["pandas"][name]
        assert isinstance(view.batch_source, SparkSource)
        assert isinstance(other.batch_source, FileSource)
        assert view.batch_source.name == other.batch_source.name
        assert [f.name for f in view.features] == [f.name for f in other.features]
        assert view.ttl == other.ttl
    # the registry the Spark engine applied holds SparkSources; its online store is untouched
    settings = training_sets["spark"][0]
    registered = feature_store(settings).get_feature_view("telemetry_agg").batch_source
    assert isinstance(registered, SparkSource)
    # the training set came through Feast's Spark offline store; serving's store stays Spark-free
    from feast.infra.offline_stores.contrib.spark_offline_store.spark import (
        SparkOfflineStoreConfig,
    )

    offline = feature_store(settings, offline=True).config.offline_store
    assert isinstance(offline, SparkOfflineStoreConfig)
    assert "Spark" not in type(feature_store(settings).config.offline_store).__name__


def test_training_set_equals_the_pandas_engines(training_sets) -> None:
    ours, theirs = training_sets["spark"][1], training_sets["pandas"][1]
    assert ours.feature_names == theirs.feature_names
    assert ours.requested_rows == theirs.requested_rows
    assert ours.dropped_rows == theirs.dropped_rows
    assert len(ours.frame) > 0.9 * ours.requested_rows
    got, expected = ours.frame, theirs.frame
    assert list(got.columns) == list(expected.columns)
    assert str(got[EVENT_TS].dt.tz) == "UTC"
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_exact=True)
    # point in time: the value planted one second after the first row is joined by neither
    assert (got["volt_mean_3h"] != PLANTED).all()
    assert (expected["volt_mean_3h"] != PLANTED).all()


def test_asof_spark_store_matches_feasts_spark_store(training_sets, raw, contract) -> None:
    """Same rows and values as Feast 0.67's own Spark store (its range join), TTL misses included."""
    from esteira.feast_store import repo_config, spark_offline_store

    settings = training_sets["spark"][0]
    entities = label_frame(raw, contract, 6).assign(**{"__row": lambda f: range(len(f))})
    late = entities.iloc[[0]].assign(
        **{EVENT_TS: entities[EVENT_TS].max() + pd.Timedelta(days=3), "__row": -1}
    )  # beyond the rolling views' TTL: nulls from both
    entities = pd.concat([entities, late], ignore_index=True)
    store = feature_store(settings, offline=True)
    service = store.get_feature_service("machine_failure")
    ours = store.get_historical_features(entities, features=service).to_df()
    config = repo_config(settings, offline=True).model_copy()
    config.offline_config = {**spark_offline_store(settings), "type": "spark"}
    stock = type(store)(repo_path=str(config.repo_path), config=config)
    theirs = stock.get_historical_features(entities, features=service).to_df()
    ours, theirs = (f.sort_values("__row").reset_index(drop=True) for f in (ours, theirs))
    assert ours["volt_mean_3h"].isna().sum() >= 1
    pd.testing.assert_frame_equal(ours[theirs.columns], theirs, check_dtype=False)
