"""Feast as the one definition of features: point-in-time joins, TTLs, stores, online lookups."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from esteira import feast_repo as feast_ops
from esteira.config import Settings
from esteira.contract import load_contract
from esteira.errors import DataError
from esteira.feast_store import feature_store, read_sentinel, repo_config
from esteira.features import compute_feature_tables, label_frame
from esteira.online import (
    MissingRequestValueError,
    OnlineFeatures,
    OnlineStoreEmpty,
    OnlineStoreUnavailable,
    UnknownEntityError,
)
from testkit.pipeline import generate_fleet

ROOT = Path(__file__).resolve().parent.parent
UTC = "UTC"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A private copy of the feature repository (never the real feature_repo/data)."""
    target = tmp_path / "feature_repo"
    target.mkdir()
    for path in (ROOT / "feature_repo" / "predictive_maintenance").iterdir():
        if path.suffix in (".py", ".yaml"):
            shutil.copy(path, target / path.name)
    return target


def settings_for(repo: Path, **features: object) -> Settings:
    return Settings(features={"repo_path": str(repo), **features})


@pytest.fixture(scope="module")
def fleet() -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    raw = generate_fleet(machines=5, days=10, seed=7)
    contract = load_contract(ROOT / "feature_repo" / "predictive_maintenance")
    return compute_feature_tables(raw, contract), label_frame(raw, contract, 6)


def ready(settings: Settings, tables: dict[str, pd.DataFrame]) -> None:
    feast_ops.publish_sources(tables, settings)
    feast_ops.apply_definitions(settings)


def hand_tables(
    fleet_tables: dict[str, pd.DataFrame], stamps: list[str], marks: list[float]
) -> dict[str, pd.DataFrame]:
    """Machine 1 only, rows at ``stamps``; volt_mean_3h carries ``marks`` to trace which row joined."""
    out = {}
    for name, table in fleet_tables.items():
        template = table.loc[table["machine_id"] == 1].iloc[[0]]
        rows = len(stamps) if name != "machine_attributes" else 1
        frame = pd.concat([template] * rows, ignore_index=True)
        frame["event_timestamp"] = pd.to_datetime(stamps[:rows], utc=True)
        if "volt_mean_3h" in frame:
            frame["volt_mean_3h"] = marks
        out[name] = frame
    return out


def entity_rows(stamps: list[str], machine: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "machine_id": [machine] * len(stamps),
            "event_timestamp": pd.to_datetime(stamps, utc=True),
            "fails_24h": 0,
            "volt_now": 170.0,
            "vibration_now": 40.0,
        }
    )


def test_point_in_time_join_never_sees_the_future(repo: Path, fleet) -> None:
    settings = settings_for(repo)
    stamps = ["2025-01-02 10:00", "2025-01-02 12:00"]
    ready(settings, hand_tables(fleet[0], stamps, [1.0, 2.0]))
    asked = entity_rows(["2025-01-02 11:30", "2025-01-02 12:00", "2025-01-02 10:00"])
    result = feast_ops.build_training_set(asked, settings)
    got = result.frame.set_index("event_timestamp")["volt_mean_3h"]
    assert got[pd.Timestamp("2025-01-02 10:00", tz=UTC)] == 1.0
    assert got[pd.Timestamp("2025-01-02 11:30", tz=UTC)] == 1.0  # 12:00 is later: never used
    assert got[pd.Timestamp("2025-01-02 12:00", tz=UTC)] == 2.0  # at the same instant: known
    assert result.frame["event_timestamp"].is_monotonic_increasing
    assert result.dropped_by_ttl == {} and result.requested_rows == 3


def test_asof_store_matches_feasts_file_store(repo: Path, fleet) -> None:
    """Same rows, same values as Feast 0.67's own file offline store, TTL drops included."""
    tables, labels = fleet
    settings = settings_for(repo)
    ready(settings, tables)
    extra = pd.concat(
        [entity_rows(["2024-12-31 20:00"]), entity_rows(["2025-01-03 05:00"], machine=99)]
    )
    asked = pd.concat([labels, extra], ignore_index=True)
    ours = feature_store(settings)
    config = repo_config(settings).model_copy()
    config.offline_config = {"type": "file"}
    stock = type(ours)(repo_path=str(repo), config=config)
    service = ours.get_feature_service("machine_failure")
    a = ours.get_historical_features(asked, features=service).to_df()
    b = stock.get_historical_features(asked, features=service).to_df()
    key = ["event_timestamp", "machine_id"]
    a = a.sort_values(key).reset_index(drop=True)
    b = b.sort_values(key).reset_index(drop=True)[a.columns]
    assert len(a) == len(asked) - 1  # machine 1 before its first row: dropped; machine 99: nulls
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_rows_outside_ttl_are_dropped_and_counted(repo: Path, fleet) -> None:
    tables, _ = fleet
    settings = settings_for(repo, max_dropped_share=0.5)
    stamps = ["2025-01-02 10:00", "2025-01-02 11:00"]
    ready(settings, hand_tables(tables, stamps, [1.0, 2.0]))
    asked = entity_rows(["2025-01-02 11:00", "2025-01-02 12:00", "2025-01-02 20:00"])
    result = feast_ops.build_training_set(asked, settings)
    assert len(result.frame) == 2 and result.dropped_rows == 1  # 20:00 is 9 h after 11:00 > 6 h
    assert result.dropped_by_ttl == {"telemetry_agg": 1, "event_history": 1}
    assert result.dropped_share == pytest.approx(1 / 3)

    strict = settings_for(repo, max_dropped_share=0.1)
    with pytest.raises(DataError) as err:
        feast_ops.build_training_set(asked, strict)
    message = str(err.value)
    assert "features.max_dropped_share" in message and "33.3%" in message
    assert "telemetry_agg: 1" in message and "event_history: 1" in message


def test_apply_is_idempotent(repo: Path, fleet) -> None:
    settings = settings_for(repo)
    feast_ops.publish_sources(fleet[0], settings)
    first = feast_ops.apply_definitions(settings)
    store = feature_store(settings)
    protos = {v.name: v.to_proto() for v in store.list_feature_views()}
    second = feast_ops.apply_definitions(settings)
    assert second["applied"] == []  # nothing differs, nothing is written
    assert {k: v for k, v in first.items() if k != "applied"} == {
        k: v for k, v in second.items() if k != "applied"
    }
    assert first["feature_views"] == ["telemetry_agg", "machine_attributes", "event_history"]
    assert first["on_demand_feature_views"] == ["request_zscores"]
    fresh = feature_store(settings, fresh=True)
    assert {v.name: v.to_proto() for v in fresh.list_feature_views()} == protos


def test_training_and_online_agree_on_sqlite_and_redis(repo: Path, fleet, redis_server) -> None:
    tables, labels = fleet
    sqlite = settings_for(repo)
    redis = settings_for(repo, online_store="redis", redis_connection=redis_server.connection)
    ready(sqlite, tables)
    assert read_sentinel(feature_store(sqlite)) is None  # sentinel only after materialize
    assert feast_ops.materialize(sqlite)["window"] == sorted(tables)
    assert read_sentinel(feature_store(sqlite))["end"]
    assert feast_ops.materialize(sqlite)["up_to_date"] == sorted(tables)  # nothing new
    feast_ops.materialize(redis, full=True)

    ids = [1, 2, 3, 4, 5]
    request = {"volt_now": [170.0, 160.0, 180.0, 150.0, 175.0], "vibration_now": [40.0] * 5}
    a = OnlineFeatures(sqlite).lookup_frame(ids, request)
    b = OnlineFeatures(redis).lookup_frame(ids, request)
    pd.testing.assert_frame_equal(a, b)
    # the direct read is the SDK's answer, value for value, on both stores (Redis: every
    # view in one pipeline)
    for settings in (sqlite, redis):
        direct, sdk = OnlineFeatures(settings), OnlineFeatures(settings, path="sdk")
        assert (direct.path, sdk.path) == ("direct", "sdk")
        twice = ids + ids[::-1]  # repeated entities, in any order
        values = {k: v + v[::-1] for k, v in request.items()}
        got, want = direct.lookup(twice, values), sdk.lookup(twice, values)
        assert got == want
        assert {k: [type(v) for v in col] for k, col in got.items()} == {
            k: [type(v) for v in col] for k, col in want.items()
        }
        assert [type(v) for v in got["model"]] == [type(v) for v in want["model"]] == [str] * 10
        for online in (direct, sdk):
            with pytest.raises(UnknownEntityError, match=r"\[77\]"):
                online.lookup([1, 77], {k: v[:2] for k, v in request.items()})

    # the online vector is the training vector at the newest timestamp
    end = tables["telemetry_agg"]["event_timestamp"].max()
    asked = entity_rows([str(end)] * 1, machine=1)
    asked["volt_now"] = 170.0
    train = feast_ops.build_training_set(asked, sqlite)
    assert train.feature_names == OnlineFeatures(sqlite).feature_names == list(a.columns)
    offline = train.frame.iloc[0][train.feature_names]
    pd.testing.assert_series_equal(
        a.loc[1].astype(object), offline.astype(object), check_names=False
    )
    assert len(labels) == len(feast_ops.build_training_set(labels, sqlite).frame)


def test_a_pod_without_the_registry_builds_its_own(repo: Path, fleet, tmp_path: Path) -> None:
    """On a cluster every step and the transformer run in their own pod, with the
    definitions in the image and no registry file: with ``features.registry_path`` set, the
    first store a pod opens applies the definitions there, and reads what the shared online
    and offline stores hold."""
    tables, labels = fleet
    shared = settings_for(repo)
    ready(shared, tables)
    feast_ops.materialize(shared)
    ids = [1, 2, 3]
    request = {"volt_now": [170.0, 160.0, 180.0], "vibration_now": [40.0] * 3}
    want = OnlineFeatures(shared).lookup(ids, request)
    want_train = feast_ops.build_training_set(labels, shared).frame

    registry = tmp_path / "pod" / "feast" / "registry.db"  # a fresh pod's writable path
    pod = settings_for(repo, registry_path=str(registry))
    assert not registry.exists()
    assert OnlineFeatures(pod).lookup(ids, request) == want
    assert registry.is_file()
    assert feast_ops.apply_definitions(pod)["applied"] == []  # already complete
    other = settings_for(repo, registry_path=str(tmp_path / "pod2" / "registry.db"))
    pd.testing.assert_frame_equal(feast_ops.build_training_set(labels, other).frame, want_train)


def test_offline_store_on_s3(repo: Path, fleet, s3_settings) -> None:
    tables, labels = fleet
    s3 = Settings(
        features={"repo_path": str(repo), "offline_store": "s3"},
        storage=s3_settings.model_dump(),
    )
    uris = feast_ops.publish_sources(tables, s3)
    assert uris["telemetry_agg"] == f"s3://{s3_settings.bucket}/features/telemetry_agg.parquet"
    feast_ops.apply_definitions(s3)
    source = feature_store(s3).get_feature_view("telemetry_agg").batch_source
    assert source.path.startswith("s3://") and source.file_options.s3_endpoint_override
    from_s3 = feast_ops.build_training_set(labels, s3).frame

    local = settings_for(repo)
    ready(local, tables)
    from_disk = feast_ops.build_training_set(labels, local).frame
    pd.testing.assert_frame_equal(from_s3, from_disk)
    assert feast_ops.materialize(s3)["window"] == sorted(tables)


def test_online_lookup_errors_and_redis_recovery(repo: Path, fleet, redis_server) -> None:
    tables, _ = fleet
    settings = settings_for(repo, online_store="redis", redis_connection=redis_server.connection)
    ready(settings, tables)
    feast_ops.materialize(settings, full=True)
    online = OnlineFeatures(settings)
    request = {"volt_now": [170.0], "vibration_now": [40.0]}
    assert online.request_fields == ["volt_now", "vibration_now"]
    assert len(online.lookup([1], request)["volt_zscore_24h"]) == 1

    with pytest.raises(UnknownEntityError, match=r"\[404\]"):
        online.lookup([1, 404], {k: v * 2 for k, v in request.items()})
    with pytest.raises(MissingRequestValueError, match="vibration_now"):
        online.lookup([1], {"volt_now": [170.0]})

    redis_server.stop()
    with pytest.raises(OnlineStoreUnavailable, match="features.online_store"):
        online.lookup([1], request)
    redis_server.start()  # a fresh, empty Redis on the same port
    refill = "online store is empty: run `esteira features materialize --full`"
    with pytest.raises(OnlineStoreEmpty) as empty:  # not "unknown machine"
        online.lookup([1], request)
    assert refill in empty.value.message and "Redis at" in empty.value.message
    assert refill in online.empty_reason()
    # the pipeline's own (incremental) materialize sees the missing sentinel and reloads all
    again = feast_ops.materialize(settings)
    assert again["sentinel_was_absent"] and again["full"] and again["window"] == sorted(tables)
    assert online.empty_reason() is None
    assert online.lookup([1], request)["age"] == online.lookup([1], request)["age"]
    assert online.lookup([2], request)["model"][0].startswith("model")


def test_direct_read_leaves_what_it_does_not_cover_to_the_sdk(repo: Path, fleet) -> None:
    from esteira.online import _DirectRead

    settings = settings_for(repo)
    ready(settings, fleet[0])
    store = feature_store(settings)
    service = store.get_feature_service(settings.features.feature_service)
    odfvs = {v.name: v for v in store.list_on_demand_feature_views()}
    assert _DirectRead.build(store, service, odfvs) is not None
    for view in odfvs.values():
        view.singleton = True  # one row at a time, scalars out: the SDK's
    assert _DirectRead.build(store, service, odfvs) is None
    for view in odfvs.values():
        view.singleton, view.mode = False, "pandas"  # a pandas-mode transform: the SDK's
    assert _DirectRead.build(store, service, odfvs) is None


def test_sqlite_direct_read_splits_keys_no_statement_can_bind(
    repo: Path, fleet, monkeypatch
) -> None:
    """The SQLite read asks for every view in one statement; more keys than one statement
    binds go in chunks, with the SDK's answer (repeats and an unknown entity included)."""
    import esteira.online

    settings = settings_for(repo)
    ready(settings, fleet[0])
    feast_ops.materialize(settings)
    sdk = OnlineFeatures(settings, path="sdk")
    monkeypatch.setattr(esteira.online, "SQLITE_MAX_PARAMETERS", 6)  # 3 views: 2 keys each
    direct = OnlineFeatures(settings)
    assert direct.path == "direct" and direct._direct._batched.chunk == 2
    ids = [3, 1, 4, 1, 5, 2, 3]
    request = {"volt_now": [150.0 + i for i in range(7)], "vibration_now": [40.0] * 7}
    assert direct.lookup(ids, request) == sdk.lookup(ids, request)
    with pytest.raises(UnknownEntityError, match=r"\[77\]"):
        direct.lookup([1, 2, 77], {k: v[:3] for k, v in request.items()})


def test_materialize_command_mistakes_are_one_line(repo: Path, tmp_path: Path, capsys) -> None:
    from esteira_cli.cli import main

    config = tmp_path / "config.yaml"
    config.write_text(f"features:\n  repo_path: {repo}\n")
    base = ["--config", str(config), "features", "materialize"]
    assert main([*base, "--end", "yesterday"]) == 2
    assert "--end: 'yesterday' is not an ISO time" in capsys.readouterr().err
    assert main([*base, "--full"]) == 2  # nothing applied yet
    err = capsys.readouterr().err
    assert "no feature views are registered" in err and "Traceback" not in err
