"""The compiled pipelines: typed run parameters, task settings by the rule, nested retraining.

The rule (pipelines/common.py, ARCHITECTURE.md "Task settings"): caching on where a task's
outputs depend only on its inputs, off where it reads mutable external state; retries with
backoff on tasks that write storage or the cluster; resources from ``kfp.*`` on every task.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from tests.test_compile import ROOT, compile_all

UNCACHED = {
    "fingerprint",  # reads the source's current content
    "compute-features",  # writes the Feast sources
    "feast-apply",  # the Feast registry
    "build-training-set",  # reads the Feast offline sources
    "register",  # the model registry
    "promote",
    "materialize",  # the online store
    "deploy",  # the cluster
}
CACHED = {"resolve-settings", "ingest", "validate", "train", "evaluate", "gate"}
CACHED |= {"plan-search", "search-trials", "pick-best"}  # the search: outputs from inputs
RETRIED = {"compute-features", "feast-apply", "register", "promote", "materialize", "deploy"}
NOT_RETRIED = {"resolve-settings", "fingerprint", "ingest", "validate", "train", "gate"}
NOT_RETRIED |= {"plan-search", "search-trials", "pick-best"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pipelines")
    compile_all(out)
    return out


def _spec(path: Path) -> dict:
    return next(yaml.safe_load_all(path.read_text()))


def _tasks(spec: dict) -> dict[str, dict]:
    """Every task of every DAG (the root and the sub-DAGs of conditions and nested pipelines)."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        tasks |= comp.get("dag", {}).get("tasks", {})
    return tasks


def test_training_exposes_typed_parameters_with_the_settings_defaults(compiled: Path) -> None:
    params = _spec(compiled / "training.yaml")["root"]["inputDefinitions"]["parameters"]
    shown = {name: (p["parameterType"], p.get("defaultValue")) for name, p in params.items()}
    assert shown == {
        "data_source_uri": ("STRING", "data/fleet.parquet"),
        "model_family": ("STRING", "gradient_boosting"),
        "hyperparameters": ("STRUCT", {}),
        "gate_metric": ("STRING", "roc_auc"),
        "gate_min": ("NUMBER_DOUBLE", 0.8),
        "min_improvement": ("NUMBER_DOUBLE", 0.0),
        "deploy": ("BOOLEAN", True),
        "use_case": ("STRING", "machine-failure"),
        "search": ("BOOLEAN", False),
        "config": ("STRING", ""),
        "code_version": ("STRING", shown["code_version"][1]),
    }
    assert not [n for n in params if n == "threshold"]


def test_a_config_file_sets_the_forms_defaults(tmp_path: Path) -> None:
    from esteira.config import Settings
    from esteira_cli.compile import compile_pipeline

    settings = Settings.model_validate(
        {"model": {"family": "random_forest"}, "gate": {"thresholds": {"pr_auc": 0.4}}}
    )
    path = compile_pipeline("training", settings, tmp_path)
    params = _spec(path)["root"]["inputDefinitions"]["parameters"]
    assert params["model_family"]["defaultValue"] == "random_forest"
    assert (params["gate_metric"]["defaultValue"], params["gate_min"]["defaultValue"]) == (
        "pr_auc",
        0.4,
    )


def test_caching_retries_and_resources_follow_the_rule(compiled: Path) -> None:
    spec = _spec(compiled / "training.yaml")
    tasks = _tasks(spec)
    caching = {n: t.get("cachingOptions", {}).get("enableCache", False) for n, t in tasks.items()}
    assert {n for n in CACHED if not caching[n]} == set()
    assert {n for n in UNCACHED if caching[n]} == set()
    for name in RETRIED:
        policy = tasks[name]["retryPolicy"]
        assert policy["maxRetryCount"] == 3 and policy["backoffDuration"] == "5s"
        assert policy["backoffFactor"] == 2.0 and policy["backoffMaxDuration"] == "60s"
    assert not {n for n in NOT_RETRIED if "retryPolicy" in tasks[n]}
    executors = spec["deploymentSpec"]["executors"]
    for name in CACHED | UNCACHED:
        executor = executors[
            spec["components"][tasks[name]["componentRef"]["name"]]["executorLabel"]
        ]
        resources = executor["container"]["resources"]
        assert {"resourceCpuRequest", "resourceCpuLimit"} <= set(resources), name
        assert {"resourceMemoryRequest", "resourceMemoryLimit"} <= set(resources), name
    train = executors["exec-train"]["container"]["resources"]
    assert (train["resourceCpuLimit"], train["resourceMemoryLimit"]) == ("2", "4Gi")
    validate = executors["exec-validate"]["container"]["resources"]
    assert (validate["resourceCpuLimit"], validate["resourceMemoryLimit"]) == ("1", "2Gi")


def test_resources_come_from_the_configuration_by_task_name(tmp_path: Path) -> None:
    from esteira.config import Settings
    from esteira_cli.compile import compile_pipeline

    settings = Settings.model_validate(
        {"kfp": {"retries": 1, "task_resources": {"train": {"memory_limit": "8Gi"}}}}
    )
    spec = _spec(compile_pipeline("training", settings, tmp_path))
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert train["resourceMemoryLimit"] == "8Gi"
    assert _tasks(spec)["register"]["retryPolicy"]["maxRetryCount"] == 1


def test_batch_and_monitoring_tasks_follow_the_rule(compiled: Path) -> None:
    batch = _tasks(_spec(compiled / "batch_prediction.yaml"))
    assert "retryPolicy" in batch["batch-predict"] and "retryPolicy" in batch["batch-features"]
    assert not batch["load-data"].get("cachingOptions", {}).get("enableCache")
    assert "retryPolicy" not in batch["validate"]
    monitoring = _tasks(_spec(compiled / "monitoring.yaml"))
    assert "retryPolicy" in monitoring["retrain"]
    assert not monitoring["drift-check"].get("cachingOptions", {}).get("enableCache")
    assert not monitoring["live-performance"].get("cachingOptions", {}).get("enableCache")


def test_monitoring_retrains_through_the_nested_training_pipeline(compiled: Path) -> None:
    spec = _spec(compiled / "monitoring.yaml")
    condition = spec["components"]["comp-condition-1"]["dag"]["tasks"]
    nested = next(t for t in condition.values() if t["componentRef"]["name"] != "comp-retrain")
    assert nested["componentRef"]["name"] == "comp-esteira-training"
    inputs = nested["inputs"]["parameters"]
    assert inputs["data_source_uri"]["taskOutputParameter"]["producerTask"] == "retrain"
    assert {"ingest", "train"} <= set(spec["components"]["comp-esteira-training"]["dag"]["tasks"])
    assert {"register", "promote", "deploy"} <= set(_tasks(spec))
    assert "retrain_mode" not in spec["root"]["inputDefinitions"]["parameters"]
    shown = spec["root"]["inputDefinitions"]["parameters"]
    assert shown["model_family"]["defaultValue"] == "gradient_boosting"
    assert (
        json.loads(
            spec["root"]["dag"]["tasks"]["resolve-settings"]["inputs"]["parameters"]["defaults"][
                "runtimeValue"
            ]["constant"]
        )["model"]["family"]
        == "gradient_boosting"
    )


def _starts_a_process(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [a.name for a in node.names]
            module = getattr(node, "module", None) or ""
            if "subprocess" in names or module == "subprocess":
                found.append(f"line {node.lineno}: imports subprocess")
            if module.startswith(("esteira_cli", "pipelines")) or any(
                n.startswith(("esteira_cli", "pipelines")) for n in names
            ):
                found.append(f"line {node.lineno}: imports {module or names}")
        if isinstance(node, ast.Constant) and node.value in ("esteira_cli.cli", "esteira_cli"):
            found.append(f"line {node.lineno}: names the CLI")
        if isinstance(node, ast.Attribute) and node.attr in ("Popen", "system", "execv", "spawnv"):
            found.append(f"line {node.lineno}: {node.attr}")
    return found


def test_no_component_starts_a_subprocess_of_the_cli_or_imports_pipelines() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in sorted((ROOT / "components").glob("*/*.py"))
        if (found := _starts_a_process(ast.parse(path.read_text())))
    }
    assert offenders == {}


def test_the_docker_runner_sees_the_settings_the_tasks_will(compiled: Path) -> None:
    """What `--runner docker` mounts follows the run's parameters, as resolve-settings will."""
    from esteira.config import Settings
    from esteira_cli.local_run import yaml_config

    given = {"data_source_uri": "/elsewhere/fleet.parquet", "model_family": "random_forest"}
    settings = yaml_config(compiled / "training.yaml", given, Settings())
    assert settings.data.source_uri == "/elsewhere/fleet.parquet"
    assert settings.model.family == "random_forest"
    assert yaml_config(compiled / "training.yaml", {}, Settings()).data.source_uri.endswith(
        "data/fleet.parquet"
    )
