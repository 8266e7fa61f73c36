"""`make bench`: every benchmark in one run on this machine; JSON and a Markdown table in dist/bench/.

Benchmarks measure; they never assert. A benchmark that cannot run here (say,
no redis-server) reports why instead of a number.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCHES = (
    "compile", "online", "serving", "text", "batch", "containers", "search", "scale", "spark"
)  # fmt: skip
OUT = Path("dist/bench")


def ensure_production_model() -> None:
    """The serving and batch benchmarks use the production model of `make run`."""
    from esteira.config import load_settings
    from esteira.registry import Registry
    from esteira.storage import open_storage
    from esteira_cli.training_run import run_training

    settings = load_settings(os.environ.get("ESTEIRA_CONFIG"))
    if "production" not in Registry(open_storage(settings.storage), settings.model.name).aliases():
        print("[bench] no production model yet: running the training pipeline first", flush=True)
        run_training(settings)


def rows(results: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """Every measurement (a dict with p50_ms or a throughput) with its dotted path."""
    found = []
    for key, value in results.items():
        if not isinstance(value, dict):
            continue
        if {"p50_ms", "rows_per_s", "throughput_rps"} & set(value):
            found.append((" / ".join((*path, key)), value))
        else:
            found.extend(rows(value, (*path, key)))
    return found


def markdown(results: dict[str, Any], meta: dict[str, Any]) -> str:
    lines = [
        "# esteira benchmarks",
        "",
        f"{meta['when']} on {meta['machine']} (Python {meta['python']}); load average at start {meta['load']}.",
        "",
        "| benchmark | p50 ms | p99 ms | throughput |",
        "|---|---:|---:|---:|",
    ]
    for name, m in rows(results):
        rate = m.get("throughput_rps") or m.get("rows_per_s")
        unit = "req/s" if "throughput_rps" in m else "rows/s"
        lines.append(
            f"| {name} | {m.get('p50_ms', '')} | {m.get('p99_ms', '')} | {f'{rate:,.0f} {unit}' if rate else ''} |"
        )
    notes = [f"- {k}: {v}" for k, v in results.items() if isinstance(v, str)]
    return (
        "\n".join(
            lines
            + ([""] + notes if notes else [])
            + containers_table(results)
            + search_table(results)
            + scale_table(results)
            + importlib.import_module("bench.spark").table(results)
        )
        + "\n"
    )


def search_table(results: dict[str, Any]) -> list[str]:
    s = results.get("search")
    if not isinstance(s, dict):
        return []
    return [
        "",
        f"| search ({s['trials']} trials, {s['tasks']} tasks, {s['rows']} rows, one thread each) "
        "| parallelism 1 s | parallelism 2 s | 2 / 1 |",
        "|---|---:|---:|---:|",
        f"| wall | {s['wall_s_parallelism_1']} | {s['wall_s_parallelism_2']} | "
        f"{s['ratio_2_over_1']} (target <= {s['target_ratio']}; load {s['load_average_before']}"
        f" -> {s['load_average_after']} on {s['cores']} cores) |",
    ]


def scale_table(results: dict[str, Any]) -> list[str]:
    from bench.scale import table

    return table(results["scale"]) if isinstance(results.get("scale"), dict) else []


def containers_table(results: dict[str, Any]) -> list[str]:
    c = results.get("containers")
    if not isinstance(c, dict):
        return []
    lines = ["", "| image | MB | target MB |", "|---|---:|---:|"]
    lines += [
        f"| {i['reference']} | {i['size_mb']} | {i['target_mb']} |" for i in c["images"].values()
    ]
    lines += ["", "| training run (small) | wall s | ROC AUC |", "|---|---:|---:|"]
    lines += [f"| {k} | {r['wall_s']} | {r['roc_auc']} |" for k, r in c["pipeline"].items()]
    lines += [
        "",
        f"docker/subprocess {c['docker_over_subprocess']}x (target <= 1.2x); "
        f"first docker run / warm {c['first_over_warm']}x (target <= 1.2x)",
    ]
    return lines


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "load": round(os.getloadavg()[0], 2),
    }
    chosen = [n for n in sys.argv[1:] if n in BENCHES] or list(BENCHES)  # `python -m bench search`
    if set(chosen) - {"compile", "search", "scale", "spark", "text"}:  # these build their own
        ensure_production_model()
    results: dict[str, Any] = {}
    for name in chosen:
        if importlib.util.find_spec(f"bench.{name}") is None:
            continue
        print(f"[bench] {name} ...", flush=True)
        started = time.monotonic()
        try:
            results[name] = importlib.import_module(f"bench.{name}").run(OUT)
        except Exception as exc:  # a broken benchmark is reported, the others still run
            traceback.print_exc()
            results[name] = f"failed: {type(exc).__name__}: {exc}"
        print(f"[bench] {name} done in {time.monotonic() - started:.0f}s", flush=True)
    (OUT / "results.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2, default=str)
    )
    table = markdown(results, meta)
    (OUT / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
