"""`make run`: generate the demo data if absent, run the training pipeline locally, summarise."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from esteira.config import DataSettings, Settings, resolve_path
from esteira.data import generate_fleet, write_fleet
from esteira_cli.local_run import LocalRun, run_pipeline, write_summary


def ensure_demo_data(settings: Settings) -> bool:
    """Generate the default dataset when it is the configured source and missing."""
    source = settings.data.source_uri
    if "://" in source or resolve_path(source) != resolve_path(DataSettings().source_uri):
        return False
    if resolve_path(source).exists():
        return False
    d = settings.data
    print(
        f"[esteira] generating demo data: {d.machines} machines x {d.days} days -> {source}",
        flush=True,
    )
    started = time.monotonic()
    write_fleet(
        generate_fleet(d.machines, d.days, d.start, d.seed, d.period), str(resolve_path(source))
    )
    print(f"[esteira] data ready in {time.monotonic() - started:.1f}s", flush=True)
    return True


def summarize(run: LocalRun) -> dict[str, Any]:
    out = run.outputs

    def param(task: str, name: str, default: Any = None) -> Any:
        return out.get(task, {}).get("parameters", {}).get(name, default)

    def artifact_meta(task: str, name: str) -> dict:
        return out.get(task, {}).get("artifacts", {}).get(name, {}).get("metadata", {})

    decision = artifact_meta("promote", "decision")
    model_uri = param("register", "model_uri")
    summary: dict[str, Any] = {
        "pipeline": run.pipeline,
        "status": run.status,
        "seconds": run.seconds,
        "steps": run.steps,
        "metrics": param("evaluate", "Output") or {},
        "gate_passed": bool(param("gate", "Output", False)),
        "model_uri": model_uri,
        "data": {
            k: artifact_meta("ingest", "dataset").get(k)
            for k in ("source_uri", "rows", "content_hash")
        },
        "features": {
            "feature_service": param("build-training-set", "feature_service"),
            "training_rows": param("build-training-set", "training_rows"),
            "dropped_by_ttl": param("build-training-set", "dropped_by_ttl"),
            "materialized": param("materialize", "Output"),
        },
        "run_dir": run.run_dir,
    }
    if model_uri:
        summary["registry"] = {
            "model": Path(model_uri).parent.name
            if "://" not in model_uri
            else model_uri.rstrip("/").split("/")[-2],
            "version": param("register", "version"),
            "promoted": bool(param("promote", "Output", False)),
            "production_version": decision.get("production_version"),
            "winner": decision.get("winner"),
            "reason": decision.get("reason"),
        }
        summary["deploy"] = {
            "mode": param("deploy", "Output"),
            **artifact_meta("deploy", "manifest"),
        }
    if run.error:
        summary["error"] = run.error
    return summary


def run_training(
    settings: Settings, out_dir: str | Path = "dist/run", *, root: str | Path = "dist/local_outputs"
) -> dict[str, Any]:
    ensure_demo_data(settings)
    run = run_pipeline("training", settings, root=root)
    summary = summarize(run)
    write_summary(summary, out_dir)
    return summary
