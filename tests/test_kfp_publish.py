"""`esteira upload` and `esteira schedule`: the KFP API requests, checked against KFP's types.

The real kfp 2.17 client sends them to a stand-in for the KFP API (tests/kfp_api_double.py)
that checks every body against the ``kfp_server_api`` models. With ESTEIRA_TEST_CLUSTER=1
the last test runs both commands against ``kfp.host``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from esteira.config import ROOT, Settings
from esteira.errors import ConfigError
from esteira.kfp_support import IMAGE_ENV
from esteira.net import free_port
from esteira_cli.cli import main
from esteira_cli.kfp_api import (
    cron_6_fields,
    display_name,
    input_parameters,
    package_images,
    read_package,
    recurring_run_body,
    schedule_parameters,
)
from pipelines import PIPELINES
from tests.kfp_api_double import KfpApiDouble, type_errors

API = "/apis/v2beta1"


def test_cron_five_fields_become_kfp_six_fields() -> None:
    assert cron_6_fields("0 6 * * *") == "0 0 6 * * *"
    assert cron_6_fields("*/15  8-18 * * 1-5") == "0 */15 8-18 * * 1-5"
    assert cron_6_fields("30 0 6 * * *") == "30 0 6 * * *"  # already seconds first
    assert cron_6_fields("@daily") == "@daily"
    for bad in ("0 6 * *", "", "0 6 * * * * *", "0 6 * * mon;rm"):
        with pytest.raises(ConfigError, match="--cron"):
            cron_6_fields(bad)


# what the release workflow sets for `make compile` and `make upload` on tag v0.2.0
RELEASE_ENV = {"ESTEIRA_IMAGE__REGISTRY": "registry.example/acme", "ESTEIRA_IMAGE__TAG": "0.2.0"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/pipelines/monitoring.yaml as the release job's `make compile` writes it."""
    # a process of its own, as in the release job: a component's image is fixed when its module
    # is first imported, and earlier tests in this process imported them with the defaults
    out = tmp_path_factory.mktemp("pipelines")
    env = {k: v for k, v in os.environ.items() if k != IMAGE_ENV}
    argv = [sys.executable, "-m", "esteira_cli.cli", "compile", "monitoring", "--out", str(out)]
    done = subprocess.run(
        argv, cwd=ROOT, env={**env, **RELEASE_ENV}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_the_release_yaml_runs_the_version_tagged_image(compiled: Path) -> None:
    package = read_package(compiled / "monitoring.yaml")
    assert package_images(package) == {"registry.example/acme/esteira:0.2.0"}
    assert package.display_name == display_name("monitoring")
    for name in PIPELINES:  # every pipeline's KFP name, as `esteira schedule` derives it
        source = (ROOT / "pipelines" / f"{name}.py").read_text()
        assert f'@dsl.pipeline(name="{display_name(name)}"' in source


@pytest.fixture
def kfp(monkeypatch: pytest.MonkeyPatch) -> Iterator[KfpApiDouble]:
    with KfpApiDouble() as double:
        monkeypatch.setenv("ESTEIRA_KFP__HOST", double.host)
        monkeypatch.setenv("ESTEIRA_KFP__EXPERIMENT", "fleet-monitoring")
        for key, value in RELEASE_ENV.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("HOME", os.environ.get("HOME", "/root"))  # kfp reads its context
        yield double
        assert double.state.errors == []


def _run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_upload_creates_the_pipeline_then_the_version_and_is_idempotent(
    kfp: KfpApiDouble, compiled: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = _run(
        capsys, "upload", "monitoring", "--version", "0.2.0", "--dir", str(compiled)
    )
    assert code == 0, err
    assert "esteira-monitoring 0.2.0: uploaded" in out
    s = kfp.state
    (lookup,) = s.sent("GET", f"{API}/pipelines")[:1]
    assert '"stringValue": "esteira-monitoring"' in lookup.query["filter"]
    (created,) = s.sent("POST", f"{API}/pipelines")[:1]
    assert created.body["display_name"] == created.body["name"] == "esteira-monitoring"
    (upload,) = s.sent("POST", f"{API}/pipelines/upload_version")
    package = read_package(compiled / "monitoring.yaml")
    assert upload.query["name"] == upload.query["display_name"] == "0.2.0"
    assert upload.query["pipelineid"] == created_id(s, "esteira-monitoring")
    assert package.digest in upload.query["description"]
    assert upload.body["file"] == (compiled / "monitoring.yaml").read_bytes()

    # the same version and content again: nothing new is sent
    code, out, _ = _run(
        capsys, "upload", "monitoring", "--version", "0.2.0", "--dir", str(compiled)
    )
    assert code == 0 and "already there (same content)" in out
    assert len(s.sent("POST", f"{API}/pipelines/upload_version")) == 1
    assert len(s.sent("POST", f"{API}/pipelines")) == 2  # the two uploads, no second pipeline

    # other content under the same version: one line naming the fix, nothing sent
    other = compiled.parent / "other"
    other.mkdir(exist_ok=True)
    text = (compiled / "monitoring.yaml").read_text()
    (other / "monitoring.yaml").write_text(text.replace("0.8", "0.9", 1))
    code, _, err = _run(capsys, "upload", "monitoring", "--version", "0.2.0", "--dir", str(other))
    assert code == 2 and err.count("\n") == 1
    assert "--version: pipeline esteira-monitoring already has a version 0.2.0" in err
    assert "new version" in err
    # a new version of the same pipeline is added, not a new pipeline
    code, out, _ = _run(capsys, "upload", "monitoring", "--version", "0.2.1", "--dir", str(other))
    assert code == 0 and "0.2.1: uploaded" in out
    assert len(s.pipelines) == 1 and len(s.versions) == 2


def created_id(state, display_name: str) -> str:
    (pid,) = [p for p, v in state.pipelines.items() if v["display_name"] == display_name]
    return pid


def test_upload_without_names_takes_every_pipeline_and_checks_all_first(
    kfp: KfpApiDouble, compiled: Path, capsys
) -> None:
    # only monitoring.yaml is there: `esteira upload --version V` wants all three, and
    # sends nothing until every package is read and checked
    code, _, err = _run(capsys, "upload", "--version", "0.2.0", "--dir", str(compiled))
    assert code == 2 and f"{compiled / 'training.yaml'}: no compiled pipeline there" in err
    assert "make compile" in err and kfp.state.requests == []


def test_upload_refuses_a_package_compiled_for_another_image(
    kfp: KfpApiDouble, compiled: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("ESTEIRA_IMAGE__TAG", "9.9.9")
    code, _, err = _run(
        capsys, "upload", "monitoring", "--version", "9.9.9", "--dir", str(compiled)
    )
    assert code == 2 and "compiled for image registry.example/acme/esteira:0.2.0" in err
    assert "esteira:9.9.9" in err and kfp.state.requests == []


def test_schedule_monitoring_creates_updates_lists_deletes(
    kfp: KfpApiDouble, compiled: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    assert main(["upload", "monitoring", "--version", "0.2.0", "--dir", str(compiled)]) == 0
    # the configuration the schedule's parameters come from
    monkeypatch.setenv("ESTEIRA_DATA__SOURCE_URI", "s3://fleet/telemetry.parquet")
    monkeypatch.setenv("ESTEIRA_MODEL__FAMILY", "random_forest")
    monkeypatch.setenv("ESTEIRA_GATE__MIN_IMPROVEMENT", "0.01")
    code, out, err = _run(capsys, "schedule", "monitoring", "--cron", "0 6 * * *")
    assert code == 0, err
    assert "recurring run esteira-monitoring created" in out
    s = kfp.state
    (experiment,) = s.sent("POST", f"{API}/experiments")
    assert experiment.body == {"display_name": "fleet-monitoring"}
    (create,) = s.sent("POST", f"{API}/recurringruns")
    body = create.body
    (version_id,) = s.versions
    assert body["display_name"] == "esteira-monitoring"
    assert body["experiment_id"] == next(iter(s.experiments))
    assert body["pipeline_version_reference"] == {
        "pipeline_id": created_id(s, "esteira-monitoring"),
        "pipeline_version_id": version_id,
    }
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 6 * * *"}}
    assert body["max_concurrency"] == "1" and body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["runtime_config"] == {
        "parameters": {
            "labels_uri": "s3://fleet/telemetry.parquet",
            "model_family": "random_forest",
            "hyperparameters": {},
            "gate_metric": "roc_auc",
            "gate_min": 0.8,
            "min_improvement": 0.01,
            "deploy": True,
            "use_case": "machine-failure",
        }
    }

    # the same schedule again: unchanged, nothing created
    code, out, _ = _run(capsys, "schedule", "monitoring", "--cron", "0 6 * * *")
    assert code == 0 and "unchanged" in out and len(s.sent("POST", f"{API}/recurringruns")) == 1
    # another cron: a new recurring run, then the old one deleted (KFP cannot update one)
    old = next(iter(s.recurring_runs))
    code, out, _ = _run(
        capsys, "schedule", "monitoring", "--cron", "30 5 * * 1-5", "--param", "start=2026-01-01"
    )
    assert code == 0 and "updated" in out
    assert [r.path for r in s.sent("DELETE", f"{API}/recurringruns")] == [
        f"{API}/recurringruns/{old}"
    ]
    (current,) = s.recurring_runs.values()
    assert current["trigger"]["cron_schedule"]["cron"] == "0 30 5 * * 1-5"
    assert current["runtime_config"]["parameters"]["start"] == "2026-01-01"

    code, out, _ = _run(capsys, "schedule", "--list")
    assert code == 0 and "esteira-monitoring\t0 30 5 * * 1-5\tENABLE" in out
    code, out, _ = _run(capsys, "schedule", "--delete", "esteira-monitoring")
    assert code == 0 and s.recurring_runs == {}
    code, _, err = _run(capsys, "schedule", "--delete", "esteira-monitoring")
    assert code == 2 and "no recurring run named esteira-monitoring" in err


def test_schedule_parameters_are_checked_against_the_uploaded_types(
    kfp: KfpApiDouble, compiled: Path, capsys
) -> None:
    assert main(["upload", "monitoring", "--version", "0.2.0", "--dir", str(compiled)]) == 0
    code, _, err = _run(
        capsys, "schedule", "monitoring", "--cron", "0 6 * * *", "--param", "gate_min=high"
    )
    assert code == 2 and "--param gate_min: 'high' is not a NUMBER_DOUBLE" in err
    code, _, err = _run(capsys, "schedule", "monitoring", "--cron", "0 6 * * *", "--param", "x=1")
    assert code == 2 and "--param x: is not a parameter of the pipeline" in err
    assert kfp.state.sent("POST", f"{API}/recurringruns") == []
    code, _, err = _run(capsys, "schedule", "monitoring", "--cron", "6 * *")
    assert code == 2 and "--cron" in err
    # the default data.source_uri is a path on this machine: no cluster can read it
    code, _, err = _run(capsys, "schedule", "monitoring", "--cron", "0 6 * * *")
    assert code == 2 and "labels_uri: 'data/fleet.parquet' is a local path" in err
    assert kfp.state.sent("POST", f"{API}/recurringruns") == []


def test_the_uploaded_monitoring_version_has_the_manual_runs_typed_parameters(
    kfp: KfpApiDouble, compiled: Path
) -> None:
    """The version's spec is the compiled YAML `esteira run`/`esteira monitor` run locally
    (they load dist/pipelines/monitoring.yaml), so its form is the manual run's, with the
    retraining nested under the retrain decision."""
    assert main(["upload", "monitoring", "--version", "0.2.0", "--dir", str(compiled)]) == 0
    (version,) = kfp.state.versions.values()
    inputs = input_parameters(version["pipeline_spec"])
    assert {k: v["parameterType"] for k, v in inputs.items()} == {
        "labels_uri": "STRING",
        "start": "STRING",
        "end": "STRING",
        "model_family": "STRING",
        "hyperparameters": "STRUCT",
        "gate_metric": "STRING",
        "gate_min": "NUMBER_DOUBLE",
        "min_improvement": "NUMBER_DOUBLE",
        "deploy": "BOOLEAN",
        "use_case": "STRING",
        "config": "STRING",
    }
    assert not inputs["labels_uri"].get("isOptional")  # required, in the UI form too
    local = yaml.safe_load_all((compiled / "monitoring.yaml").read_text())
    assert inputs == next(local)["root"]["inputDefinitions"]["parameters"]
    # what `esteira monitor` passes to a manual run fits the same form
    manual = {"labels_uri": "/data/f.parquet", "start": "2026-01-01", "end": "2026-02-01"}
    assert schedule_parameters(Settings(), inputs, manual)["start"] == "2026-01-01"
    # a scheduled run that decides to retrain starts the nested training pipeline
    spec = version["pipeline_spec"]["pipeline_spec"]
    (branch,) = [t for t in spec["root"]["dag"]["tasks"].values() if "triggerPolicy" in t]
    assert "retrain-decision-Output'] == true" in branch["triggerPolicy"]["condition"]
    nested = spec["components"][branch["componentRef"]["name"]]["dag"]["tasks"]
    assert nested["esteira-training"]["componentRef"]["name"] == "comp-esteira-training"


def test_credentials_come_from_the_environment(
    kfp: KfpApiDouble, compiled: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    kfp.state.token, kfp.state.cookie = "t0k3n", "authservice_session=abc"
    start = time.monotonic()
    code, _, err = _run(capsys, "schedule", "--list")
    assert code == 2 and time.monotonic() - start < 5 and err.count("\n") == 1
    assert err.startswith("error: kfp.host:") and "wants credentials (HTTP 401" in err
    assert "ESTEIRA_KFP_TOKEN" in err and "Traceback" not in err
    monkeypatch.setenv("ESTEIRA_KFP_TOKEN", "t0k3n")
    monkeypatch.setenv("ESTEIRA_KFP_COOKIES", "authservice_session=abc")
    code, out, err = _run(capsys, "schedule", "--list")
    assert code == 0, err
    assert "no recurring runs in experiment fleet-monitoring" in out
    # only requests that carried both reached the API (the double answers 401 otherwise)
    assert len(kfp.state.sent("GET", f"{API}/experiments")) == 1
    assert kfp.state.sent("POST", f"{API}/experiments") == []  # listing creates nothing


def test_request_bodies_fit_kfps_api_types() -> None:
    body = recurring_run_body(
        name="m",
        experiment_id="e",
        pipeline_id="p",
        version_id="v",
        cron="0 0 6 * * *",
        parameters={"labels_uri": "s3://x", "gate_min": 0.8, "hyperparameters": {"a": 1}},
    )
    import kfp_server_api

    json_body = kfp_server_api.ApiClient().sanitize_for_serialization(body)
    assert type_errors(json_body, "V2beta1RecurringRun") == []
    assert type_errors({**json_body, "cron": "x"}, "V2beta1RecurringRun") != []
    assert type_errors({**json_body, "no_catchup": "yes"}, "V2beta1RecurringRun") != []


@pytest.mark.parametrize("argv", [["upload", "--version", "0.2.0"], ["schedule", "--list"]])
def test_unreachable_host_is_one_line_naming_kfp_host(
    argv: list[str], compiled: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    host = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("ESTEIRA_KFP__HOST", host)
    for key, value in RELEASE_ENV.items():
        monkeypatch.setenv(key, value)
    if argv[0] == "upload":
        argv = [*argv, "monitoring", "--dir", str(compiled)]
    start = time.monotonic()
    code, _, err = _run(capsys, *argv)
    assert code == 2 and time.monotonic() - start < 10
    assert err.startswith("error: kfp.host:") and host in err and err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.cluster
@pytest.mark.skipif(
    os.environ.get("ESTEIRA_TEST_CLUSTER") != "1", reason="set ESTEIRA_TEST_CLUSTER=1"
)
def test_upload_and_schedule_on_a_cluster(
    compiled: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Against kfp.host (ESTEIRA_KFP__HOST, credentials as in README): a throwaway version
    (left there: KFP keeps versions) and a recurring run, deleted at the end."""
    for key, value in RELEASE_ENV.items():
        monkeypatch.setenv(key, value)
    version = f"test-{int(time.time())}"
    name = f"esteira-test-{version}"
    upload = ["upload", "monitoring", "--version", version, "--dir", str(compiled)]
    assert main(upload) == 0
    assert main(upload) == 0  # the same content again: no change
    assert "already there" in capsys.readouterr().out
    argv = ["schedule", "monitoring", "--cron", "0 6 * * *", "--version", version]
    assert main([*argv, "--name", name]) == 0
    try:
        assert main(["schedule", "--list"]) == 0
        assert name in capsys.readouterr().out
    finally:
        assert main(["schedule", "--delete", name]) == 0
