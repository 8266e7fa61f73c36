"""Deploy a registered model as a KServe InferenceService.

``build_inferenceservice`` builds the object with the KServe SDK classes and returns
it as a plain dict (the YAML/JSON Kubernetes sees). ``deploy`` always writes that
manifest to ``<manifest_dir>/inferenceservice.yaml``; with a cluster it also
creates or replaces the InferenceService and waits until it is Ready. If that
fails or times out it raises: the caller must not move the alias, and KServe
keeps routing traffic to the previous ready revision.

Decisions worth knowing:

* ``modelFormat.version`` is the *major* scikit-learn version ("1"). KServe picks a
  runtime by exact label match against ``supportedModelFormats`` and the stock
  ``kserve-sklearnserver`` declares ``sklearn`` version "1"; "1.9" would match no
  runtime. The exact training version goes into an annotation.
* On an existing InferenceService the object is *replaced* (with its
  resourceVersion), not merge-patched: a merge patch would keep fields this
  manifest dropped, e.g. an old ``canaryTrafficPercent``.
* The predictor pins ``runtime: esteira-sklearn`` (manifests/runtime), our own
  predictor from the serving image: KServe's stock sklearn runtimes would otherwise pick
  MLServer for a v2 InferenceService. The runtime has ``autoSelect: false``.
* The transformer runs the same serving image with the same command and args as
  manifests/base; KServe's controller appends ``--model_name``, ``--predictor_host``
  (``<isvc>-predictor.<namespace>``) and ``--http_port 8080``, which the transformer
  accepts (esteira/launch.py does the same locally).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from esteira.config import Settings
from esteira.errors import EsteiraError
from esteira.registry import ModelVersion

log = logging.getLogger(__name__)

MANIFEST_FILE = "inferenceservice.yaml"
KSERVE_CONTAINER = "kserve-container"
SERVING_IMAGE_NAME = "esteira-serving"
SERVING_RUNTIME = "esteira-sklearn"  # manifests/runtime/servingruntime.yaml
KSERVE_HTTP_PORT = 8080  # the port KServe gives a container (--http_port it appends)
LABEL_PREFIX = "esteira.io"
STOCK_RUNTIME = "kserve-sklearnserver"  # KServe's own sklearn ServingRuntime
_SKLEARN_KEYS = ("scikit-learn", "sklearn")
_ISVC_NAME_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class DeployResult:
    """What ``deploy`` did: ``mode`` is "cluster" or "manifest-only"."""

    mode: Literal["cluster", "manifest-only"]
    manifest: Path
    ready: bool
    name: str
    namespace: str
    version: int


# ---- building -------------------------------------------------------------------------------
def sklearn_version_of(version: ModelVersion) -> str:
    """The scikit-learn version that trained ``version`` (metadata.library_versions)."""
    libs = version.metadata.get("library_versions") or {}
    for key in _SKLEARN_KEYS:
        if libs.get(key):
            return str(libs[key])
    raise EsteiraError(
        f"model {version.name!r} v{version.version} metadata.library_versions.scikit-learn",
        "is missing; KServe needs it to pick a matching sklearn runtime",
        "register the model with library_versions={'scikit-learn': sklearn.__version__}",
    )


def model_format_version(sklearn_version: str) -> str:
    """The ``modelFormat.version`` KServe matches against runtimes: the major version."""
    match = re.match(r"(\d+)\.", sklearn_version.strip() + ".")
    if not match:
        raise EsteiraError(
            "sklearn_version",
            f"{sklearn_version!r} is not a version like 1.9.1",
            "pass sklearn.__version__ of the training environment",
        )
    return match.group(1)


def _labels(version: ModelVersion) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": version.name,
        "app.kubernetes.io/part-of": "esteira",
        f"{LABEL_PREFIX}/model": version.name,
        f"{LABEL_PREFIX}/model-version": str(version.version),
    }


def _annotations(version: ModelVersion, sklearn_version: str) -> dict[str, str]:
    meta = version.metadata
    values = {
        f"{LABEL_PREFIX}/model-uri": version.uri,
        f"{LABEL_PREFIX}/sklearn-version": sklearn_version,
        f"{LABEL_PREFIX}/data-hash": meta.get("data_hash"),
        f"{LABEL_PREFIX}/feature-service": meta.get("feature_service"),
        f"{LABEL_PREFIX}/pipeline-run-id": meta.get("pipeline_run_id"),
        f"{LABEL_PREFIX}/code-version": meta.get("code_version"),
    }
    return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _security_context() -> Any:
    """Hardened container: non-root, read-only root FS, no privilege escalation, no caps."""
    from kubernetes.client import V1Capabilities, V1SeccompProfile, V1SecurityContext

    return V1SecurityContext(
        run_as_non_root=True,
        read_only_root_filesystem=True,
        allow_privilege_escalation=False,
        privileged=False,
        capabilities=V1Capabilities(drop=["ALL"]),
        seccomp_profile=V1SeccompProfile(type="RuntimeDefault"),
    )


def _resources(settings: Settings) -> Any:
    from kubernetes.client import V1ResourceRequirements

    amounts = {"cpu": settings.kserve.cpu, "memory": settings.kserve.memory}
    return V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))


def _tmp_volume() -> tuple[Any, Any]:
    """A writable /tmp (emptyDir), since the root filesystem is read-only."""
    from kubernetes.client import V1EmptyDirVolumeSource, V1Volume, V1VolumeMount

    volume = V1Volume(name="tmp", empty_dir=V1EmptyDirVolumeSource(size_limit="256Mi"))
    return volume, V1VolumeMount(name="tmp", mount_path="/tmp")


def _predictor(settings: Settings, version: ModelVersion, sklearn_version: str) -> Any:
    from kserve import V1beta1ModelFormat, V1beta1ModelSpec, V1beta1PredictorSpec

    ks = settings.kserve
    volume, mount = _tmp_volume()
    model = V1beta1ModelSpec(
        name=KSERVE_CONTAINER,
        model_format=V1beta1ModelFormat(
            name="sklearn", version=model_format_version(sklearn_version)
        ),
        protocol_version=ks.protocol,
        runtime=SERVING_RUNTIME,
        storage_uri=version.uri,
        resources=_resources(settings),
        security_context=_security_context(),
        volume_mounts=[mount],
    )
    if ks.runtime == STOCK_RUNTIME:
        _use_stock_runtime(model, version.metadata.get("task", "classification"))
    return V1beta1PredictorSpec(
        model=model,
        service_account_name=ks.service_account,
        min_replicas=ks.min_replicas,
        max_replicas=ks.max_replicas,
        canary_traffic_percent=ks.canary_traffic_percent,
        labels=_labels(version),
        volumes=[volume],
    )


def _use_stock_runtime(model: Any, task: str) -> None:
    """Pin KServe's own sklearn server, answering a classifier's probabilities
    (``PREDICT_PROBA``) or a regression's values.

    It serves ``model.joblib`` as it is: no request validation, no prediction log, and
    only DataFrame-shaped requests, which the transformer sends (``serving/stock.py``).
    """
    from kubernetes.client import V1EnvVar

    model.runtime = STOCK_RUNTIME
    if task == "classification":
        model.env = [V1EnvVar(name="PREDICT_PROBA", value="true")]


def serving_image(settings: Settings) -> str:
    """The transformer image: ``<image.registry>/esteira-serving:<image.tag>``."""
    return f"{settings.image.registry.rstrip('/')}/{SERVING_IMAGE_NAME}:{settings.image.tag}"


def _transformer(settings: Settings, version: ModelVersion) -> Any:
    from kserve import V1beta1TransformerSpec
    from kubernetes.client import V1Container, V1ContainerPort

    ks = settings.kserve
    volume, mount = _tmp_volume()
    container = V1Container(
        name=KSERVE_CONTAINER,
        image=serving_image(settings),
        command=["python", "-m", "serving", "transformer"],
        # the controller appends --model_name, --predictor_host and --http_port
        args=[f"--predictor_protocol={settings.serving.predictor_protocol}"],
        ports=[V1ContainerPort(container_port=KSERVE_HTTP_PORT, name="http1", protocol="TCP")],
        resources=_resources(settings),
        security_context=_security_context(),
        volume_mounts=[mount],
    )
    if ks.runtime == STOCK_RUNTIME:  # the transformer speaks the stock server's shapes
        from kubernetes.client import V1EnvVar

        container.env = [V1EnvVar(name="ESTEIRA_KSERVE__RUNTIME", value=STOCK_RUNTIME)]
        # the stock server answers probabilities: the transformer cuts at the version's threshold
        threshold = version.metadata.get("decision_threshold", 0.5)
        container.args.append(f"--decision_threshold={float(threshold)!r}")
    return V1beta1TransformerSpec(
        containers=[container],
        service_account_name=ks.service_account,
        min_replicas=ks.min_replicas,
        max_replicas=ks.max_replicas,
        labels=_labels(version),
        volumes=[volume],
    )


def _check_name(name: str) -> None:
    if not _ISVC_NAME_RE.fullmatch(name) or len(name) > 45:
        raise EsteiraError(
            "model.name",
            f"{name!r} cannot name an InferenceService (DNS-1035 label, at most 45 characters "
            "so KServe's '-predictor-...' service names fit)",
            "start with a letter; use lowercase letters, digits and '-'",
        )


def build_inferenceservice(
    settings: Settings, version: ModelVersion, *, sklearn_version: str
) -> dict[str, Any]:
    """The InferenceService for ``version`` as a plain dict, built with the KServe SDK."""
    from kserve import V1beta1InferenceService, V1beta1InferenceServiceSpec, constants
    from kubernetes.client import ApiClient, V1ObjectMeta

    _check_name(version.name)
    spec = V1beta1InferenceServiceSpec(
        predictor=_predictor(settings, version, sklearn_version),
        transformer=_transformer(settings, version) if settings.kserve.transformer else None,
    )
    isvc = V1beta1InferenceService(
        api_version=constants.KSERVE_V1BETA1,
        kind=constants.KSERVE_KIND_INFERENCESERVICE,
        metadata=V1ObjectMeta(
            name=version.name,
            namespace=settings.kserve.namespace,
            labels=_labels(version),
            annotations=_annotations(version, sklearn_version),
        ),
        spec=spec,
    )
    return ApiClient().sanitize_for_serialization(isvc)


def write_manifest(obj: dict[str, Any], manifest_dir: Path) -> Path:
    """Write ``obj`` as YAML to ``manifest_dir/inferenceservice.yaml`` (atomically)."""
    manifest_dir.mkdir(parents=True, exist_ok=True)
    path = manifest_dir / MANIFEST_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(obj, sort_keys=False))
    os.replace(tmp, path)
    return path


# ---- applying -------------------------------------------------------------------------------
def cluster_available() -> bool:
    """True inside a pod (KUBERNETES_SERVICE_HOST) or when a kubeconfig loads."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    try:
        from kubernetes import config

        config.load_kube_config()
    except Exception:  # no kubeconfig, broken file, missing context: all mean "no cluster"
        return False
    return True


def apply_inferenceservice(obj: dict[str, Any], timeout: int, *, client: Any = None) -> dict:
    """Create the InferenceService, or replace it when it exists (409); wait until Ready.

    Raises EsteiraError on an API failure or when it is not Ready within ``timeout`` seconds.
    """
    from kserve import KServeClient, constants
    from kubernetes.client.rest import ApiException

    kserve_client = client or KServeClient()
    api = kserve_client.api_instance
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    group, version = constants.KSERVE_GROUP, constants.KSERVE_V1BETA1_VERSION
    plural = constants.KSERVE_PLURAL_INFERENCESERVICE
    try:
        try:
            out = api.create_namespaced_custom_object(group, version, namespace, plural, obj)
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = api.get_namespaced_custom_object(group, version, namespace, plural, name)
            body = {**obj, "metadata": {**obj["metadata"]}}
            body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            out = api.replace_namespaced_custom_object(
                group, version, namespace, plural, name, body
            )
    except ApiException as exc:
        raise EsteiraError(
            f"InferenceService {namespace}/{name}",
            f"the Kubernetes API refused it (HTTP {exc.status} {exc.reason})",
            "check kserve.namespace, RBAC and `kubectl describe isvc`",
        ) from None
    generation = out.get("metadata", {}).get("generation")
    try:
        kserve_client.wait_isvc_ready(
            name,
            namespace=namespace,
            timeout_seconds=timeout,
            polling_interval=min(5, timeout),
            expected_generation=generation,
        )
    except RuntimeError:
        raise EsteiraError(
            f"InferenceService {namespace}/{name}",
            f"not Ready within {timeout}s; the previous revision keeps serving",
            "raise kserve.ready_timeout_seconds or check `kubectl describe isvc` and pod logs",
        ) from None
    return out


def deploy(
    settings: Settings, version: ModelVersion, manifest_dir: Path, *, cluster: bool | None = None
) -> DeployResult:
    """Write the manifest; with a cluster (detected when ``cluster`` is None) apply it too."""
    sklearn_version = sklearn_version_of(version)
    obj = build_inferenceservice(settings, version, sklearn_version=sklearn_version)
    manifest = write_manifest(obj, Path(manifest_dir))
    use_cluster = cluster_available() if cluster is None else cluster
    ns = settings.kserve.namespace
    if not use_cluster:
        log.info("no cluster configured: wrote %s (manifest-only)", manifest)
        return DeployResult("manifest-only", manifest, False, version.name, ns, version.version)
    if not version.uri.startswith("s3://"):
        raise EsteiraError(
            "storage.kind",
            f"the cluster cannot read the local model path {version.uri}",
            "use storage.kind=s3 (MinIO) so KServe can download the model",
        )
    apply_inferenceservice(obj, settings.kserve.ready_timeout_seconds)
    log.info("InferenceService %s/%s is Ready with v%s", ns, version.name, version.version)
    return DeployResult("cluster", manifest, True, version.name, ns, version.version)
