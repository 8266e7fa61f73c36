"""What the cluster runs, as local command lines: the launcher behind `esteira serve`.

The manifests are the source of truth. ``plan`` renders an overlay with
``kubectl kustomize`` and builds each server's argv the way KServe's controller builds
its container:

* **predictor**: the ServingRuntime the InferenceService pins
  (``spec.predictor.model.runtime``; a namespaced ``ServingRuntime`` wins over a
  ``ClusterServingRuntime`` of the same name), its container's ``command`` + ``args``,
  then the predictor's ``model.args`` (the controller concatenates them), with the
  template variables (``{{.Name}}``, ``{{.Namespace}}``, ``{{.Labels.k}}``,
  ``{{.Annotations.k}}``) filled from the InferenceService's metadata;
* **transformer**: ``spec.transformer.containers[0]`` ``command`` + ``args``, then what
  the controller appends when absent (prefix match, as ``utils.IncludesArg``):
  ``--model_name <isvc>``, ``--predictor_host <isvc>-predictor.<namespace>``,
  ``--http_port 8080`` (``--workers`` only with ``containerConcurrency``, which we do not set).

``localize`` then makes the only substitutions allowed (:data:`SUBSTITUTIONS`), and
``fill_model_dir`` is the storage-initializer step that fills the local models directory
from the registry. Nothing else differs from the cluster; tests/test_launch.py holds the
running processes' ``/proc/<pid>/cmdline`` to it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esteira.errors import EsteiraError

MODELS_MOUNT = "/mnt/models"  # where KServe's storage initializer puts the model
PREDICTOR_HOST_ARG = "--predictor_host"
HTTP_PORT_ARG = "--http_port"
GRPC_PORT_ARG = "--grpc_port"
MODEL_NAME_ARG = "--model_name"
DEFAULT_HTTP_PORT = "8080"  # constants.InferenceServiceDefaultHttpPort

#: The substitutions between the manifests and the local command lines; the README lists
#: them, and the launch test fails on any other difference.
SUBSTITUTIONS = (
    ("template variables", "{{.Name}} and the like, filled from the InferenceService's "
     "metadata as the controller does"),
    (MODELS_MOUNT, "the local models directory the storage-initializer step fills"),
    (f"{HTTP_PORT_ARG}, {GRPC_PORT_ARG}", "the local ports (serving.* settings)"),
    (PREDICTOR_HOST_ARG, "127.0.0.1:<predictor http port>"),
)  # fmt: skip

_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_FIELD = re.compile(r"\.(Name|Namespace)$")
_MAP_DOT = re.compile(r"\.(Labels|Annotations)\.([A-Za-z0-9_]+)$")
_MAP_INDEX = re.compile(r'index\s+\.(Labels|Annotations)\s+"([^"]+)"$')


@dataclass(frozen=True)
class Ports:
    """The local ports: the predictor's REST and gRPC, the transformer's REST."""

    predictor_http: int
    predictor_grpc: int
    transformer_http: int


@dataclass(frozen=True)
class Plan:
    """Cluster argv per role (templates filled, controller's appends done) and the
    InferenceService they come from."""

    isvc: dict[str, Any]
    predictor: list[str]
    transformer: list[str] | None

    @property
    def model_name(self) -> str:
        return str(self.isvc["metadata"]["name"])


# ---- the cluster's command lines --------------------------------------------------------
def fill_templates(text: str, meta: dict[str, Any]) -> str:
    """``text`` with KServe's template variables filled from ``meta`` (ObjectMeta)."""

    def one(match: re.Match[str]) -> str:
        expr = match.group(1)
        if m := _FIELD.match(expr):
            return str(meta.get(m.group(1).lower(), ""))
        m = _MAP_DOT.match(expr) or _MAP_INDEX.match(expr)
        if m:
            return str((meta.get(m.group(1).lower()) or {}).get(m.group(2), ""))
        raise EsteiraError(
            "ServingRuntime args",
            f"template {match.group(0)!r} is not one the launcher fills",
            "use {{.Name}}, {{.Namespace}}, {{.Labels.<key>}} or {{.Annotations.<key>}}",
        )

    return _TEMPLATE.sub(one, text)


def _only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict]:
    return [
        o
        for o in objects
        if o.get("kind") == kind and name in (None, (o.get("metadata") or {}).get("name"))
    ]


def find_runtime(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """The runtime an InferenceService pins: namespaced first, then cluster-wide."""
    for kind in ("ServingRuntime", "ClusterServingRuntime"):
        found = _only(objects, kind, name)
        if found:
            return found[0]
    raise EsteiraError(
        "spec.predictor.model.runtime",
        f"names {name!r}, which the rendered manifests do not define",
        "add the ServingRuntime to the kustomization (manifests/runtime)",
    )


def _container(spec: dict[str, Any], where: str) -> dict[str, Any]:
    containers = spec.get("containers") or []
    if not containers or "command" not in containers[0]:
        raise EsteiraError(
            where, "has no container with a command", "set command: [python, -m, serving, ...]"
        )
    return containers[0]


def predictor_argv(runtime: dict[str, Any], isvc: dict[str, Any]) -> list[str]:
    """Runtime command + args + the predictor's model.args, templates filled."""
    container = _container(runtime["spec"], f"{runtime['kind']} {runtime['metadata']['name']}")
    model = isvc["spec"]["predictor"].get("model") or {}
    argv = [*container["command"], *container.get("args", []), *model.get("args", [])]
    return [fill_templates(str(a), isvc["metadata"]) for a in argv]


def _includes(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag) for a in args)  # KServe's IncludesArg


def transformer_argv(isvc: dict[str, Any]) -> list[str]:
    """The transformer container's command + args + what the controller appends."""
    container = _container(isvc["spec"]["transformer"], "spec.transformer")
    args = list(container.get("args", []))
    meta = isvc["metadata"]
    if not _includes(args, MODEL_NAME_ARG):
        args += [MODEL_NAME_ARG, meta["name"]]
    if not _includes(args, PREDICTOR_HOST_ARG):
        args += [PREDICTOR_HOST_ARG, f"{meta['name']}-predictor.{meta.get('namespace', '')}"]
    if not _includes(args, HTTP_PORT_ARG):
        args += [HTTP_PORT_ARG, DEFAULT_HTTP_PORT]
    return [*container["command"], *args]


def plan_from_objects(objects: list[dict[str, Any]], model_name: str) -> Plan:
    found = _only(objects, "InferenceService", model_name)
    if not found:
        raise EsteiraError(
            "model.name",
            f"the rendered manifests hold no InferenceService {model_name!r}",
            "serve the model the manifests deploy, or add its InferenceService",
        )
    isvc = found[0]
    runtime_name = (isvc["spec"]["predictor"].get("model") or {}).get("runtime")
    if not runtime_name:
        raise EsteiraError(
            "spec.predictor.model.runtime", "is not set", "pin runtime: esteira-sklearn"
        )
    runtime = find_runtime(objects, runtime_name)
    transformer = transformer_argv(isvc) if isvc["spec"].get("transformer") else None
    return Plan(isvc, predictor_argv(runtime, isvc), transformer)


def plan(model_name: str, overlay: str = "local", root: Path | None = None) -> Plan:
    """Render ``overlay`` with kustomize and build the cluster argv of each server."""
    from esteira.manifests import MANIFESTS_DIR, render_overlay

    return plan_from_objects(render_overlay(overlay, root or MANIFESTS_DIR), model_name)


# ---- the listed substitutions -----------------------------------------------------------
def _replace_value(argv: list[str], flag: str, value: str) -> list[str]:
    """``flag=X`` -> ``flag=value`` and ``flag X`` -> ``flag value``."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith(flag + "="):
            out[i] = f"{flag}={value}"
        elif arg == flag and i + 1 < len(out):
            out[i + 1] = value
    return out


def _replace_mount(arg: str, models_dir: str) -> str:
    for prefix in ("", *[f"{f}=" for f in ("--model_dir", "--model-dir")]):
        if arg == prefix + MODELS_MOUNT or arg.startswith(prefix + MODELS_MOUNT + "/"):
            return prefix + models_dir + arg[len(prefix + MODELS_MOUNT) :]
    return arg


def localize(
    argv: list[str],
    *,
    http_port: int,
    grpc_port: int | None = None,
    models_dir: str | None = None,
    predictor_host: str | None = None,
) -> list[str]:
    """``argv`` with only the listed substitutions (:data:`SUBSTITUTIONS`) made."""
    out = _replace_value(argv, HTTP_PORT_ARG, str(http_port))
    if grpc_port is not None:
        out = _replace_value(out, GRPC_PORT_ARG, str(grpc_port))
    if predictor_host is not None:
        out = _replace_value(out, PREDICTOR_HOST_ARG, predictor_host)
    if models_dir is not None:
        out = [_replace_mount(a, models_dir) for a in out]
    return out


def local_argv(p: Plan, ports: Ports, models_dir: str | None) -> dict[str, list[str]]:
    """Each role's local argv; ``models_dir`` None keeps /mnt/models (a container mounts it)."""
    argvs = {
        "predictor": localize(
            p.predictor,
            http_port=ports.predictor_http,
            grpc_port=ports.predictor_grpc,
            models_dir=models_dir,
        )
    }
    if p.transformer is not None:
        argvs["transformer"] = localize(
            p.transformer,
            http_port=ports.transformer_http,
            predictor_host=f"127.0.0.1:{ports.predictor_http}",
        )
    return argvs


# ---- the storage-initializer step -------------------------------------------------------
def fill_model_dir(registry: Any, ref: int | str, dest: Path) -> Path:
    """Download a registry version into ``dest`` as KServe's storage initializer leaves its
    storageUri in /mnt/models: every file of the version, the commit marker included.

    Written into a sibling directory first and swapped in, so a server never reads a
    half-written directory. (KServe's own ``kserve-storage`` 0.21 downloads the same files
    but does not install within uv.lock: it pins google-cloud-storage below 3.)
    """
    from esteira.registry import COMPLETE_MARKER

    version = registry.resolve(ref)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = dest.with_name(f".{dest.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    registry.download(version, staging)
    marker = registry.storage.get_bytes(registry._vkey(version, COMPLETE_MARKER))
    (staging / COMPLETE_MARKER).write_bytes(marker)
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
