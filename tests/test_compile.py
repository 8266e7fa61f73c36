"""The compiled pipeline and component YAML: loads with kfp, stable bytes, one image, no run-time installs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kfp import components

ROOT = Path(__file__).resolve().parent.parent
TRAINING_TASKS = {
    "resolve-settings",
    "fingerprint",
    "ingest",
    "validate",
    "compute-features",
    "feast-apply",
    "build-training-set",
    "train",
    "evaluate",
    "register",
    "promote",
    "materialize",
    "deploy",
}


def compile_all(out: Path, image_tag: str = "9.9.9") -> None:
    env = {
        "ESTEIRA_IMAGE__REGISTRY": "registry.example/ml",
        "ESTEIRA_IMAGE__TAG": image_tag,
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run(
        [
            sys.executable,
            "-m",
            "esteira_cli.cli",
            "compile",
            "--out",
            str(out),
            "--components-out",
            str(out / "components"),
        ],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipelines")
    compile_all(out)
    return out


def all_tasks(spec: dict) -> set[str]:
    names = set(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        names |= set(comp.get("dag", {}).get("tasks", {}))
    return names


def test_training_yaml_loads_and_has_every_task(compiled):
    path = compiled / "training.yaml"
    assert components.load_component_from_file(str(path)).name == "esteira-training"
    spec = next(yaml.safe_load_all(path.read_text()))
    assert all_tasks(spec) >= TRAINING_TASKS


def test_every_compiled_pipeline_loads(compiled):
    files = sorted(compiled.glob("*.yaml"))
    assert "training.yaml" in [f.name for f in files]
    for f in files:
        components.load_component_from_file(str(f))


def test_every_component_compiles_alone_and_loads(compiled):
    from esteira_cli.catalog import component_names

    files = sorted((compiled / "components").glob("*.yaml"))
    assert [f.stem for f in files] == component_names()
    for f in files:
        assert components.load_component_from_file(str(f)).name == f.stem.replace("_", "-")


def test_compiling_twice_gives_identical_bytes(compiled, tmp_path):
    compile_all(tmp_path)
    files = sorted(compiled.rglob("*.yaml"))
    assert len(files) > 20
    for f in files:
        name = f.relative_to(compiled)
        assert (tmp_path / name).read_bytes() == f.read_bytes(), name


def test_one_image_from_config_and_no_runtime_installs(compiled):
    text = (compiled / "training.yaml").read_text()
    spec = next(yaml.safe_load_all(text))
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/ml/esteira:9.9.9"}
    assert "pip install" not in text and "pip3 install" not in text


def test_credentials_come_from_a_secret_not_parameters(compiled):
    spec_docs = list(yaml.safe_load_all((compiled / "training.yaml").read_text()))
    platform = spec_docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in platform.values():
        envs = {e["envVar"] for s in executor["secretAsEnv"] for e in s["keyToEnv"]}
        assert envs == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    root = spec_docs[0]["root"]
    assert root["inputDefinitions"]["parameters"]["config"]["defaultValue"] == ""
    resolve = root["dag"]["tasks"]["resolve-settings"]["inputs"]["parameters"]
    config = json.loads(resolve["defaults"]["runtimeValue"]["constant"])
    keys = {f"{section}.{key}" for section, values in config.items() for key in values}
    assert not {
        k for k in keys if any(w in k for w in ("access_key", "secret_key", "password", "token"))
    }
