"""Run a pipeline on this machine with kfp.local: no cluster, same components.

Tasks run as subprocesses of this venv (``SubprocessRunner(use_venv=False)``), so
nothing is installed at run time. Per-task wall time comes from kfp.local's own
log records; the summary is read from the tasks' executor outputs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from esteira.config import Settings, settings_to_json
from esteira.errors import EsteiraError
from esteira.kfp_support import ERRORS_DIR_ENV

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '?([\w-]+)'?")
_END = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")


@dataclass
class StepClock(logging.Filter):
    """A root-logger filter (kfp.local swaps handlers, not filters) that times every task."""

    started: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)

    def filter(self, record: logging.LogRecord) -> bool:
        text = _ANSI.sub("", str(record.getMessage()))
        if m := _START.search(text):
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
        out[executor_output.parent.name] = {
            "parameters": data.get("parameterValues", {}),
            "artifacts": artifacts,
        }
    return out


ERRORS = "errors"  # where failing tasks leave their message, next to the run directories


def _latest_run_dir(root: Path, before: set[Path]) -> Path | None:
    runs = (
        [p for p in root.iterdir() if p.is_dir() and p not in before and p.name != ERRORS]
        if root.exists()
        else []
    )
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


@dataclass
class LocalRun:
    pipeline: str
    status: str
    seconds: float
    steps: dict[str, float]
    outputs: dict[str, dict[str, Any]]
    run_dir: str | None
    error: str | None = None


def run_pipeline(
    name: str,
    settings: Settings,
    arguments: dict[str, Any] | None = None,
    *,
    root: str | Path = "dist/local_outputs",
) -> LocalRun:
    """Run pipeline ``name`` locally; a failing task becomes ``status='failed'`` with its message."""
    from esteira.kfp_sdk import import_kfp

    import_kfp()  # kfp.local needs no API client
    from kfp import local

    from esteira_cli.compile import load_pipeline

    settings = settings.resolved()
    root = Path(root).resolve()
    errors_dir = root / ERRORS
    shutil.rmtree(errors_dir, ignore_errors=True)
    before = set(root.iterdir()) if root.exists() else set()
    pipeline = load_pipeline(name, settings)
    local.init(
        runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True
    )
    clock = StepClock()
    logging.getLogger().addFilter(clock)
    os.environ[ERRORS_DIR_ENV] = str(errors_dir)
    started = time.monotonic()
    status, error = "ok", None
    try:
        pipeline(config=settings_to_json(settings), **(arguments or {}))
    except RuntimeError as exc:
        status, error = "failed", _task_error(errors_dir) or _ANSI.sub("", str(exc))
    finally:
        logging.getLogger().removeFilter(clock)
        os.environ.pop(ERRORS_DIR_ENV, None)
    run_dir = _latest_run_dir(root, before)
    return LocalRun(
        pipeline=name,
        status=status,
        seconds=round(time.monotonic() - started, 3),
        steps=clock.seconds,
        outputs=task_outputs(run_dir) if run_dir else {},
        run_dir=str(run_dir) if run_dir else None,
        error=error,
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
