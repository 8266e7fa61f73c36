"""Render the kustomize overlays and validate every object they produce.

Core Kubernetes kinds are checked with ``kubernetes_validate`` in strict mode (unknown
fields are errors) against one fixed Kubernetes version. KServe kinds are checked against
the CRDs' ``openAPIV3Schema`` kept in ``shared/schemas/kserve/`` (or ``$ESTEIRA_KSERVE_SCHEMAS``).

Everything here is a pure function of its arguments plus ``kubectl kustomize``: no cluster.
``validate_inferenceservice`` is the public entry point for generated InferenceServices.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import yaml

from esteira.config import ROOT
from esteira.errors import EsteiraError

if TYPE_CHECKING:
    import jsonschema

MANIFESTS_DIR = ROOT / "manifests"
KUBERNETES_VERSION = "1.31"
KUSTOMIZE_TIMEOUT_SECONDS = 60
KSERVE_SCHEMAS_ENV = "ESTEIRA_KSERVE_SCHEMAS"
DEFAULT_KSERVE_SCHEMAS = ROOT.parent / "shared" / "schemas" / "kserve"

#: (apiVersion, kind) -> schema file name in the KServe schema directory.
KSERVE_SCHEMA_FILES: dict[tuple[str, str], str] = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice_v1beta1.json",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime_v1alpha1.json",
    ("serving.kserve.io/v1alpha1", "ClusterServingRuntime"): "clusterservingruntime_v1alpha1.json",
}
KSERVE_GROUP = "serving.kserve.io"

# KServe derives Service and host names from the ISVC name: it must be a DNS-1035 label.
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


# ---- rendering ----------------------------------------------------------------------------


def list_overlays(root: Path = MANIFESTS_DIR) -> list[str]:
    """Names of the overlays under ``<root>/overlays`` that hold a kustomization."""
    overlays = Path(root) / "overlays"
    return sorted(p.parent.name for p in overlays.glob("*/kustomization.yaml") if p.parent.is_dir())


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise EsteiraError(
            "kubectl",
            "not found on PATH; it renders the kustomize overlays (`kubectl kustomize`)",
            "install kubectl (any version >= 1.27 ships kustomize v5) and put it on PATH",
        )
    return kubectl


def kustomize_build(path: Path) -> str:
    """The multi-document YAML ``kubectl kustomize <path>`` prints, with a bounded run time."""
    try:
        proc = subprocess.run(
            [_kubectl(), "kustomize", str(path)],
            capture_output=True,
            text=True,
            timeout=KUSTOMIZE_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise EsteiraError(
            str(path),
            f"`kubectl kustomize` did not finish within {KUSTOMIZE_TIMEOUT_SECONDS}s",
            "look for remote bases or generators that hang; overlays must build offline",
        ) from None
    if proc.returncode != 0:
        raise EsteiraError(
            str(path),
            f"`kubectl kustomize` failed: {proc.stderr.strip() or 'no message'}",
            "fix the kustomization (run `kubectl kustomize` on it to see the same error)",
        )
    return proc.stdout


def parse_objects(text: str) -> list[dict[str, Any]]:
    """Parse multi-document YAML into a list of objects, dropping empty documents."""
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    for doc in objects:
        if not isinstance(doc, dict):
            raise EsteiraError(
                "manifest", f"a YAML document is a {type(doc).__name__}, not a mapping", ""
            )
    return objects


def render_overlay(overlay: str, root: Path = MANIFESTS_DIR) -> list[dict[str, Any]]:
    """Render ``<root>/overlays/<overlay>`` with kustomize and return its objects."""
    path = Path(root) / "overlays" / overlay
    if not (path / "kustomization.yaml").is_file():
        known = ", ".join(list_overlays(root)) or "none"
        raise EsteiraError(
            "overlay", f"{overlay!r} has no {path}/kustomization.yaml", f"use one of: {known}"
        )
    return parse_objects(kustomize_build(path))


def write_objects(objects: Iterable[dict[str, Any]], path: Path) -> Path:
    """Write objects as one multi-document YAML file (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))
    return path


def render_all(
    out_dir: Path | str = "dist/manifests", root: Path = MANIFESTS_DIR
) -> dict[str, Path]:
    """Render every overlay to ``<out_dir>/<overlay>.yaml``; returns overlay -> file."""
    overlays = list_overlays(root)
    if not overlays:
        raise EsteiraError(
            "manifests", f"no overlays found under {Path(root) / 'overlays'}", "add one"
        )
    out = Path(out_dir)
    return {
        name: write_objects(render_overlay(name, root), out / f"{name}.yaml") for name in overlays
    }


def load_objects(path: Path) -> list[dict[str, Any]]:
    """Read back a rendered multi-document YAML file."""
    return parse_objects(Path(path).read_text())


# ---- validation ---------------------------------------------------------------------------


def _require(module: str) -> ModuleType:
    """Import a validation dependency lazily, so `esteira` itself works without it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise EsteiraError(
            module,
            "is not installed; manifest validation needs it",
            "run `uv sync` (dev dependencies) or add it to the project's dependencies",
        ) from None


def describe(obj: dict[str, Any]) -> str:
    """``Kind/namespace/name`` (namespace omitted when absent) for messages and tables."""
    meta = obj.get("metadata") or {}
    parts = [str(obj.get("kind", "?")), meta.get("namespace"), meta.get("name", "?")]
    return "/".join(str(p) for p in parts if p)


def kserve_schema_dir() -> Path:
    """Directory of the KServe CRD schemas: ``$ESTEIRA_KSERVE_SCHEMAS`` or shared/."""
    override = os.environ.get(KSERVE_SCHEMAS_ENV)
    return Path(override) if override else DEFAULT_KSERVE_SCHEMAS


@lru_cache(maxsize=8)
def _kserve_validator(schema_path: Path) -> jsonschema.protocols.Validator:
    """A validator for one KServe CRD schema, closed at the top level.

    The files hold the CRD's ``openAPIV3Schema`` (nested objects already carry
    ``additionalProperties: false``). The API server prunes unknown top-level fields
    silently; here they are errors, and ``metadata`` and ``spec`` are required.
    """
    if not schema_path.is_file():
        raise EsteiraError(
            KSERVE_SCHEMAS_ENV,
            f"KServe CRD schema {schema_path} not found",
            f"set {KSERVE_SCHEMAS_ENV} to the directory holding "
            f"{', '.join(sorted(KSERVE_SCHEMA_FILES.values()))}",
        )
    schema = json.loads(schema_path.read_text())
    schema = {
        **schema,
        "additionalProperties": False,
        "required": sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"}),
    }
    jsonschema_ = _require("jsonschema")
    cls = jsonschema_.validators.validator_for(schema, default=jsonschema_.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


def _kserve_schema_errors(obj: dict[str, Any]) -> list[str]:
    key = (obj.get("apiVersion", ""), obj.get("kind", ""))
    schema_file = KSERVE_SCHEMA_FILES.get(key)
    if schema_file is None:
        known = ", ".join(f"{kind} ({api})" for api, kind in KSERVE_SCHEMA_FILES)
        return [f"{describe(obj)}: no KServe schema for {key[1]} {key[0]}; known: {known}"]
    validator = _kserve_validator(kserve_schema_dir() / schema_file)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{describe(obj)}: {_path(e)}: {e.message}" for e in errors]


def _metadata_errors(obj: dict[str, Any]) -> list[str]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [f"{describe(obj)}: metadata: must be a mapping"]
    errors = []
    name = meta.get("name")
    if not isinstance(name, str) or not _DNS1035_LABEL.match(name):
        errors.append(
            f"{describe(obj)}: metadata.name: {name!r} is not a DNS-1035 label "
            "(lowercase letters, digits, '-', starts with a letter, at most 63 chars)"
        )
    for field in ("labels", "annotations"):
        value = meta.get(field, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            errors.append(f"{describe(obj)}: metadata.{field}: must map strings to strings")
    return errors


def _replica_errors(obj: dict[str, Any]) -> list[str]:
    """Cross-field rules of every ISVC component that the CRD schema cannot express."""
    errors = []
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    for component in ("predictor", "transformer", "explainer"):
        comp = spec.get(component)
        if not isinstance(comp, dict):
            continue
        lo, hi = comp.get("minReplicas"), comp.get("maxReplicas")
        if isinstance(lo, int) and lo < 0:
            errors.append(f"{describe(obj)}: spec.{component}.minReplicas: {lo} is negative")
        if isinstance(lo, int) and isinstance(hi, int) and hi < max(lo, 1):
            errors.append(
                f"{describe(obj)}: spec.{component}.maxReplicas: {hi} is below "
                f"minReplicas {lo} (or below 1)"
            )
        canary = comp.get("canaryTrafficPercent")
        if isinstance(canary, int) and not 0 <= canary <= 100:
            errors.append(
                f"{describe(obj)}: spec.{component}.canaryTrafficPercent: {canary} not in 0..100"
            )
    return errors


def validate_inferenceservice(obj: dict[str, Any]) -> list[str]:
    """Violations of one KServe ``InferenceService`` (``serving.kserve.io/v1beta1``).

    Checks, without a cluster:

    * the CRD's JSON schema (types, required fields, unknown fields at any depth);
    * ``apiVersion``/``kind`` are exactly ``serving.kserve.io/v1beta1`` / ``InferenceService``;
    * ``metadata.name`` is a DNS-1035 label and labels/annotations map strings to strings;
    * per component: ``minReplicas >= 0``, ``maxReplicas >= max(minReplicas, 1)``,
      ``0 <= canaryTrafficPercent <= 100``.

    Returns one human-readable line per violation (``Kind/ns/name: path: message``); an
    empty list means valid. Raises ``EsteiraError`` only when the schema file is missing.
    The deploy component calls this on every InferenceService it generates before applying.
    """
    if not isinstance(obj, dict):
        return [f"InferenceService: expected a mapping, got {type(obj).__name__}"]
    expected = ("serving.kserve.io/v1beta1", "InferenceService")
    if (obj.get("apiVersion"), obj.get("kind")) != expected:
        return [
            f"{describe(obj)}: apiVersion/kind: got {obj.get('apiVersion')!r}/"
            f"{obj.get('kind')!r}, expected {expected[0]!r}/{expected[1]!r}"
        ]
    return _kserve_schema_errors(obj) + _metadata_errors(obj) + _replica_errors(obj)


def _core_errors(obj: dict[str, Any]) -> list[str]:
    kv = _require("kubernetes_validate")
    try:
        kv.validate(obj, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as exc:
        return [f"{describe(obj)}: {_path(exc)}: {exc.message}"]
    except kv.SchemaNotFoundError as exc:
        return [f"{describe(obj)}: {exc.message}"]
    return []


def validate_object(obj: dict[str, Any]) -> list[str]:
    """Violations of one object: KServe kinds by CRD schema, the rest by Kubernetes schema."""
    if not isinstance(obj, dict) or "apiVersion" not in obj or "kind" not in obj:
        return [f"{describe(obj) if isinstance(obj, dict) else obj!r}: needs apiVersion and kind"]
    if str(obj["apiVersion"]).split("/")[0] == KSERVE_GROUP:
        if obj["kind"] == "InferenceService":
            return validate_inferenceservice(obj)
        return _kserve_schema_errors(obj)
    return _core_errors(obj)


def validate_objects(objects: Iterable[dict[str, Any]]) -> list[str]:
    """All violations of all objects, in order; an empty list means every object is valid."""
    return [error for obj in objects for error in validate_object(obj)]
