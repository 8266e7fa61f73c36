"""`esteira monitor` and `esteira batch-predict`: the batch and monitoring pipelines, locally.

``esteira monitor [--period drifted|stable]`` (what ``make monitor`` runs), after ``make run``:

1. generates the period's telemetry: ``--days`` (30) days right after the training data
   (``data.start + data.days``), the same fleet (``data.seed``, ``data.machines``);
   ``drifted`` (the default: the interesting case) recalibrates the voltage sensors and
   brings a new machine model, ``stable`` is the same process later in time;
2. runs the batch prediction pipeline over it, which fills the prediction log;
3. runs the monitoring pipeline over the logged predictions of that window (drift, live
   performance with the period's failures as the late labels, and when either fires the
   retraining set and the training pipeline nested in the same run);
4. writes ``dist/monitor/summary.json`` and copies the drift report to
   ``dist/monitor/drift_report.html``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esteira.config import Settings, resolve_path
from esteira.errors import ConfigError

if TYPE_CHECKING:  # pandas is imported when a command runs, not when the CLI starts
    import pandas as pd

PERIODS = ("drifted", "stable")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="batch-predict a new period, then run monitoring on it")
    p.add_argument("--period", choices=PERIODS, default="drifted", help="default: drifted")
    p.add_argument("--days", type=int, default=30, help="length of the period (default 30)")
    p.add_argument("--out", default="dist/monitor", help="where summary.json goes")
    p.set_defaults(handler=handle_monitor)

    b = sub.add_parser("batch-predict", help="run the batch prediction pipeline locally")
    b.add_argument("data", help="new raw telemetry (path, http(s):// or s3://)")
    b.add_argument("--entities", default="", help="file of entity rows (default: every N hours)")
    b.add_argument("--history", default="", help="raw data before it (default: training data)")
    b.add_argument("--out", default="dist/batch", help="where summary.json goes")
    b.set_defaults(handler=handle_batch)


# ---- steps -----------------------------------------------------------------------------------
def require_production(settings: Settings) -> int:
    """The production version number, or the error that says to run `make run` first."""
    from esteira.registry import production_version, registry_for

    return production_version(registry_for(settings)).version


def period_window(settings: Settings, days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the ``days`` right after the configured training data."""
    import pandas as pd

    start = pd.Timestamp(settings.data.start, tz="UTC") + pd.Timedelta(days=settings.data.days)
    return start, start + pd.Timedelta(days=days)


def generate_period(settings: Settings, period: str, days: int, out_dir: str | Path) -> Path:
    """The period's data for the training population, as Parquet under ``out_dir/data``."""
    from esteira.data import write_fleet
    from esteira.usecase import describe_arguments, generate_data

    if days < 3:
        raise ConfigError("--days", f"{days} is too short", "use at least 3 days")
    start, _ = period_window(settings, days)
    path = resolve_path(Path(out_dir) / "data" / f"{settings.use_case}_{period}.parquet")
    frame, args = generate_data(
        settings, days=days, start=start.strftime("%Y-%m-%d"), period=period
    )
    write_fleet(frame, str(path))
    print(f"[esteira] {period} period: {describe_arguments(args)}")
    return path


def _outputs(run: Any, task: str) -> tuple[dict[str, Any], dict[str, Any]]:
    found = run.outputs.get(task, {})
    return found.get("parameters", {}), found.get("artifacts", {})


def summarize_monitoring(batch: Any, monitoring: Any, out_dir: Path) -> dict[str, Any]:
    """The monitor summary from both local runs; copies the drift report next to it."""
    drift, drift_artifacts = _outputs(monitoring, "drift-check")
    perf, _ = _outputs(monitoring, "live-performance")
    retrain, _ = _outputs(monitoring, "retrain")
    retraining = _retraining(monitoring, retrain)
    predicted, _ = _outputs(batch, "batch-predict")
    report = None
    if uri := drift_artifacts.get("report", {}).get("uri"):
        report = out_dir / "drift_report.html"
        shutil.copyfile(uri, report)
    performance = perf.get("performance", {})
    summary: dict[str, Any] = {
        "status": monitoring.status,
        "batch": {
            "status": batch.status,
            "seconds": batch.seconds,
            "steps": batch.steps,
            **predicted,
        },
        "drift_detected": bool(drift.get("drift_detected", False)),
        "dataset_drift": bool(drift.get("dataset_drift", False)),
        "drift_share": drift.get("drift_share"),
        "features": drift.get("features", {}),
        "degraded": bool(perf.get("degraded", False)),
        "live_performance": {
            k: performance.get(k)
            for k in ("status", "model_version", "rows", "labelled_rows", "metrics", "comparison")
        },
        "retrain_triggered": "retrain" in monitoring.steps,
        "retrain": retraining,
        "retrained": _retrained(monitoring) if retraining else None,
        "drift_report": str(report) if report else None,
        "seconds": monitoring.seconds,
        "steps": monitoring.steps,
        "run_dirs": {"batch": batch.run_dir, "monitoring": monitoring.run_dir},
    }
    if monitoring.error or batch.error:
        summary["error"] = monitoring.error or batch.error
    return summary


def _retraining(monitoring: Any, retrain: dict[str, Any]) -> dict[str, Any] | None:
    """The retraining branch: the retraining set and the nested training pipeline's status."""
    if "retrain" not in monitoring.steps:
        return None
    trained = "evaluate" in monitoring.outputs and monitoring.status == "ok"
    return {
        "mode": "nested",
        "status": "ok" if trained else "failed",
        "data_uri": retrain.get("Output"),
        "run_id": monitoring.run_dir,
    }


def _retrained(monitoring: Any) -> dict[str, Any]:
    """The nested training run's figures, read like `esteira run`'s summary."""
    from esteira_cli.training_run import summarize

    summary = summarize(monitoring) | {"status": _retraining(monitoring, {})["status"]}
    return {
        "status": summary.get("status"),
        "metrics": summary.get("metrics"),
        "gate_passed": summary.get("gate_passed"),
        "gate": summary.get("gate"),  # the rule that decided (retrain.policy) and why
        "registry": summary.get("registry"),
    }


def run_monitor(
    settings: Settings,
    period: str = "drifted",
    *,
    days: int = 30,
    out_dir: str | Path = "dist/monitor",
    root: str | Path = "dist/local_outputs",
) -> dict[str, Any]:
    """Generate the period, batch-predict it, monitor it; returns (and writes) the summary."""
    from esteira_cli.local_run import raise_if_failed, run_pipeline, write_summary

    out = resolve_path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    version = require_production(settings)
    print(f"[esteira] production model: {settings.model.name} v{version}")
    data = generate_period(settings, period, days, out)
    start, end = period_window(settings, days)
    batch = run_pipeline("batch_prediction", settings, {"data_uri": str(data)}, root=root)
    raise_if_failed(batch)
    arguments = {
        "labels_uri": str(data),
        "start": start.isoformat(),
        "end": end.isoformat(),
    }
    monitoring = run_pipeline("monitoring", settings, arguments, root=root)
    summary = {"period": period, "window": {"start": start, "end": end}}
    summary |= summarize_monitoring(batch, monitoring, out)
    write_summary(summary, out)
    return summary


def _judgement(perf: dict[str, Any]) -> str:
    """One line on live performance: each metric, live against the version's recorded figure."""
    if perf.get("status") != "ok":
        return f"live performance not judged: {perf.get('status')}"
    parts = [
        f"{name} {c['live']:.3f} vs recorded {c['recorded']:.3f}{' (worse)' if c['degraded'] else ''}"
        for name, c in (perf.get("comparison") or {}).items()
        if c.get("live") is not None and c.get("recorded") is not None
    ]
    return f"{perf.get('labelled_rows', 0)} labelled rows; " + ("; ".join(parts) or "no metric")


# ---- handlers --------------------------------------------------------------------------------
def handle_monitor(args: argparse.Namespace, settings: Settings) -> int:
    summary = run_monitor(settings, args.period, days=args.days, out_dir=args.out)
    print(
        f"\n== monitoring ({summary['period']}): {summary['status']} in {summary['seconds']:.0f}s"
    )
    drifted = [n for n, f in summary["features"].items() if f["drifted"]]
    print(
        f"   drift detected: {summary['drift_detected']} (dataset drift {summary['dataset_drift']}, "
        f"{len(drifted)} of {len(summary['features'])} features: {', '.join(drifted) or 'none'})"
    )
    print(f"   degraded: {summary['degraded']} ({_judgement(summary['live_performance'])})")
    print(f"   retrain triggered: {summary['retrain_triggered']}")
    if retrained := summary.get("retrained"):
        registry = retrained.get("registry") or {}
        outcome = (
            f"registered {registry.get('model')} v{registry.get('version')}"
            if registry.get("version")
            else "nothing registered"
        )
        print(f"   retrained: {retrained.get('status')}, {outcome}")
        gate = retrained.get("gate") or {}
        print(f"   retrain gate ({gate.get('rule')}): {gate.get('reason')}")
    print(f"   report: {summary['drift_report']}")
    print(f"   summary: {args.out}/summary.json")
    if summary["status"] != "ok":
        print(f"error: {summary.get('error')}")
        return 1
    return 0


def handle_batch(args: argparse.Namespace, settings: Settings) -> int:
    from esteira_cli.local_run import run_pipeline, write_summary

    require_production(settings)
    arguments = {"data_uri": args.data, "entities_uri": args.entities, "history_uri": args.history}
    run = run_pipeline("batch_prediction", settings, arguments)
    predicted, _ = _outputs(run, "batch-predict")
    summary = {"pipeline": run.pipeline, "status": run.status, "seconds": run.seconds}
    summary |= {"steps": run.steps, "predictions": predicted, "run_dir": run.run_dir}
    if run.error:
        summary["error"] = run.error
    write_summary(summary, args.out)
    print(f"\n== batch prediction: {run.status} in {run.seconds:.0f}s")
    if run.status != "ok":
        print(f"error: {run.error}")
        return 1
    print(
        f"   {predicted.get('rows')} rows by v{predicted.get('model_version')}: {predicted.get('uri')}"
    )
    return 0
