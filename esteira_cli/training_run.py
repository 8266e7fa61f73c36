"""`make run`: generate the demo data if absent, run the training pipeline locally, summarise."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from esteira.config import Settings, resolve_path
from esteira.data import write_fleet
from esteira.errors import DataError
from esteira_cli.local_run import LocalRun, run_pipeline, write_summary

DEMO_DATA_DIR = "data"  # where `make run` may write the seeded demo fleet


def generate_command(settings: Settings, config_path: str | None = None) -> str:
    """The exact command that writes the demo data the settings describe to data.source_uri."""
    from esteira.usecase import default_name, generator_arguments, generator_module, load

    d = settings.data
    cfg = f"--config {config_path} " if config_path else ""
    if settings.use_case != default_name():
        cfg += f"--usecase {settings.use_case} "
    module = generator_module(load(settings.use_case))
    args = generator_arguments(module.generate, d.model_dump()) if module else {}
    shown = ("days", "start", "seed", "period")
    params = "".join(f" --param {k}={v}" for k, v in sorted(args.items()) if k not in shown)
    return (
        f"esteira {cfg}data generate --out {d.source_uri} "
        f"--days {d.days} --start {d.start} --seed {d.seed} --period {d.period}{params}"
    )


def ensure_demo_data(settings: Settings, config_path: str | None = None) -> bool:
    """Generate the use case's demo data when data.source_uri is a missing file under ``data/``.

    A missing file anywhere else is a user's dataset that is not there: the run stops
    before any step starts, naming the command that would generate demo data there.
    """
    source = settings.data.source_uri
    if "://" in source or resolve_path(source).exists():
        return False
    path = resolve_path(source)
    if not path.is_relative_to(resolve_path(DEMO_DATA_DIR)):
        raise DataError(
            "data.source_uri",
            f"no file at {path}",
            f"point data.source_uri at your data, or generate the demo data there: "
            f"`{generate_command(settings, config_path)}`",
        )
    from esteira.usecase import describe_arguments, generate_data

    started = time.monotonic()
    frame, args = generate_data(settings)
    print(
        f"[esteira] generated {settings.use_case} demo data ({describe_arguments(args)}) "
        f"-> {source}",
        flush=True,
    )
    write_fleet(frame, str(path))
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
        # which rule decided (absolute thresholds, or a retrain's policy) and why
        "gate": {k: artifact_meta("gate", "verdict").get(k) for k in ("rule", "reason")},
        "model_uri": model_uri,
        "data": {
            k: artifact_meta("ingest", "dataset").get(k)
            for k in ("source_uri", "rows", "content_hash", "lineage")
        },
        "features": {
            "feature_service": param("build-training-set", "feature_service"),
            "training_rows": param("build-training-set", "training_rows"),
            "dropped_by_ttl": param("build-training-set", "dropped_by_ttl"),
            "materialized": param("materialize", "Output"),
        },
        "run_dir": run.run_dir,
        "cached": run.cached,  # tasks served from kfp.local's cache
        "runner": run.runner,
        "pipeline_yaml": run.pipeline_yaml,
        # per task: the image and container it ran in (docker runner)
        "tasks": run.tasks,
    }
    threshold = _threshold_summary(
        artifact_meta("train", "model"), artifact_meta("evaluate", "metrics")
    )
    if threshold:
        summary["threshold"] = threshold
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
            "card": out.get("register", {}).get("artifacts", {}).get("card", {}).get("uri"),
        }
        for key in ("challenger_expected_cost", "champion_expected_cost"):  # policy min_cost
            if key in decision:
                summary["registry"][key] = decision[key]
        summary["deploy"] = {
            "mode": param("deploy", "Output"),
            **artifact_meta("deploy", "manifest"),
        }
    if search := param("pick-best", "winner"):
        # chosen on CV folds of the training window; the hold-out figure is metrics' alone
        summary["search"] = search
        summary["holdout"] = {
            k: (param("evaluate", "Output") or {}).get(k) for k in ("roc_auc", "pr_auc", "rmse")
        }
        summary["holdout"] = {k: v for k, v in summary["holdout"].items() if v is not None}
    if run.error:
        summary["error"] = run.error
    return summary


def _threshold_summary(model_meta: dict, metrics_meta: dict) -> dict[str, Any]:
    """The classifier's decision_threshold (chosen on the training window by its policy) and
    the hold-out expected cost per 1,000 rows at it and at 0.5."""
    if "decision_threshold" not in model_meta:
        return {}
    at_threshold = metrics_meta.get("expected_cost")
    at_half = metrics_meta.get("expected_cost_at_0.5")
    out = {
        "decision_threshold": model_meta["decision_threshold"],
        "policy": model_meta.get("threshold_policy"),
        "holdout_expected_cost": at_threshold,
        "holdout_expected_cost_at_0.5": at_half,
    }
    if at_threshold is not None and at_half is not None:
        out["holdout_cost_saved_vs_0.5"] = round(at_half - at_threshold, 6)
    return out


def run_training(
    settings: Settings,
    out_dir: str | Path = "dist/run",
    *,
    root: str | Path = "dist/local_outputs",
    runner: str = "subprocess",
    config_path: str | None = None,
    arguments: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compile the training pipeline to ``<root>/../pipelines/training.yaml`` and run that YAML
    (``arguments``: run parameters, e.g. ``{"search": True}``)."""
    ensure_demo_data(settings, config_path)
    run = run_pipeline("training", settings, arguments, root=root, runner=runner)
    summary = summarize(run)
    write_summary(summary, out_dir)
    return summary
