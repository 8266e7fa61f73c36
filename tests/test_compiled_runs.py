"""`esteira run` executes the compiled YAML, and a task that writes nothing fails the run.

Subprocess runner (no engine needed); the same checks under DockerRunner are in
tests/test_containers.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from esteira.config import Settings
from esteira.docker_tasks import executor_input, missing_outputs, task_name
from esteira_cli.local_run import run_pipeline
from esteira_cli.training_run import run_training
from testkit.pipeline import small_workspace
from tests.tiny_pipelines import compile_to, tiny_forgets


@pytest.mark.slow
def test_the_run_obeys_an_edited_copy_of_the_compiled_yaml(tmp_path: Path) -> None:
    settings = small_workspace(tmp_path)  # gate threshold roc_auc 0.6 in the settings
    compiled = tmp_path / "pipelines" / "training.yaml"
    # what `esteira run` compiles and runs: the settings' threshold is in the YAML's default
    from esteira_cli.compile import compile_pipeline

    compile_pipeline("training", settings, compiled.parent)
    text = compiled.read_text()
    assert '"thresholds":{"roc_auc":0.6}' in text  # the compile-time defaults
    form = "      gate_min:\n        defaultValue: 0.6\n"
    assert form in text  # the run form's gate_min
    edited = tmp_path / "edited.yaml"
    edited.write_text(text.replace(form, form.replace("0.6", "0.99")))

    run = run_pipeline("training", settings, root=tmp_path / "outputs", pipeline_yaml=edited)

    assert run.status == "ok", run.error
    assert run.pipeline_yaml == str(edited)
    roc_auc = run.outputs["evaluate"]["parameters"]["Output"]["roc_auc"]
    assert 0.6 < roc_auc < 0.99  # the settings' gate would pass; the YAML's must not
    assert run.outputs["gate"]["parameters"]["Output"] is False
    assert "register" not in run.outputs  # nothing registered behind a closed gate
    assert not (tmp_path / "store" / "models").exists()


def test_a_task_that_exits_0_without_outputs_fails_the_run(tmp_path: Path) -> None:
    yaml_path = compile_to(tiny_forgets, tmp_path / "pipelines" / "tiny-forgets.yaml")

    run = run_pipeline(
        "tiny-forgets", Settings(), root=tmp_path / "outputs", pipeline_yaml=yaml_path
    )

    assert run.status == "failed"
    assert "task forgets-outputs" in run.error
    assert "did not write its declared outputs" in run.error
    assert "parameter Output" in run.error and "artifact rows" in run.error
    assert "count" not in run.outputs  # the next task never ran


def test_missing_outputs_reads_the_executor_input(tmp_path: Path) -> None:
    out = tmp_path / "task-a" / "executor_output.json"
    artifact = tmp_path / "task-a" / "rows"
    ex = {
        "outputs": {
            "outputFile": str(out),
            "parameters": {"Output": {"outputFile": str(tmp_path / "task-a" / "Output")}},
            "artifacts": {
                "rows": {
                    "artifacts": [{"uri": str(artifact), "type": {"schemaTitle": "system.Dataset"}}]
                },
                "scores": {"artifacts": [{"uri": "x", "type": {"schemaTitle": "system.Metrics"}}]},
            },
        }
    }
    command = ["sh", "-c", "...", "--executor_input", json.dumps(ex), "--function_to_execute", "f"]
    assert executor_input(command) == ex
    assert task_name(ex) == "task-a"
    assert missing_outputs(ex) == [
        "parameter Output",
        f"artifact rows ({artifact})",
        "artifact scores (system.Metrics)",
    ]
    out.parent.mkdir()
    out.write_text(json.dumps({"parameterValues": {"Output": 3}, "artifacts": {"scores": {}}}))
    artifact.write_text("x")
    assert missing_outputs(ex) == []


def test_run_training_compiles_next_to_its_root_and_records_the_runner(tmp_path: Path) -> None:
    settings = small_workspace(tmp_path, gate={"thresholds": {"roc_auc": 0.6}})
    # a failing contract stops the run at validate: quick, and the summary is still written
    strict = settings.model_copy(
        update={"validation": settings.validation.model_copy(update={"min_rows": 10**9})}
    )
    summary = run_training(strict, tmp_path / "run", root=tmp_path / "outputs")
    assert summary["status"] == "failed"
    assert summary["runner"] == "subprocess"
    assert summary["pipeline_yaml"] == str(tmp_path / "pipelines" / "training.yaml")
    assert '"min_rows":1000000000' in Path(summary["pipeline_yaml"]).read_text()
    assert summary["tasks"] == {}
