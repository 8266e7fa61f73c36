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

:func:`run_step` is what a KFP task calls with ``features.spark.run_in: spark_application``
(esteira/feature_engine.py): stage the input in S3, submit, wait, copy the output back.

Feast's own ``spark_application`` compute engine (materialization only) does not fit
esteira: it refuses a file registry and a SQLite online store, and its pod reaches the
registry through a Feast server; materialization stays in the task (README, Spark section).
"""

from __future__ import annotations

import hashlib
import json
import os
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


def s3_endpoint(settings: Settings) -> str | None:
    """``http(s)://host:port`` of the S3 store the feature sources live in, or None."""
    if settings.features.offline_store != "s3" or not settings.storage.endpoint:
        return None
    return f"{'https' if settings.storage.secure else 'http'}://{settings.storage.endpoint}"


def s3a_conf(endpoint: str) -> dict[str, str]:
    """Hadoop's s3a settings for MinIO/S3 at ``endpoint`` (Hadoop 3.4: AWS SDK v2 classes);
    the keys come from the environment (``AWS_ACCESS_KEY_ID``..., the esteira-s3 Secret)."""
    return {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": str(endpoint.startswith("https")).lower(),
        "fs.s3a.aws.credentials.provider": (
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"
        ),
    }


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
    inside.features.spark.run_in = "task"  # inside the application the step runs in-process
    spec["arguments"] = [step, settings_to_json(inside), *inputs]
    spec["sparkConf"] = {
        **spec.get("sparkConf", {}),
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
    }
    if spark.packages:  # hadoop-aws (+ the AWS SDK bundle) for s3a://, resolved by spark-submit
        spec.setdefault("deps", {})["packages"] = list(spark.packages)
        spec["sparkConf"]["spark.jars.ivy"] = "/tmp/.ivy2"  # uid 10001 writes only /tmp
    endpoint = s3_endpoint(settings)
    if endpoint:  # executors read SparkSources at s3a://; credentials: env from the Secret
        spec["hadoopConf"] = {**spec.get("hadoopConf", {}), **s3a_conf(endpoint)}
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
    api = _api()
    app = spark_application(settings, step, inputs, run_id)
    submit(app, api)
    return wait(app, api, timeout)


# ---- a KFP task's Spark step as a SparkApplication (features.spark.run_in) ---------------
def runs_as_application(settings: Settings) -> bool:
    """The Spark steps of this run are SparkApplications (else Spark runs inside the task)."""
    return (
        settings.features.engine == "spark"
        and settings.features.spark.run_in == "spark_application"
    )


def _staging(settings: Settings) -> Any:
    """The S3 storage the task and the application share; pods share nothing else."""
    from esteira.storage import open_storage

    if settings.storage.kind != "s3":
        raise EsteiraError(
            "features.spark.run_in",
            "'spark_application' needs storage.kind 's3': the task and the SparkApplication's "
            "pods share nothing but S3",
            "set storage.kind: s3 (and storage.endpoint), or features.spark.run_in: task",
        )
    if settings.features.offline_store != "s3":
        raise EsteiraError(
            "features.spark.run_in",
            "'spark_application' needs features.offline_store 's3': the tables the application "
            "publishes must be where the next steps' pods read them",
            "set features.offline_store: s3, or features.spark.run_in: task",
        )
    return open_storage(settings.storage)


def _api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def run_step(
    settings: Settings,
    step: str,
    input_path: str,
    output_path: str,
    run_id: str,
    api: Any = None,
) -> dict[str, Any]:
    """One Spark step of a KFP task as a SparkApplication; returns the step's summary.

    The task's input artifact (``input_path``) is staged at
    ``<storage>/spark/<application>/input.parquet``; the application writes
    ``output.parquet`` and its summary ``output.parquet.json`` beside it
    (esteira/spark_job.py); once it COMPLETED the output is copied to ``output_path``
    (replaced atomically: a failed application leaves no output). ``run_id`` names the
    application (:func:`application_name`): pass something fixed per run and task (the
    output artifact's URI, which holds the KFP run id), so a retried task re-attaches to
    its application instead of submitting twice.
    """
    storage = _staging(settings)
    name = application_name(step, run_id)
    inputs_key, output_key = f"spark/{name}/input.parquet", f"spark/{name}/output.parquet"
    app = spark_application(
        settings, step, [storage.uri(inputs_key), storage.uri(output_key)], run_id
    )
    storage.put_bytes(inputs_key, Path(input_path).read_bytes())
    api = api if api is not None else _api()
    submit(app, api)
    spark = settings.features.spark
    wait(app, api, spark.timeout_seconds, spark.poll_seconds)
    summary = json.loads(storage.get_bytes(f"{output_key}.json"))
    data = storage.get_bytes(output_key)
    target = Path(output_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    return summary
