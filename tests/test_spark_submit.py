"""The Spark steps on a cluster: the SparkApplication template, its RBAC, the submit path.

The template is rendered by kustomize (manifests/spark/), filled from the settings and
validated against the Spark Operator's CRD schema (shared/schemas/spark-operator/). The
submit path runs up to the Kubernetes API call against a stand-in that checks each body;
``ESTEIRA_TEST_CLUSTER=1`` submits to a real cluster with the operator installed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from esteira import manifests as m
from esteira import spark_submit as ss
from esteira.config import ROOT, Settings
from esteira.errors import EsteiraError

SCHEMA = ROOT.parent / "shared" / "schemas" / "spark-operator" / "sparkapplication_v1beta2.json"
needs_kubectl = pytest.mark.skipif(
    not shutil.which("kubectl") and not os.environ.get("CI"), reason="kubectl not installed"
)


def schema_errors(obj: dict[str, Any]) -> list[str]:
    import jsonschema

    if not SCHEMA.is_file():
        pytest.skip(f"{SCHEMA} not present")
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl not installed")
    (app,) = m.parse_objects(m.kustomize_build(ROOT / "manifests" / "spark"))
    return app


def settings(**spark: Any) -> Settings:
    return Settings(
        features={"engine": "spark", "spark": spark},
        image={"registry": "registry.example/esteira", "tag": "1.2.3"},
    )


def test_rendered_template_validates(template: dict[str, Any]) -> None:
    assert template["kind"] == "SparkApplication"
    assert template["metadata"]["namespace"] == "esteira"
    assert schema_errors(template) == []
    broken = json.loads(json.dumps(template))
    broken["spec"]["executor"]["instances"] = "two"
    broken["spec"]["restartPolicy"] = {"type": "Sometimes"}
    assert len(schema_errors(broken)) == 2  # the schema does catch what is wrong


def test_filled_application_validates_and_comes_from_settings(template: dict[str, Any]) -> None:
    s = settings(executor_instances=5, executor_memory="3g", driver_memory="2g")
    app = ss.spark_application(
        s, "features", ["s3://b/raw.parquet", "s3://b/rows"], "run-1", template
    )
    assert schema_errors(app) == []
    spec = app["spec"]
    assert spec["image"] == "registry.example/esteira/esteira-spark:1.2.3"
    assert spec["executor"]["instances"] == 5 and spec["executor"]["memory"] == "3g"
    assert spec["driver"]["memory"] == "2g"
    assert spec["driver"]["serviceAccount"] == "esteira-spark"
    step, config, *inputs = spec["arguments"]
    assert step == "features" and inputs == ["s3://b/raw.parquet", "s3://b/rows"]
    inside = json.loads(config)["features"]
    assert inside["engine"] == "spark" and inside["spark"]["master"] == "cluster"
    # credentials: env from the Secret, never in the object
    for role in ("driver", "executor"):
        assert {"secretRef": {"name": "esteira-s3"}} in spec[role]["envFrom"]
    text = json.dumps(app).lower()
    assert "secret_access_key" not in text and "password" not in text
    # a name per run and step; the template itself is not changed
    other = ss.spark_application(s, "features", [], "run-2", template)
    assert other["metadata"]["name"] != app["metadata"]["name"]
    assert template["metadata"]["name"] == "esteira-features"


def test_unknown_step_is_a_clear_error(template: dict[str, Any]) -> None:
    with pytest.raises(EsteiraError, match="not a Spark step"):
        ss.spark_application(settings(), "train", [], "r", template)


@needs_kubectl
@pytest.mark.parametrize("overlay", ["local", "production"])
def test_spark_rbac_is_minimal(overlay: str) -> None:
    objects = m.render_overlay(overlay)
    assert m.validate_objects([o for o in objects if o["kind"] in {"Role", "RoleBinding"}]) == []
    roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Role"}
    (rule, status) = roles["esteira-pipeline-sparkapplications"]["rules"]
    assert rule["apiGroups"] == ["sparkoperator.k8s.io"]
    assert set(rule["verbs"]) == {"get", "list", "watch", "create"}
    assert status["resources"] == ["sparkapplications/status"] and status["verbs"] == ["get"]
    driver = roles["esteira-spark-driver"]["rules"]
    assert all("secrets" not in r["resources"] for r in driver)
    accounts = {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}
    assert "esteira-spark" in accounts


class Api:
    """Stands where kubernetes' CustomObjectsApi is: checks each body, answers like the server."""

    def __init__(self, states: list[str], conflict: bool = False, refuse: int = 0) -> None:
        self.created: list[dict[str, Any]] = []
        self.states = states
        self.conflict, self.refuse = conflict, refuse

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):  # noqa: ANN001
        from kubernetes.client.rest import ApiException

        assert (group, version, plural) == ("sparkoperator.k8s.io", "v1beta2", "sparkapplications")
        assert namespace == body["metadata"]["namespace"]
        assert schema_errors(body) == []
        if self.refuse:
            raise ApiException(status=self.refuse, reason="Forbidden")
        if self.conflict:
            raise ApiException(status=409, reason="Conflict")
        self.created.append(body)
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):  # noqa: ANN001
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {
            "metadata": {"name": name},
            "status": {"applicationState": {"state": state, "errorMessage": "driver OOMKilled"}},
        }


def test_submit_then_wait_until_completed(template: dict[str, Any]) -> None:
    app = ss.spark_application(settings(), "training-set", ["a", "b"], "r", template)
    api = Api(["SUBMITTED", "RUNNING", "COMPLETED"])
    ss.submit(app, api)
    done = ss.wait(app, api, timeout=5, poll=0.01)
    assert api.created == [app]
    assert done["status"]["applicationState"]["state"] == "COMPLETED"


def test_a_retried_submit_follows_the_existing_application(template: dict[str, Any]) -> None:
    app = ss.spark_application(settings(), "features", [], "r", template)
    api = Api(["RUNNING"], conflict=True)
    assert ss.submit(app, api)["status"]["applicationState"]["state"] == "RUNNING"
    assert api.created == []


def test_failures_are_one_line_errors(template: dict[str, Any]) -> None:
    app = ss.spark_application(settings(), "features", [], "r", template)
    with pytest.raises(EsteiraError, match="HTTP 403"):
        ss.submit(app, Api(["RUNNING"], refuse=403))
    with pytest.raises(EsteiraError, match="ended FAILED: driver OOMKilled"):
        ss.wait(app, Api(["RUNNING", "FAILED"]), timeout=5, poll=0.01)
    with pytest.raises(EsteiraError, match="not finished within"):
        ss.wait(app, Api(["RUNNING"]), timeout=0.05, poll=0.01)


@pytest.mark.cluster
@pytest.mark.skipif(
    os.environ.get("ESTEIRA_TEST_CLUSTER") != "1", reason="set ESTEIRA_TEST_CLUSTER=1"
)
def test_features_step_on_a_real_cluster() -> None:
    """Needs the Spark Operator, manifests/base applied, the Spark image pushed, and the raw
    data at ESTEIRA_TEST_RAW_URI in the configured S3 storage."""
    s = Settings()
    raw = os.environ.get("ESTEIRA_TEST_RAW_URI", "s3://esteira/data/fleet.parquet")
    rows = raw.rsplit("/", 1)[0] + "/spark-test-entities.parquet"
    done = ss.run_on_cluster(s, "features", [raw, rows], f"test-{os.getpid()}", timeout=1800)
    assert done["status"]["applicationState"]["state"] == "COMPLETED"


def test_template_file_is_in_the_repository() -> None:
    assert Path(ss.TEMPLATE).is_file()


@pytest.mark.parametrize(
    ("args", "has_spark"),
    [
        (["--no-dev"], False),  # docker/Dockerfile: the component image
        (["--no-dev", "--only-group", "serving"], False),  # docker/serving.Dockerfile
        (["--no-dev", "--group", "spark"], True),  # docker/spark.Dockerfile
    ],
    ids=["component", "serving", "spark"],
)
def test_only_the_spark_image_installs_pyspark(args: list[str], has_spark: bool) -> None:
    import subprocess

    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv not on PATH")
    out = subprocess.run(
        [uv, "export", "--frozen", "--no-hashes", "-q", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    pinned = {line.split("==")[0] for line in out.splitlines() if "==" in line}
    assert ("pyspark" in pinned) is has_spark
    assert ("py4j" in pinned) is has_spark
