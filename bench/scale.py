"""The training pipeline on generated fleets of 1x, 5x and 10x the default size (issue 25).

``make bench BENCH=scale`` (``BENCH_SCALES=1,10`` for other multiples): for each size a
fleet of ``scale`` x the default machines over the default days in its own workspace
(``dist/bench/scale/x<scale>/``: data, storage, feature repository copy, kfp.local outputs
and cache, so nothing is served from another run's cache), then the training pipeline
under kfp.local as ``make run`` runs it. Reported per size: the pipeline's wall seconds,
each step's wall seconds and peak resident memory (the run summary's ``steps``), the
largest step's peak, the raw table's rows and in-memory size, and the hold-out ROC AUC;
and the wall of each size over the 1x wall. Generating the data is timed apart, never
part of the pipeline's wall. Measures, never asserts; timings on a shared machine are noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

DEFAULT_SCALES = (1, 5, 10)


def scales() -> list[int]:
    given = os.environ.get("BENCH_SCALES", "")
    return [int(s) for s in given.split(",") if s.strip()] or list(DEFAULT_SCALES)


def one_size(scale: int, work: Path) -> dict[str, Any]:
    from esteira.config import Settings
    from esteira.data import write_fleet
    from esteira_cli.training_run import run_training
    from testkit.pipeline import generate_fleet, small_workspace

    defaults = Settings().data
    machines, days = defaults.machines * scale, defaults.days
    root = work / f"x{scale}"
    for stale in ("outputs", "run", "store", "feature_repo"):
        shutil.rmtree(root / stale, ignore_errors=True)  # a fresh run: no cache, no registry
    root.mkdir(parents=True, exist_ok=True)
    source = root / "fleet.parquet"
    started = time.monotonic()
    raw_mb = None
    if not source.exists():
        frame = generate_fleet(machines=machines, days=days, seed=defaults.seed)
        raw_mb = round(frame.memory_usage(deep=True).sum() / 2**20, 1)
        write_fleet(frame, str(source))
        del frame
    generated = round(time.monotonic() - started, 1)
    settings = small_workspace(root, machines=machines, days=days)
    settings = settings.model_copy(update={"gate": Settings().gate})  # the default gate
    print(f"[bench] scale {scale}x: {machines} machines x {days} days", flush=True)
    summary = run_training(settings, root / "run", root=root / "outputs")
    steps = summary.get("steps", {})
    peaks = {n: s.get("peak_rss_mb") for n, s in steps.items() if s.get("peak_rss_mb")}
    largest = max(peaks, key=peaks.get) if peaks else None
    return {
        "machines": machines,
        "days": days,
        "raw_rows": (summary.get("data") or {}).get("rows"),
        "raw_in_memory_mb": raw_mb,  # pandas, as generated (None when the file was there)
        "generate_s": generated,
        "status": summary.get("status"),
        "error": summary.get("error"),
        "pipeline_wall_s": summary.get("seconds"),
        "largest_step": largest,
        "largest_step_peak_rss_mb": peaks.get(largest) if largest else None,
        "roc_auc": (summary.get("metrics") or {}).get("roc_auc"),
        "training_rows": (summary.get("features") or {}).get("training_rows"),
        "steps": steps,
    }


def run(out: Path) -> dict[str, Any]:
    work = Path(out) / "scale"
    results: dict[str, Any] = {"load_average_before": round(os.getloadavg()[0], 2)}
    sizes: dict[str, Any] = {}
    for scale in scales():
        sizes[f"{scale}x"] = one_size(scale, work)
        (Path(out) / "scale.json").write_text(json.dumps(sizes, indent=2, default=str))
    results["sizes"] = sizes
    base = sizes.get("1x", {}).get("pipeline_wall_s")
    if base:
        results["wall_over_1x"] = {
            k: round(v["pipeline_wall_s"] / base, 2)
            for k, v in sizes.items()
            if v["pipeline_wall_s"]
        }
    results["load_average_after"] = round(os.getloadavg()[0], 2)
    results["targets"] = {"largest_step_peak_rss_mb_at_10x": 3072, "wall_10x_over_1x": 5.0}
    (Path(out) / "scale.json").write_text(json.dumps(results, indent=2, default=str))
    return results


def table(results: dict[str, Any]) -> list[str]:
    """Markdown lines for dist/bench/results.md."""
    sizes = results.get("sizes") or {}
    if not sizes:
        return []
    lines = [
        "",
        "| fleet | raw rows | pipeline wall s | / 1x | largest step | its peak RSS MB | ROC AUC |",
        "|---|---:|---:|---:|---|---:|---:|",
    ]
    ratio = results.get("wall_over_1x", {})
    for name, s in sizes.items():
        lines.append(
            f"| {name} ({s['machines']} machines) | {s['raw_rows']} | {s['pipeline_wall_s']} | "
            f"{ratio.get(name, '')} | {s['largest_step']} | {s['largest_step_peak_rss_mb']} | "
            f"{s['roc_auc']} |"
        )
    names = sorted({n for s in sizes.values() for n in s["steps"]})
    lines += [
        "",
        "| step | " + " | ".join(f"{k} s / peak MB" for k in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for n in names:
        cells = []
        for s in sizes.values():
            step = s["steps"].get(n, {})
            cells.append(f"{step.get('seconds', '')} / {step.get('peak_rss_mb', '')}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nload average {results.get('load_average_before')} -> "
        f"{results.get('load_average_after')} (a shared machine: timings are noisy)"
    )
    return lines
