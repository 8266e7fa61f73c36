"""The kustomize overlays render, validate, and hold the security and RBAC promises."""

from __future__ import annotations

import base64
import copy
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from esteira import manifests as m
from esteira.config import Settings
from esteira.errors import EsteiraError
from esteira_cli.cli import main
from testkit.services import S3_ACCESS_KEY, S3_SECRET_KEY

OVERLAYS = ("local", "production")
ALLOWED_VERBS = {"get", "list", "watch", "create", "patch", "update"}
Obj = dict[str, Any]

if not shutil.which("kubectl"):
    if os.environ.get("CI"):
        pytest.fail("kubectl is missing in CI: it renders the kustomize overlays")
    pytest.skip("kubectl not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    return {name: m.render_overlay(name) for name in OVERLAYS}


def only(objects: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def isvc(objects: list[Obj]) -> Obj:
    return only(objects, "InferenceService", "machine-failure")


def pod_specs(objects: list[Obj]) -> Iterator[tuple[str, Obj, list[Obj]]]:
    """(label, pod-level spec, containers) of every workload: Deployments and ISVC predictors."""
    for o in objects:
        if o["kind"] == "Deployment":
            spec = o["spec"]["template"]["spec"]
            yield m.describe(o), spec, spec["containers"] + spec.get("initContainers", [])
        elif o["kind"] == "InferenceService":
            predictor = o["spec"]["predictor"]
            yield m.describe(o), predictor, [predictor["model"], *predictor.get("containers", [])]
            if "transformer" in o["spec"]:
                transformer = o["spec"]["transformer"]
                yield f"{m.describe(o)} transformer", transformer, transformer["containers"]


_UNITS = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def quantity(value: str | int) -> float:
    number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value)).groups()
    return float(number) * _UNITS[unit]


# ---- rendering and schema validation ------------------------------------------------------


def test_both_overlays_exist() -> None:
    assert set(m.list_overlays()) == set(OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.usefixtures("kserve_schemas")
def test_every_object_validates(rendered: dict[str, list[Obj]], overlay: str) -> None:
    assert m.validate_objects(rendered[overlay]) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_namespaced_object_lives_in_esteira(
    rendered: dict[str, list[Obj]], overlay: str
) -> None:
    for o in rendered[overlay]:
        if o["kind"] == "Namespace":
            assert o["metadata"]["name"] == "esteira"
        else:
            assert o["metadata"].get("namespace") == "esteira", m.describe(o)


def test_render_all_writes_one_file_per_overlay(
    tmp_path: Path, rendered: dict[str, list[Obj]]
) -> None:
    paths = m.render_all(tmp_path / "out")
    assert paths == {name: tmp_path / "out" / f"{name}.yaml" for name in OVERLAYS}
    for name, path in paths.items():
        assert m.load_objects(path) == rendered[name]


def test_unknown_overlay_is_a_clear_error() -> None:
    with pytest.raises(EsteiraError, match="use one of: local, production"):
        m.render_overlay("staging")


def test_missing_kubectl_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EsteiraError, match="kubectl"):
        m.render_overlay("local")


def test_broken_kustomization_is_reported(tmp_path: Path) -> None:
    (tmp_path / "overlays" / "bad").mkdir(parents=True)
    (tmp_path / "overlays" / "bad" / "kustomization.yaml").write_text("resources: [nope.yaml]\n")
    with pytest.raises(EsteiraError, match="kubectl kustomize` failed"):
        m.render_overlay("bad", tmp_path)


# ---- the validators can fail ----------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, leaf = path.split(".")
        for key in parents:
            obj = obj[key]
        obj[leaf] = value

    return mutate


def _delete(path: str) -> Callable[[Obj], None]:
    def mutate(obj: Obj) -> None:
        *parents, leaf = path.split(".")
        for key in parents:
            obj = obj[key]
        del obj[leaf]

    return mutate


BROKEN_ISVCS = {
    "minReplicas of the wrong type": (_set("spec.predictor.minReplicas", "two"), "minReplicas"),
    "unknown field in the model": (_set("spec.predictor.model.storageUrl", "s3://x"), "storageUrl"),
    "unknown top-level field": (_set("specs", {}), "specs"),
    "missing predictor": (_delete("spec.predictor"), "predictor"),
    "modelFormat without a name": (_set("spec.predictor.model.modelFormat", {}), "name"),
    "wrong kind": (_set("kind", "InferenceServices"), "apiVersion/kind"),
    "name not a DNS-1035 label": (_set("metadata.name", "Machine_Failure"), "metadata.name"),
    "maxReplicas below minReplicas": (_set("spec.predictor.maxReplicas", 0), "maxReplicas"),
    "canary over 100": (_set("spec.predictor.canaryTrafficPercent", 150), "canaryTraffic"),
}


@pytest.mark.parametrize("case", BROKEN_ISVCS)
@pytest.mark.usefixtures("kserve_schemas")
def test_validate_inferenceservice_reports_broken_objects(
    rendered: dict[str, list[Obj]], case: str
) -> None:
    mutate, expected = BROKEN_ISVCS[case]
    broken = copy.deepcopy(isvc(rendered["local"]))
    mutate(broken)
    errors = m.validate_inferenceservice(broken)
    assert errors, f"{case} passed validation"
    assert any(expected in e for e in errors), errors


@pytest.mark.usefixtures("kserve_schemas")
def test_validate_inferenceservice_accepts_the_rendered_isvc(
    rendered: dict[str, list[Obj]],
) -> None:
    for overlay in OVERLAYS:
        assert m.validate_inferenceservice(isvc(rendered[overlay])) == []


def test_core_validation_is_strict(rendered: dict[str, list[Obj]]) -> None:
    deployment = copy.deepcopy(only(rendered["local"], "Deployment", "esteira-redis"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsNonroot"] = 1
    errors = m.validate_objects([deployment])
    assert len(errors) == 1 and "runAsNonroot" in errors[0]


def test_unknown_kinds_are_violations() -> None:
    unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert m.validate_objects([unknown])


def test_missing_kserve_schemas_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rendered: dict[str, list[Obj]]
) -> None:
    monkeypatch.setenv(m.KSERVE_SCHEMAS_ENV, str(tmp_path))
    with pytest.raises(EsteiraError, match=m.KSERVE_SCHEMAS_ENV):
        m.validate_inferenceservice(isvc(rendered["local"]))


# ---- workload hardening ---------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_workload_is_hardened(rendered: dict[str, list[Obj]], overlay: str) -> None:
    workloads = list(pod_specs(rendered[overlay]))
    assert len(workloads) == 8  # feature server, redis, and each model's predictor and transformer
    for label, pod, containers in workloads:
        pod_sc = pod.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, label
        assert pod_sc.get("seccompProfile") == {"type": "RuntimeDefault"}, label
        for c in containers:
            where = f"{label} container {c.get('name', 'model')}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"] == {"drop": ["ALL"]}, where
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, where
            requests, limits = c["resources"]["requests"], c["resources"]["limits"]
            for resource in ("cpu", "memory"):
                assert quantity(requests[resource]) <= quantity(limits[resource]), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_writable_paths_are_emptydirs(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for label, pod, containers in pod_specs(rendered[overlay]):
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in containers:
            mounts = {v["mountPath"]: v["name"] for v in c.get("volumeMounts", [])}
            assert mounts.get("/tmp") in empty_dirs, f"{label}: /tmp must be an emptyDir"
    redis = only(rendered[overlay], "Deployment", "esteira-redis")["spec"]["template"]["spec"]
    data = {v["mountPath"]: v["name"] for v in redis["containers"][0]["volumeMounts"]}["/data"]
    assert any(v["name"] == data and "emptyDir" in v for v in redis["volumes"])
    assert "/data" in redis["containers"][0]["args"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_persists_its_data(rendered: dict[str, list[Obj]], overlay: str) -> None:
    redis = only(rendered[overlay], "Deployment", "esteira-redis")["spec"]["template"]["spec"]
    args = redis["containers"][0]["args"]
    options = dict(zip(args[1::2], args[2::2], strict=False))
    # AOF on, or RDB snapshots with a schedule: a restarted container reloads its data
    assert options.get("--appendonly") == "yes" or options.get("--save", "") != ""


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned(rendered: dict[str, list[Obj]], overlay: str) -> None:
    for label, _, containers in pod_specs(rendered[overlay]):
        for c in containers:
            if "image" in c:
                assert re.search(r":\d+\.\d+\.\d+[\w.-]*$|@sha256:[0-9a-f]{64}$", c["image"]), label


# ---- the pieces fit together ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_inferenceservice_shape(rendered: dict[str, list[Obj]], overlay: str) -> None:
    predictor = isvc(rendered[overlay])["spec"]["predictor"]
    assert predictor["model"]["modelFormat"] == {"name": "sklearn", "version": "1"}
    assert predictor["model"]["protocolVersion"] == "v2"
    assert predictor["model"]["runtime"] == "esteira-sklearn"
    assert predictor["model"]["storageUri"] == "s3://esteira/models/machine-failure/v1"
    assert predictor["serviceAccountName"] == Settings().kserve.service_account
    assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_serving_runtime_is_ours(rendered: dict[str, list[Obj]], overlay: str) -> None:
    """esteira-sklearn runs the serving image; the transformer runs the same image."""
    from esteira.deploy import serving_image

    runtime = only(rendered[overlay], "ServingRuntime", "esteira-sklearn")
    assert runtime["metadata"]["namespace"] == "esteira"
    spec = runtime["spec"]
    assert spec["supportedModelFormats"] == [
        {"name": "sklearn", "version": "1", "autoSelect": False}
    ]
    assert spec["protocolVersions"] == ["v1", "v2", "grpc-v2"]
    (container,) = spec["containers"]
    assert container["image"] == serving_image(Settings())
    assert container["command"] == ["python", "-m", "serving", "predictor"]
    assert container["args"] == ["--model_name={{.Name}}", "--model_dir=/mnt/models",
                                 "--http_port=8080", "--grpc_port=8081"]  # fmt: skip
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http1": 8080, "h2c": 8081}
    (transformer,) = isvc(rendered[overlay])["spec"]["transformer"]["containers"]
    assert transformer["image"] == container["image"]
    config = only(rendered[overlay], "ConfigMap")["metadata"]["name"]
    assert transformer["envFrom"] == [{"configMapRef": {"name": config}}]


@pytest.mark.usefixtures("kserve_schemas")
def test_cluster_runtime_is_the_same_runtime_cluster_wide(rendered: dict[str, list[Obj]]) -> None:
    (cluster,) = m.parse_objects(m.kustomize_build(m.MANIFESTS_DIR / "cluster"))
    assert cluster["kind"] == "ClusterServingRuntime"
    assert "namespace" not in cluster["metadata"]
    assert m.validate_objects([cluster]) == []
    namespaced = only(rendered["local"], "ServingRuntime", "esteira-sklearn")
    assert cluster["spec"] == namespaced["spec"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_feature_server_and_redis(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    deployment = only(objects, "Deployment", "esteira-feature-server")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == Settings().image.reference
    assert container["command"] == [
        *("feast", "-c", "/app/feature_repo/predictive_maintenance", "serve"),
        *("-h", "0.0.0.0", "-p", "6566"),
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert {"name": "http", "containerPort": 6566} in container["ports"]
    service = only(objects, "Service", "esteira-feature-server")
    assert service["spec"]["ports"] == [{"name": "http", "port": 6566, "targetPort": "http"}]
    for name in ("esteira-feature-server", "esteira-redis"):
        pod_labels = only(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        selector = only(objects, "Service", name)["spec"]["selector"]
        assert selector.items() <= pod_labels.items(), name
    redis = only(objects, "Deployment", "esteira-redis")
    assert redis["spec"]["replicas"] == 1
    # Feast runs on the Redis variant of the repo, pointed at the esteira-redis Service.
    env = {e["name"]: e.get("value") for e in container["env"]}
    variant = Path(env["FEAST_FS_YAML_FILE_PATH"].replace("/app/", f"{m.ROOT}/", 1))
    assert yaml.safe_load(variant.read_text())["online_store"]["type"] == "redis"
    config = next(o for o in objects if o["kind"] == "ConfigMap")["data"]
    redis_port = only(objects, "Service", "esteira-redis")["spec"]["ports"][0]["port"]
    assert config["ESTEIRA_REDIS"] == f"esteira-redis:{redis_port}"
    assert config["ESTEIRA_FEATURES__REDIS_CONNECTION"] == config["ESTEIRA_REDIS"]
    assert re.fullmatch(
        r"redis:7\.\d+\.\d+-alpine", redis["spec"]["template"]["spec"]["containers"][0]["image"]
    )


def test_local_is_small_and_production_scales(rendered: dict[str, list[Obj]]) -> None:
    local, prod = isvc(rendered["local"]), isvc(rendered["production"])
    assert (
        local["spec"]["predictor"]["minReplicas"] == local["spec"]["predictor"]["maxReplicas"] == 1
    )
    assert 2 <= prod["spec"]["predictor"]["minReplicas"] < prod["spec"]["predictor"]["maxReplicas"]
    for kind, name in [
        ("InferenceService", "machine-failure"),
        ("Deployment", "esteira-feature-server"),
    ]:
        sizes = {}
        for overlay in OVERLAYS:
            obj = only(rendered[overlay], kind, name)
            _, _, containers = next(pod_specs([obj]))
            sizes[overlay] = quantity(containers[0]["resources"]["limits"]["memory"])
        assert sizes["production"] > sizes["local"], name
    assert only(rendered["local"], "Deployment", "esteira-feature-server")["spec"]["replicas"] == 1
    hpa = only(rendered["production"], "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "esteira-feature-server"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    # the HPA owns the replica count in production
    assert (
        "replicas"
        not in only(rendered["production"], "Deployment", "esteira-feature-server")["spec"]
    )


@pytest.mark.parametrize(
    ("overlay", "endpoint", "https"),
    [("local", "minio-service.kubeflow:9000", False), ("production", None, True)],
)
def test_s3_endpoint_matches_between_kserve_and_esteira(
    rendered: dict[str, list[Obj]],
    monkeypatch: pytest.MonkeyPatch,
    overlay: str,
    endpoint: str | None,
    https: bool,
) -> None:
    annotations = only(rendered[overlay], "Secret", "esteira-s3")["metadata"]["annotations"]
    config = next(o for o in rendered[overlay] if o["kind"] == "ConfigMap")
    assert config["metadata"]["name"].startswith("esteira-config-")
    if endpoint:
        assert annotations["serving.kserve.io/s3-endpoint"] == endpoint
    assert annotations["serving.kserve.io/s3-usehttps"] == ("1" if https else "0")
    for key, value in config["data"].items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # the ConfigMap is a valid esteira configuration
    assert settings.storage.kind == "s3"
    assert settings.storage.endpoint == annotations["serving.kserve.io/s3-endpoint"]
    assert settings.storage.secure is https
    assert settings.storage.region == annotations["serving.kserve.io/s3-region"]


# ---- credentials and RBAC -------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_secret_is_a_placeholder_template(rendered: dict[str, list[Obj]], overlay: str) -> None:
    secret = only(rendered[overlay], "Secret")
    assert secret["metadata"]["name"] == Settings().kfp.secret_name
    assert secret["type"] == "Opaque"
    values = dict(secret.get("stringData", {}))
    values |= {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    assert values == {"AWS_ACCESS_KEY_ID": "REPLACE_ME", "AWS_SECRET_ACCESS_KEY": "REPLACE_ME"}
    annotations = secret["metadata"]["annotations"]
    for key in ("s3-endpoint", "s3-usehttps", "s3-region", "s3-useanoncredential"):
        assert f"serving.kserve.io/{key}" in annotations
    models = only(rendered[overlay], "ServiceAccount", "esteira-models")
    assert {"name": secret["metadata"]["name"]} in models["secrets"]


def test_no_test_credentials_leak_into_manifests() -> None:
    text = "\n".join(p.read_text() for p in m.MANIFESTS_DIR.rglob("*.yaml"))
    assert S3_ACCESS_KEY not in text and S3_SECRET_KEY not in text


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pipeline_rbac_is_minimal(rendered: dict[str, list[Obj]], overlay: str) -> None:
    objects = rendered[overlay]
    assert not [o for o in objects if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    role = only(objects, "Role", "esteira-pipeline-inferenceservices")  # Spark's: test_spark_submit
    assert len(role["rules"]) == 1
    rule = role["rules"][0]
    assert rule["apiGroups"] == ["serving.kserve.io"]
    assert rule["resources"] == ["inferenceservices"]
    assert set(rule["verbs"]) <= ALLOWED_VERBS and "*" not in rule["verbs"]
    assert not {"resourceNames", "nonResourceURLs"} & rule.keys()
    binding = only(objects, "RoleBinding", "esteira-pipeline-inferenceservices")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "esteira-pipeline", "namespace": "esteira"}
    ]
    only(objects, "ServiceAccount", "esteira-pipeline")


# ---- the command ----------------------------------------------------------------------------


@pytest.mark.usefixtures("kserve_schemas")
def test_command_renders_validates_and_prints_a_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manifests", "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "InferenceService" in out and "machine-failure" in out
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["katib-experiment.yaml", "local.yaml", "production.yaml"]


@pytest.mark.usefixtures("kserve_schemas")
def test_command_exits_non_zero_with_the_violations(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "manifests"
    shutil.copytree(m.MANIFESTS_DIR, root)
    path = root / "base" / "isvc" / "inferenceservice.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["predictor"]["model"]["protocolVersion"] = 2  # a string in the CRD
    path.write_text(yaml.safe_dump(doc))
    code = main(["manifests", "--root", str(root), "--out-dir", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert (
        "local: InferenceService/esteira/machine-failure: spec.predictor.model.protocolVersion"
        in err
    )
