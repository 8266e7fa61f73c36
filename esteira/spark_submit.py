"""The Spark feature steps on a cluster: a SparkApplication for the Kubeflow Spark Operator.

Thin on purpose: :func:`spark_application` fills the template (``manifests/spark/``) from
esteira's settings, :func:`submit` creates it through the Kubernetes API and
:func:`wait` follows its ``status.applicationState`` to the end. What runs inside is
``esteira/spark_job.py`` in the Spark image (docker/spark.Dockerfile).

* image: ``image.spark_reference``; resources: ``features.spark`` (driver and executor
  cores and memory, executor instances, shuffle partitions);
* S3 credentials: env from the ``esteira-s3`` Secret on driver and executors (the template);
  never an argument, never in the object;
* arguments: the step, then the settings JSON (non-secret, as every KFP task's ``config``),
  then the step's inputs (URIs).

Feast's own ``spark_application`` compute engine submits materialization through the same
operator; the feature tables and the training set are esteira's steps, so they use this.
"""

from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path
from typing import Any

import yaml

from esteira.config import ROOT, Settings, settings_to_json
from esteira.errors import EsteiraError

TEMPLATE = ROOT / "manifests" / "spark" / "sparkapplication.yaml"
GROUP, VERSION, PLURAL = "sparkoperator.k8s.io", "v1beta2", "sparkapplications"
STEPS = ("features", "training-set")
SPARK_VERSION = "4.0.0"
_DONE = {"COMPLETED": True, "FAILED": False, "SUBMISSION_FAILED": False}


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    if not path.is_file():
        raise EsteiraError(
            "spark template", f"{path} does not exist", "ship manifests/spark/ with the image"
        )
    return yaml.safe_load(path.read_text())


def application_name(step: str, run_id: str) -> str:
    """``esteira-<step>-<hash of the run>``: a DNS label, unique per run and step."""
    digest = hashlib.sha256(f"{step}|{run_id}".encode()).hexdigest()[:10]
    return re.sub(r"[^a-z0-9-]", "-", f"esteira-{step}-{digest}".lower())


def spark_application(
    settings: Settings,
    step: str,
    inputs: list[str],
    run_id: str,
    template: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The SparkApplication of one step, everything from ``settings``; no credentials in it."""
    if step not in STEPS:
        raise EsteiraError("step", f"{step!r} is not a Spark step", f"use one of {list(STEPS)}")
    app = yaml.safe_load(yaml.safe_dump(template or load_template()))  # a deep copy
    spark = settings.features.spark
    name = application_name(step, run_id)
    app["metadata"]["name"] = name
    app["metadata"]["namespace"] = settings.kserve.namespace
    app["metadata"].setdefault("labels", {})["app.kubernetes.io/name"] = name
    spec = app["spec"]
    spec["image"] = settings.image.spark_reference
    spec["sparkVersion"] = SPARK_VERSION
    inside = settings.model_copy(deep=True)
    inside.features.spark.master = "cluster"  # the operator's spark-submit sets the master
    spec["arguments"] = [step, settings_to_json(inside), *inputs]
    spec["sparkConf"] = {
        **spec.get("sparkConf", {}),
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
    }
    spec["driver"] |= {
        "cores": spark.driver_cores,
        "memory": spark.driver_memory,
        "serviceAccount": spark.service_account,
    }
    spec["executor"] |= {
        "cores": spark.executor_cores,
        "memory": spark.executor_memory,
        "instances": spark.executor_instances,
    }
    return app


def submit(app: dict[str, Any], api: Any) -> dict[str, Any]:
    """Create the SparkApplication (``api``: kubernetes' ``CustomObjectsApi``).

    A 409 means this run's step was already submitted (a retried task): the existing one is
    returned and followed, never submitted twice.
    """
    from kubernetes.client.rest import ApiException

    name, namespace = app["metadata"]["name"], app["metadata"]["namespace"]
    try:
        return api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, app)
    except ApiException as exc:
        if exc.status == 409:
            return api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        raise EsteiraError(
            f"SparkApplication {namespace}/{name}",
            f"the Kubernetes API refused it (HTTP {exc.status} {exc.reason})",
            "check that the Spark Operator is installed and the esteira-pipeline RBAC "
            "(manifests/base/rbac-spark.yaml) is applied",
        ) from None


def wait(app: dict[str, Any], api: Any, timeout: float, poll: float = 5.0) -> dict[str, Any]:
    """Poll until the application completes; an EsteiraError when it fails or times out."""
    name, namespace = app["metadata"]["name"], app["metadata"]["namespace"]
    deadline = time.monotonic() + timeout
    while True:
        current = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        state = (current.get("status") or {}).get("applicationState") or {}
        done = _DONE.get(state.get("state", ""))
        if done is True:
            return current
        if done is False:
            raise EsteiraError(
                f"SparkApplication {namespace}/{name}",
                f"ended {state['state']}: {state.get('errorMessage') or 'no message'}",
                f"read the driver's log: kubectl logs -n {namespace} {name}-driver",
            )
        if time.monotonic() > deadline:
            raise EsteiraError(
                f"SparkApplication {namespace}/{name}",
                f"not finished within {timeout:.0f}s (state {state.get('state') or 'none'})",
                "give the executors more resources (features.spark) or look at the driver",
            )
        time.sleep(poll)


def run_on_cluster(
    settings: Settings, step: str, inputs: list[str], run_id: str, timeout: float = 3600
) -> dict[str, Any]:
    """Submit one Spark step and wait for it (in a pod: the in-cluster config)."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.CustomObjectsApi()
    app = spark_application(settings, step, inputs, run_id)
    submit(app, api)
    return wait(app, api, timeout)
