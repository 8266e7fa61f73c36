import pandas as pd
import pytest

from testkit.pipeline import PM_REPO, generate_fleet


def test_same_seed_same_data_other_seed_other_data():
    a = generate_fleet(machines=4, days=5, seed=1)
    pd.testing.assert_frame_equal(a, generate_fleet(machines=4, days=5, seed=1))
    assert not a.equals(generate_fleet(machines=4, days=5, seed=2))


def test_shape_keys_and_types():
    import yaml

    df = generate_fleet(machines=6, days=4)
    assert list(df.columns) == list(
        yaml.safe_load((PM_REPO / "dataset.yaml").read_text())["columns"]
    )
    assert len(df) == 6 * 4 * 24
    assert sorted(df.machine_id.unique()) == list(range(1, 7))
    assert not df.duplicated(["machine_id", "timestamp"]).any()
    assert str(df.timestamp.dt.tz) == "UTC"
    assert df[["maintenance", "failure"]].isin([0, 1]).all().all()


def test_failures_are_preceded_by_degradation():
    df = generate_fleet(machines=30, days=120, seed=3)
    df = df.sort_values(["machine_id", "timestamp"])
    last_24h = df.groupby("machine_id")["error_count"].transform(
        lambda s: s.rolling(24, min_periods=1).sum()
    )
    assert df.failure.sum() > 20
    assert last_24h[df.failure == 1].mean() > 3 * last_24h.mean()  # errors cluster before failures


def test_a_later_period_keeps_the_fleet_and_drift_is_visible():
    train = generate_fleet(machines=40, days=10, start="2025-01-01")
    stable = generate_fleet(machines=40, days=10, start="2026-01-01", period="stable")
    drifted = generate_fleet(machines=40, days=10, start="2026-01-01", period="drifted")
    attrs = lambda d: d.groupby("machine_id")[["model", "age"]].first()  # noqa: E731
    pd.testing.assert_frame_equal(attrs(train), attrs(stable))
    assert not train.volt.equals(stable.volt)
    assert abs(stable.volt.mean() - train.volt.mean()) < 3
    assert drifted.volt.mean() - train.volt.mean() > 8
    assert "model5" in set(drifted.model) and "model5" not in set(train.model)


def test_run_generates_demo_data_at_a_new_path_under_data(tmp_path, monkeypatch):
    from esteira.config import Settings
    from esteira_cli.training_run import ensure_demo_data

    monkeypatch.chdir(tmp_path)
    settings = Settings.model_validate(
        {"data": {"source_uri": "data/small.parquet", "machines": 4, "days": 3}}
    )
    assert ensure_demo_data(settings) is True
    frame = pd.read_parquet(tmp_path / "data" / "small.parquet")
    assert frame["machine_id"].nunique() == 4
    assert ensure_demo_data(settings) is False  # present: left alone


def test_run_names_the_exact_command_for_a_missing_file_elsewhere(tmp_path, monkeypatch):
    from esteira.config import Settings
    from esteira.errors import DataError
    from esteira_cli.cli import main
    from esteira_cli.training_run import ensure_demo_data

    monkeypatch.chdir(tmp_path)
    target = tmp_path / "elsewhere" / "fleet.parquet"
    settings = Settings.model_validate(
        {"data": {"source_uri": str(target), "machines": 3, "days": 3, "seed": 7}}
    )
    with pytest.raises(DataError) as err:
        ensure_demo_data(settings, "team.yaml")
    assert not target.exists()  # a user's missing dataset is never replaced by demo data
    command = err.value.fix.split("`")[1]
    assert command.startswith("esteira --config team.yaml data generate --out ")
    # the command it names does what it says (run here without the config file it mentions)
    argv = command.removeprefix("esteira --config team.yaml ").split()
    assert main(argv) == 0
    assert pd.read_parquet(target)["machine_id"].nunique() == 3
