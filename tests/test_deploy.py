"""The KServe InferenceService: its fields, CRD validity, manifest-only mode and apply."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.rest import ApiException

from esteira.config import Settings
from esteira.deploy import (
    MANIFEST_FILE,
    apply_inferenceservice,
    build_inferenceservice,
    deploy,
    model_format_version,
    sklearn_version_of,
)
from esteira.errors import EsteiraError
from esteira.registry import ModelVersion

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "schemas" / "kserve" / "inferenceservice_v1beta1.json"
URI = "s3://esteira/models/machine-failure/v3"


def settings(**kserve: Any) -> Settings:
    return Settings.model_validate({"kserve": kserve})


def version(uri: str = URI, **meta: Any) -> ModelVersion:
    metadata = {
        "data_hash": "sha256:0f3a",
        "library_versions": {"scikit-learn": "1.9.1"},
        "pipeline_run_id": "run-42",
        **meta,
    }
    return ModelVersion("machine-failure", 3, uri, metadata, ["production"])


def build(s: Settings | None = None, v: ModelVersion | None = None) -> dict[str, Any]:
    return build_inferenceservice(s or settings(), v or version(), sklearn_version="1.9.1")


def schema_errors(obj: dict[str, Any]) -> list[str]:
    """KServe CRD validation: esteira.manifests when present, else jsonschema on the CRD file."""
    try:
        from esteira.manifests import validate_inferenceservice
    except ImportError:
        import jsonschema

        validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
        return [e.message for e in validator.iter_errors(obj)]
    return validate_inferenceservice(obj)


def test_predictor_fields() -> None:
    obj = build()
    assert obj["apiVersion"] == "serving.kserve.io/v1beta1"
    assert obj["kind"] == "InferenceService"
    assert obj["metadata"]["name"] == "machine-failure"
    assert obj["metadata"]["namespace"] == "esteira"
    predictor = obj["spec"]["predictor"]
    model = predictor["model"]
    # KServe matches runtimes on the exact label; kserve-sklearnserver declares version "1"
    assert model["modelFormat"] == {"name": "sklearn", "version": "1"}
    # our own predictor, not whatever KServe's stock runtimes rank first (MLServer for v2)
    assert model["runtime"] == "esteira-sklearn"
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"] == URI
    assert model["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }
    sc = model["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert predictor["serviceAccountName"] == "esteira-models"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert "canaryTrafficPercent" not in predictor
    assert "transformer" not in obj["spec"]


def test_labels_and_annotations_trace_the_version() -> None:
    meta = build()["metadata"]
    assert meta["labels"]["esteira.io/model"] == "machine-failure"
    assert meta["labels"]["esteira.io/model-version"] == "3"
    assert meta["annotations"]["esteira.io/data-hash"] == "sha256:0f3a"
    assert meta["annotations"]["esteira.io/sklearn-version"] == "1.9.1"
    assert meta["annotations"]["esteira.io/model-uri"] == URI


@pytest.mark.usefixtures("kserve_schemas")
def test_settings_flow_into_the_spec() -> None:
    s = settings(
        namespace="ml",
        service_account="sa",
        protocol="v1",
        min_replicas=0,
        max_replicas=5,
        canary_traffic_percent=20,
        cpu="2",
        memory="4Gi",
    )
    obj = build(s)
    predictor = obj["spec"]["predictor"]
    assert obj["metadata"]["namespace"] == "ml"
    assert predictor["serviceAccountName"] == "sa"
    assert predictor["model"]["protocolVersion"] == "v1"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (0, 5)
    assert predictor["canaryTrafficPercent"] == 20
    assert predictor["model"]["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert schema_errors(obj) == []


def test_canary_zero_is_kept() -> None:
    assert (
        build(settings(canary_traffic_percent=0))["spec"]["predictor"]["canaryTrafficPercent"] == 0
    )


@pytest.mark.usefixtures("kserve_schemas")
def test_transformer_when_enabled() -> None:
    obj = build(settings(transformer=True))
    transformer = obj["spec"]["transformer"]
    (container,) = transformer["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"] == "ghcr.io/esteira/esteira-serving:0.1.0"
    assert container["command"] == ["python", "-m", "serving", "transformer"]
    # what the controller appends is left to it (it appends only when absent)
    assert container["args"] == ["--predictor_protocol=v1"]
    assert container["ports"][0]["containerPort"] == 8080
    assert container["securityContext"]["runAsNonRoot"] is True
    assert transformer["serviceAccountName"] == "esteira-models"
    assert schema_errors(obj) == []


def test_transformer_command_line_is_one_the_serving_entry_point_accepts() -> None:
    """The argv KServe's controller gives the container (its appends included)."""
    from esteira.launch import transformer_argv
    from serving.__main__ import build_parser

    argv = transformer_argv(build(settings(transformer=True)))
    assert argv[:4] == ["python", "-m", "serving", "transformer"]
    assert argv[5:] == ["--model_name", "machine-failure", "--predictor_host",
                        "machine-failure-predictor.esteira", "--http_port", "8080"]  # fmt: skip
    args = build_parser().parse_args(argv[3:])
    assert args.role == "transformer"
    assert args.predictor_host == "machine-failure-predictor.esteira"
    assert args.model_name == "machine-failure"
    assert args.protocol == "v1"
    assert args.http_port == 8080


def test_generated_isvc_launches_what_the_manifests_launch() -> None:
    """The deploy component's InferenceService and manifests/ start the same servers."""
    import shutil

    from esteira import launch

    if shutil.which("kubectl") is None:
        pytest.skip("kubectl not installed")
    rendered = launch.plan("machine-failure", "local")
    generated = build(settings(transformer=True))
    assert launch.transformer_argv(generated) == rendered.transformer
    from esteira.manifests import render_overlay

    runtime_name = generated["spec"]["predictor"]["model"]["runtime"]
    runtime = launch.find_runtime(render_overlay("local"), runtime_name)
    assert launch.predictor_argv(runtime, generated) == rendered.predictor
    image = runtime["spec"]["containers"][0]["image"]
    assert generated["spec"]["transformer"]["containers"][0]["image"] == image


@pytest.mark.parametrize("kserve", [{}, {"transformer": True, "canary_traffic_percent": 10}])
@pytest.mark.usefixtures("kserve_schemas")
def test_validates_against_the_kserve_crd_schema(kserve: dict[str, Any]) -> None:
    assert schema_errors(build(settings(**kserve))) == []


@pytest.mark.usefixtures("kserve_schemas")
def test_schema_check_catches_a_broken_object() -> None:
    obj = build()
    obj["spec"]["predictor"]["model"]["modelFormat"]["flavour"] = "x"
    obj["spec"]["predictor"]["minReplicas"] = "one"
    assert schema_errors(obj)


def test_sklearn_version_helpers() -> None:
    assert sklearn_version_of(version()) == "1.9.1"
    assert model_format_version("1.9.1") == "1"
    assert model_format_version("0.24.2") == "0"
    with pytest.raises(EsteiraError, match="library_versions"):
        sklearn_version_of(version(library_versions={}))
    with pytest.raises(EsteiraError):
        model_format_version("latest")


def test_name_must_be_a_dns_label() -> None:
    bad = ModelVersion("9lives", 1, URI, version().metadata, [])
    with pytest.raises(EsteiraError, match="model.name"):
        build(v=bad)


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))


@pytest.mark.usefixtures("kserve_schemas")
def test_manifest_only_writes_loadable_yaml(no_cluster: None, tmp_path: Path) -> None:
    result = deploy(settings(), version(), tmp_path / "deploy")  # cluster=None: detected
    assert (result.mode, result.ready, result.version) == ("manifest-only", False, 3)
    assert result.manifest == tmp_path / "deploy" / MANIFEST_FILE
    loaded = yaml.safe_load(result.manifest.read_text())
    assert loaded == build()
    assert schema_errors(loaded) == []


def test_cluster_needs_s3_storage(tmp_path: Path) -> None:
    with pytest.raises(EsteiraError, match="storage.kind"):
        deploy(settings(), version(uri="/data/models/machine-failure/v3"), tmp_path, cluster=True)
    assert (tmp_path / MANIFEST_FILE).exists()  # the manifest is written anyway


class FakeApi:
    """Stands in for CustomObjectsApi: remembers calls, answers like the API server."""

    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.calls: list[tuple[str, Any]] = []

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self.calls.append(("create", body))
        if self.exists:
            raise ApiException(status=409, reason="Conflict")
        return {**body, "metadata": {**body["metadata"], "generation": 1}}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self.calls.append(("get", name))
        return {"metadata": {"name": name, "resourceVersion": "777"}}

    def replace_namespaced_custom_object(self, group, version, namespace, plural, name, body):
        self.calls.append(("replace", body))
        return {**body, "metadata": {**body["metadata"], "generation": 5}}


class FakeKServe:
    def __init__(self, exists: bool = False, ready: bool = True) -> None:
        self.api_instance = FakeApi(exists)
        self.ready = ready
        self.waited: dict[str, Any] = {}

    def wait_isvc_ready(
        self,
        name,
        namespace=None,
        timeout_seconds=600,
        polling_interval=10,
        expected_generation=None,
        **_,
    ):
        self.waited = {"name": name, "timeout": timeout_seconds, "generation": expected_generation}
        if not self.ready:
            raise RuntimeError("Timeout to start the InferenceService")


def test_apply_creates_then_waits() -> None:
    fake = FakeKServe()
    apply_inferenceservice(build(), 30, client=fake)
    assert [c[0] for c in fake.api_instance.calls] == ["create"]
    assert fake.waited == {"name": "machine-failure", "timeout": 30, "generation": 1}


def test_apply_replaces_on_conflict_so_dropped_fields_go_away() -> None:
    fake = FakeKServe(exists=True)
    obj = build()
    apply_inferenceservice(obj, 30, client=fake)
    kinds = [c[0] for c in fake.api_instance.calls]
    assert kinds == ["create", "get", "replace"]
    replaced = fake.api_instance.calls[-1][1]
    assert replaced["metadata"]["resourceVersion"] == "777"
    assert "canaryTrafficPercent" not in replaced["spec"]["predictor"]
    assert "resourceVersion" not in obj["metadata"]  # the caller's object is untouched
    assert fake.waited["generation"] == 5


def test_apply_timeout_raises_clearly() -> None:
    with pytest.raises(EsteiraError, match="not Ready within 30s"):
        apply_inferenceservice(build(), 30, client=FakeKServe(ready=False))


def test_apply_api_refusal_raises_clearly() -> None:
    class Refusing(FakeApi):
        def create_namespaced_custom_object(self, *args, **kwargs):
            raise ApiException(status=403, reason="Forbidden")

    fake = FakeKServe()
    fake.api_instance = Refusing(False)
    with pytest.raises(EsteiraError, match="HTTP 403"):
        apply_inferenceservice(build(), 30, client=fake)


def test_deploy_failure_propagates(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import esteira.deploy as d

    def fail(obj: dict, timeout: int, **_: Any) -> dict:
        raise EsteiraError("InferenceService esteira/machine-failure", "not Ready within 1s")

    monkeypatch.setattr(d, "apply_inferenceservice", fail)
    with pytest.raises(EsteiraError, match="not Ready"):
        deploy(settings(), version(), tmp_path, cluster=True)


@pytest.mark.cluster
@pytest.mark.skipif(
    os.environ.get("ESTEIRA_TEST_CLUSTER") != "1", reason="set ESTEIRA_TEST_CLUSTER=1"
)
def test_apply_to_a_real_cluster(tmp_path: Path) -> None:
    """Needs KServe, the namespace, the service account and the model at URI in MinIO."""
    s = Settings()
    uri = os.environ.get("ESTEIRA_TEST_MODEL_URI", URI)
    result = deploy(s, version(uri=uri), tmp_path, cluster=True)
    assert result.mode == "cluster" and result.ready
