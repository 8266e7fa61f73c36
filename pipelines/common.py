"""Pipeline plumbing shared by every pipeline: task settings, credentials, default parameters.

The task rule (ARCHITECTURE.md, "Task settings"):

- **caching** is on for a task whose outputs depend only on its inputs (``CACHED``), off
  for one that reads or writes mutable external state: the source URI's content (read by
  ``fingerprint``, whose hash is then an input of the cached ``ingest``), the Feast sources
  and registry, the model registry, the online store, the prediction log, the cluster;
- **retries** with backoff (``kfp.retries``, ``kfp.retry_backoff_seconds`` doubling up to
  ``kfp.retry_backoff_max_seconds``) on tasks whose work is writes to storage or the
  cluster (``RETRIED``), never on tasks whose failures are the user's input;
- **resources**: ``kfp.task_resources[<task>]``, else ``kfp.resources``, on every task.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from kfp import kubernetes

from esteira import __version__
from esteira.config import ROOT, Settings, settings_to_json

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}

# outputs depend only on inputs (the source's content enters ingest as its hash)
CACHED = frozenset(
    {
        "resolve-settings",
        "ingest",
        "validate",
        "plan-search",
        "search-trials",
        "pick-best",
        "train",
        "evaluate",
        "gate",
        "retrain-decision",
    }
)
# their work is writes to storage (Feast sources and registry, model registry, online store,
# batch predictions, the retraining set) or to the cluster
RETRIED = frozenset(
    {
        "compute-features",
        "feast-apply",
        "register",
        "promote",
        "materialize",
        "deploy",
        "batch-features",
        "batch-predict",
        "retrain",
    }
)


def task_name(task) -> str:
    """The task's name as kfp.local and the KFP UI show it (``comp-<name>`` without the prefix)."""
    return task.component_spec.name.replace("_", "-")


def with_task_settings(task, settings: Settings):
    """Caching, retries and resources by the rule above, and the S3 credentials."""
    name = task_name(task)
    task = kubernetes.use_secret_as_env(
        task, secret_name=settings.kfp.secret_name, secret_key_to_env=S3_ENV
    )
    task.set_caching_options(name in CACHED)
    kfp = settings.kfp
    if name in RETRIED and kfp.retries:
        task.set_retry(
            num_retries=kfp.retries,
            backoff_duration=f"{kfp.retry_backoff_seconds}s",
            backoff_factor=2.0,
            backoff_max_duration=f"{kfp.retry_backoff_max_seconds}s",
        )
    resources = kfp.resources_for(name)
    task.set_cpu_request(resources.cpu_request).set_cpu_limit(resources.cpu_limit)
    task.set_memory_request(resources.memory_request).set_memory_limit(resources.memory_limit)
    return task


# one thread per estimator in a search trial: `parallelism` trials at once use that many cores
ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def one_thread(task):
    """The task's numeric libraries on one thread (OpenMP, BLAS)."""
    for name in ONE_THREAD:
        task.set_env_variable(name, "1")
    return task


def code_version(root: Path = ROOT) -> str:
    """The git commit of the code (with -dirty for local edits), or the package version."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return out.stdout.strip() or __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


def default_config(settings: Settings) -> str:
    """The non-secret configuration: the compile-time defaults of ``resolve-settings``."""
    return settings_to_json(settings)
