"""Run a pipeline on this machine with kfp.local: no cluster, same components.

What runs is the compiled YAML (``<root>/../pipelines/<name>.yaml``, i.e.
``dist/pipelines/<name>.yaml`` for the default root), loaded with kfp's own loader
(``kfp.components.load_component_from_file``), never the Python pipeline function: the
artifact a user uploads to Kubeflow is the one that was run. Its ``config`` default is
the configuration the tasks see.

Two runners (``esteira run --runner``):

- ``subprocess``: tasks are subprocesses of this venv (``SubprocessRunner(use_venv=False)``).
- ``docker``: tasks run in the image named in the YAML under kfp.local's ``DockerRunner``
  (:mod:`esteira.docker_tasks`: mounts, host network, users and permissions, container ids).

With either runner a task that exits 0 without writing its declared outputs fails the run
(kfp.local would count it a success). Per-task wall time comes from kfp.local's own log
records, per-task peak resident memory (subprocess runner) from the resource usage of the
task's processes (:func:`esteira.docker_tasks.run_measured`); the summary is read from the
tasks' executor outputs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esteira.config import Settings
from esteira.errors import EsteiraError
from esteira.kfp_support import ERRORS_DIR_ENV

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '?([\w-]+)'?")
_END = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")
_CACHED = re.compile(r"Task '?([\w-]+)'? cache hit \(key=([0-9a-f]+)\)")
CACHE_DIR = ".kfp_cache"  # under the output root: identical runs there share it


@dataclass
class StepClock(logging.Filter):
    """A root-logger filter (kfp.local swaps handlers, not filters) that times every task."""

    started: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    cached: dict[str, str] = field(default_factory=dict)  # task -> cache key prefix

    def filter(self, record: logging.LogRecord) -> bool:
        text = _ANSI.sub("", str(record.getMessage()))
        if m := _CACHED.search(text):
            self.cached[m.group(1)] = m.group(2)
            self.seconds[m.group(1)], self.status[m.group(1)] = 0.0, "SUCCESS"
            print(f"[esteira] {m.group(1)}: from cache", flush=True)
        elif m := _START.search(text):
            self.started[m.group(1)] = time.monotonic()
        elif m := _END.search(text):
            name = m.group(1)
            self.seconds[name] = round(
                time.monotonic() - self.started.get(name, time.monotonic()), 3
            )
            self.status[name] = m.group(2)
            done = len(self.seconds)
            print(
                f"[esteira] {name}: {m.group(2).lower()} in {self.seconds[name]:.1f}s ({done} steps done)",
                flush=True,
            )
        return True


def task_outputs(run_dir: Path) -> dict[str, dict[str, Any]]:
    """task name -> {"parameters": {...}, "artifacts": {name: {"uri", "metadata"}}} for tasks that ran."""
    out: dict[str, dict[str, Any]] = {}
    for executor_output in sorted(run_dir.glob("*/executor_output.json")):
        data = json.loads(executor_output.read_text())
        artifacts = {
            name: {"uri": a["uri"], "metadata": a.get("metadata", {})}
            for name, group in data.get("artifacts", {}).items()
            for a in group.get("artifacts", [])
        }
        parameters = dict(data.get("parameterValues", {}))
        # an OutputPath parameter is a file of its own next to executor_output.json
        for path in executor_output.parent.iterdir():
            name = path.name
            if path.is_file() and path != executor_output and name not in artifacts | parameters:
                text = path.read_text()
                try:
                    parameters[name] = json.loads(text)
                except json.JSONDecodeError:
                    parameters[name] = text
        out[executor_output.parent.name] = {"parameters": parameters, "artifacts": artifacts}
    return out


def cached_outputs(cache_root: Path, keys: dict[str, str]) -> dict[str, dict[str, Any]]:
    """task_outputs' shape for tasks served from kfp.local's cache (entries by key prefix)."""
    out: dict[str, dict[str, Any]] = {}
    for task, prefix in keys.items():
        entries = sorted(cache_root.glob(f"{prefix}*.json"))
        if len(entries) != 1:
            continue
        params, artifacts = {}, {}
        for name, value in json.loads(entries[0].read_text()).items():
            if isinstance(value, dict) and "uri" in value and "schema_title" in value:
                artifacts[name] = {"uri": value["uri"], "metadata": value.get("metadata", {})}
            else:
                params[name] = value
        out[task] = {"parameters": params, "artifacts": artifacts}
    return out


ERRORS = "errors"  # where failing tasks leave their message, next to the run directories


def _latest_run_dir(root: Path, before: set[Path]) -> Path | None:
    runs = (
        [
            p
            for p in root.iterdir()
            if p.is_dir() and p not in before and p.name not in (ERRORS, CACHE_DIR)
        ]
        if root.exists()
        else []
    )
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def step_table(
    seconds: dict[str, float], peak_rss_kb: dict[str, int]
) -> dict[str, dict[str, float | None]]:
    """task -> {"seconds", "peak_rss_mb"}: peak resident memory of the task's process tree in
    MiB, None where no process of this run measured it (served from cache, docker runner)."""
    return {
        name: {
            "seconds": secs,
            "peak_rss_mb": round(peak_rss_kb[name] / 1024, 1) if name in peak_rss_kb else None,
        }
        for name, secs in seconds.items()
    }


@dataclass
class LocalRun:
    pipeline: str
    status: str
    seconds: float
    steps: dict[str, dict[str, float | None]]  # task -> {"seconds", "peak_rss_mb"}
    outputs: dict[str, dict[str, Any]]
    run_dir: str | None
    error: str | None = None
    step_status: dict[str, str] = field(default_factory=dict)  # task -> SUCCESS / FAILURE
    runner: str = "subprocess"
    pipeline_yaml: str | None = None
    # task -> {"image", "container_id", "exit_code"} (docker runner)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)  # tasks served from kfp.local's cache

    @property
    def failed_step(self) -> str | None:
        """The first task kfp.local marked as not successful, if any."""
        return next((t for t, s in self.step_status.items() if s != "SUCCESS"), None)


RUNNERS = ("subprocess", "docker")


def compiled_pipeline(name: str, settings: Settings, out_dir: str | Path) -> Path:
    """Compile ``name`` with ``settings`` to ``out_dir/<name>.yaml`` (what `esteira compile` writes)."""
    from esteira_cli.compile import compile_pipeline

    return compile_pipeline(name, settings, out_dir)


def load_compiled(path: str | Path) -> Any:
    """The pipeline in a compiled YAML, through kfp's own loader."""
    from kfp import components

    return components.load_component_from_file(str(path))


def yaml_config(pipeline_yaml: Path, arguments: dict[str, Any], fallback: Settings) -> Settings:
    """The settings the tasks will see: the YAML's ``resolve-settings`` defaults with the run's
    ``config`` and typed parameters (the YAML's defaults for those not given); ``fallback``
    for a pipeline without a ``resolve-settings`` task."""
    import yaml

    from components.resolve_settings.logic import PARAMETER_KEYS, RunParameters, resolve

    spec = next(yaml.safe_load_all(Path(pipeline_yaml).read_text()))
    task = spec["root"]["dag"]["tasks"].get("resolve-settings")
    if task is None:
        return fallback.resolved()
    inputs = task["inputs"]["parameters"]
    defaults = spec["root"].get("inputDefinitions", {}).get("parameters", {})

    def value(name: str) -> Any:
        if name in arguments:
            return arguments[name]
        given = inputs.get(name, {})
        if "runtimeValue" in given:
            return given["runtimeValue"]["constant"]
        return defaults[given.get("componentInputParameter", name)].get("defaultValue")

    names = [*PARAMETER_KEYS, "gate_metric", "gate_min"]
    parameters = RunParameters(**{n: value(n) for n in names})
    return resolve(value("defaults"), value("config") or "", parameters).resolved()


def run_pipeline(
    name: str,
    settings: Settings,
    arguments: dict[str, Any] | None = None,
    *,
    root: str | Path = "dist/local_outputs",
    runner: str = "subprocess",
    pipeline_yaml: str | Path | None = None,
) -> LocalRun:
    """Run pipeline ``name`` locally from its compiled YAML.

    ``pipeline_yaml`` runs that file as it is; otherwise ``settings`` are compiled to
    ``<root>/../pipelines/<name>.yaml`` first. A failing task becomes ``status='failed'``
    with its message; an unusable runner (no engine, missing image) raises EsteiraError.
    """
    from esteira.kfp_sdk import import_kfp

    import_kfp()  # kfp.local needs no API client
    from kfp import local

    from esteira import docker_tasks

    if runner not in RUNNERS:
        raise EsteiraError("--runner", f"unknown runner {runner!r}", f"use one of {list(RUNNERS)}")
    root = Path(root).resolve()
    if pipeline_yaml is None:
        pipeline_yaml = compiled_pipeline(name, settings, root.parent / "pipelines")
    pipeline_yaml = Path(pipeline_yaml).resolve()
    pipeline = load_compiled(pipeline_yaml)
    arguments = dict(arguments or {})
    errors_dir = root / ERRORS
    shutil.rmtree(errors_dir, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    ledger = docker_tasks.TaskLedger(errors_dir)
    if runner == "docker":
        task_runner = docker_tasks.docker_runner(
            pipeline, yaml_config(pipeline_yaml, arguments, settings), root, errors_dir
        )
    else:
        task_runner = local.SubprocessRunner(use_venv=False)
    # caching by the task rule (pipelines/common.py); the cache lives with the output root
    cache_root = root / CACHE_DIR
    local.init(
        runner=task_runner,
        pipeline_root=str(root),
        raise_on_error=True,
        enable_caching=True,
        cache_root=str(cache_root),
    )
    clock = StepClock()
    root_logger = logging.getLogger()
    level = root_logger.level
    # kfp.local logs cache hits outside its own logging context: INFO lets them reach the clock
    root_logger.setLevel(min(level, logging.INFO) or logging.INFO)
    root_logger.addFilter(clock)
    os.environ[ERRORS_DIR_ENV] = str(errors_dir)
    started = time.monotonic()
    status, error = "ok", None
    try:
        with docker_tasks.checked_tasks(ledger), warnings.catch_warnings():
            # the tasks' resources are the cluster's business (pipelines/common.py)
            warnings.filterwarnings("ignore", message=r"Task .* have no effect in the current")
            pipeline(**arguments)
    except RuntimeError as exc:
        status, error = "failed", _task_error(errors_dir) or _ANSI.sub("", str(exc))
    finally:
        root_logger.removeFilter(clock)
        root_logger.setLevel(level)
        os.environ.pop(ERRORS_DIR_ENV, None)
    run_dir = _latest_run_dir(root, before)
    outputs = cached_outputs(cache_root, clock.cached)
    outputs |= task_outputs(run_dir) if run_dir else {}
    return LocalRun(
        pipeline=name,
        status=status,
        seconds=round(time.monotonic() - started, 3),
        steps=step_table(clock.seconds, ledger.peak_rss_kb),
        outputs=outputs,
        run_dir=str(run_dir) if run_dir else None,
        error=error,
        step_status=dict(clock.status),
        runner=runner,
        pipeline_yaml=str(pipeline_yaml),
        tasks=ledger.tasks,
        cached=sorted(clock.cached),
    )


def _task_error(errors_dir: Path) -> str | None:
    for path in sorted(errors_dir.glob("*.json")):
        data = json.loads(path.read_text())
        return f"task {data['task']}: {data['error']}"
    return None


def write_summary(summary: dict[str, Any], out_dir: str | Path) -> Path:
    path = Path(out_dir) / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    tmp.replace(path)
    return path


def raise_if_failed(run: LocalRun) -> None:
    if run.status != "ok":
        raise EsteiraError(
            f"pipeline {run.pipeline}", run.error or "failed", "see the task log above"
        )
