"""`esteira models ...` end to end on a local registry holding a tiny real scikit-learn model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from esteira.registry import Registry
from esteira.storage import LocalStorage
from esteira_cli.cli import main

NAME = "machine-failure"


def tiny_model(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    pipe = Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]).fit(X, y)
    buf = io.BytesIO()
    joblib.dump(pipe, buf)
    return buf.getvalue()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """Three versions (roc_auc 0.81, 0.85, 0.83) in tmp_path/store; cwd is tmp_path; no cluster."""
    root = tmp_path / "store"
    monkeypatch.setenv("ESTEIRA_STORAGE__ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    reg = Registry(LocalStorage(root), NAME)
    for i, auc in enumerate([0.81, 0.85, 0.83]):
        reg.register(
            {"model.joblib": tiny_model(i), "reference.json": b"{}"},
            {
                "metrics": {"roc_auc": auc},
                "data_hash": f"sha256:{i}",
                "library_versions": {"scikit-learn": sklearn.__version__},
                "pipeline_run_id": f"run-{i}",
            },
        )
    return reg


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list(registry: Registry, capsys: pytest.CaptureFixture) -> None:
    registry.set_alias("production", 2)
    code, out, _ = run(capsys, "models", "list")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "CREATED", "ROC_AUC", "ALIASES"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        (NAME, "v1", "0.8100"),
        (NAME, "v2", "0.8500"),
        (NAME, "v3", "0.8300"),
    ]
    assert rows[1][4] == "production"


def test_list_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("ESTEIRA_STORAGE__ROOT", str(tmp_path / "empty"))
    code, out, _ = run(capsys, "models", "list")
    assert code == 0 and "no models registered" in out


def test_show_by_version_alias_and_default(
    registry: Registry, capsys: pytest.CaptureFixture
) -> None:
    code, out, _ = run(capsys, "models", "show", f"{NAME}:2")
    doc = json.loads(out)
    assert code == 0
    assert doc["version"] == 2 and doc["metadata"]["metrics"] == {"roc_auc": 0.85}
    assert doc["metadata"]["pipeline_run_id"] == "run-1"
    assert sorted(doc["files"]) == ["metadata.json", "model.joblib", "reference.json"]

    assert "decision_threshold" not in doc  # none recorded (e.g. regression)

    _, out, _ = run(capsys, "models", "show", NAME)  # no production yet: the newest
    assert json.loads(out)["version"] == 3

    registry.set_alias("production", 1)
    _, out, _ = run(capsys, "models", "show", f"{NAME}:production")
    assert json.loads(out)["version"] == 1
    _, out, _ = run(capsys, "models", "show", NAME)
    assert json.loads(out)["aliases"] == ["production"]


def test_show_missing_version_is_one_clear_line(
    registry: Registry, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run(capsys, "models", "show", f"{NAME}:v9")
    assert code == 2 and out == ""
    assert err.startswith("error: model 'machine-failure' ref 'v9'")
    assert "versions: v1, v2, v3" in err and "Traceback" not in err


def test_card_prints_the_stored_card_and_says_when_there_is_none(
    registry: Registry, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    code, out, err = run(capsys, "models", "card", f"{NAME}:2")
    assert code == 2 and out == "" and "\n" not in err.strip()
    assert "v2: has no model card" in err and "register it again" in err
    registry.register(
        {"model.joblib": tiny_model(9)},
        {"metrics": {"roc_auc": 0.9}},
        lambda number, meta: {"card.md": f"# Model card: v{number}\n".encode()},
    )
    code, out, _ = run(capsys, "models", "card", f"{NAME}:4")
    assert (code, out) == (0, "# Model card: v4\n")
    code, out, _ = run(capsys, "models", "card", f"{NAME}:v4", "--out", str(tmp_path / "c.md"))
    assert code == 0 and (tmp_path / "c.md").read_text() == "# Model card: v4\n"


def test_promote_and_history(registry: Registry, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "models", "promote", NAME, "1", "--reason", "first")
    assert code == 0 and "production -> v1" in out
    code, out, _ = run(capsys, "models", "promote", NAME, "v2")
    assert "production v1 -> v2" in out
    run(capsys, "models", "promote", NAME, "3", "--alias", "staging")
    assert registry.aliases() == {"production": 2, "staging": 3}

    code, out, _ = run(capsys, "models", "history", NAME)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 4
    assert "first" in lines[1] and "-> v1" in lines[1]
    _, out, _ = run(capsys, "models", "history", NAME, "--alias", "staging")
    assert len(out.strip().splitlines()) == 2


def test_promote_with_deploy_writes_the_manifest(
    registry: Registry, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "models", "promote", NAME, "2", "--deploy")
    assert code == 0 and "manifest-only" in out
    manifest = yaml.safe_load(
        (tmp_path / "dist/deploy" / NAME / "inferenceservice.yaml").read_text()
    )
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == registry.version_uri(2)
    code, _, err = run(capsys, "models", "promote", NAME, "3", "--alias", "staging", "--deploy")
    assert code == 2 and "--deploy" in err


def test_rollback_redeploys_the_previous_version(
    registry: Registry, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    for v in (1, 2, 3):
        registry.set_alias("production", v)

    code, out, _ = run(capsys, "models", "rollback", NAME, "--reason", "v3 drifts")
    assert code == 0 and "rolled back v3 -> v2" in out
    assert registry.aliases()["production"] == 2
    manifest = yaml.safe_load(
        (tmp_path / "dist/deploy" / NAME / "inferenceservice.yaml").read_text()
    )
    assert manifest["spec"]["predictor"]["model"]["storageUri"] == registry.version_uri(2)
    assert manifest["metadata"]["labels"]["esteira.io/model-version"] == "2"
    assert registry.history("production")[-1].reason == "v3 drifts"

    run(capsys, "models", "rollback", NAME)
    assert registry.aliases()["production"] == 1
    code, _, err = run(capsys, "models", "rollback", NAME)
    assert code == 2 and "no previous version" in err
    assert registry.aliases()["production"] == 1


def test_failed_redeploy_does_not_move_the_alias(
    registry: Registry, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import esteira.deploy as deploy_mod
    from esteira.errors import EsteiraError

    for v in (1, 2):
        registry.set_alias("production", v)

    def not_ready(*args: object, **kwargs: object) -> None:
        raise EsteiraError("InferenceService esteira/machine-failure", "not Ready within 1s")

    monkeypatch.setattr(deploy_mod, "deploy", not_ready)
    code, _, err = run(capsys, "models", "rollback", NAME)
    assert code == 2 and "not Ready" in err
    assert registry.aliases()["production"] == 2  # v2 keeps serving and keeps the alias


def test_rollback_of_a_non_served_alias_only_moves_it(
    registry: Registry, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    registry.set_alias("staging", 1)
    registry.set_alias("staging", 2)
    code, out, _ = run(capsys, "models", "rollback", NAME, "--alias", "staging")
    assert code == 0 and "v2 -> v1" in out
    assert not (tmp_path / "dist/deploy").exists()


def test_show_prints_the_decision_threshold_and_its_policy(
    registry: Registry, capsys: pytest.CaptureFixture
) -> None:
    policy = {"policy": "min_cost", "fn_cost": 20.0, "fp_cost": 1.0}
    registry.register(
        {"model.joblib": tiny_model(4), "reference.json": b"{}"},
        {"metrics": {"roc_auc": 0.9}, "decision_threshold": 0.0379, "threshold_policy": policy},
    )
    code, out, _ = run(capsys, "models", "show", f"{NAME}:4")
    doc = json.loads(out)
    assert code == 0 and doc["decision_threshold"] == 0.0379 and doc["threshold_policy"] == policy
