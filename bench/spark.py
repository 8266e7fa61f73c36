"""The feature step by engine: pandas vs Spark (local mode), wall time and peak RSS, at 1x and 10x.

1x is `make run`'s fleet (``data.machines`` x ``data.days`` hourly rows); 10x has ten
times the machines. Each measurement is a fresh process (the step as a KFP task runs it):
generate nothing inside the timing, read the raw Parquet, compute the rolling, event and
static tables and publish them where the Feast sources read them. Peak RSS is the sum over
the process tree (the Python process and Spark's JVM), sampled every 0.2 s.

``ESTEIRA_BENCH_SPARK_SCALES`` (default ``1,10``) picks the scales. Never asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

CHILD = r"""
import sys, time
from esteira.config import Settings
from esteira.contract import load_contract
from esteira.feature_engine import publish_feature_tables
from esteira.parquet import read_parquet
engine, raw_path, repo = sys.argv[1:4]
settings = Settings(features={"repo_path": repo, "engine": engine})
contract = load_contract(repo)
started = time.perf_counter()
publish_feature_tables(read_parquet(raw_path), contract, settings)
print(round(time.perf_counter() - started, 2))
"""


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def measure(engine: str, raw: Path, repo: Path) -> dict[str, Any]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, engine, str(raw), str(repo)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(watched))
        time.sleep(0.2)
    wall = time.perf_counter() - started
    out = proc.stdout.read().strip() if proc.stdout else ""
    if proc.returncode != 0:
        return {"error": f"exit {proc.returncode}"}
    return {
        "wall_s": round(wall, 1),
        "step_s": float(out.splitlines()[-1]) if out else None,
        "peak_rss_mb": round(peak / 1e6),
    }


def _repo(root: Path) -> Path:
    import shutil

    from esteira.config import load_settings
    from esteira.feast_store import repo_dir

    source = repo_dir(load_settings(os.environ.get("ESTEIRA_CONFIG")))
    target = root / "feature_repo"
    target.mkdir()
    for path in source.iterdir():
        if path.suffix in (".py", ".yaml"):
            shutil.copy(path, target / path.name)
    return target


def run(out: Path) -> dict[str, Any]:
    from esteira.config import load_settings
    from esteira.usecase import generate_data

    settings = load_settings(os.environ.get("ESTEIRA_CONFIG"))
    scales = [int(s) for s in os.environ.get("ESTEIRA_BENCH_SPARK_SCALES", "1,10").split(",")]
    results: dict[str, Any] = {"machines_at_1x": settings.data.machines, "days": settings.data.days}
    with tempfile.TemporaryDirectory(prefix="esteira-bench-spark-") as tmp:
        root = Path(tmp)
        for scale in scales:
            raw = root / f"raw_{scale}x.parquet"
            frame, _ = generate_data(settings, machines=settings.data.machines * scale)
            frame.to_parquet(raw, index=False)
            rows = len(frame)
            del frame
            for engine in ("pandas", "spark"):
                work = root / f"{engine}_{scale}x"
                work.mkdir()
                print(f"[bench] spark: {engine} {scale}x ({rows} rows)", flush=True)
                results[f"{engine}_{scale}x"] = {"rows": rows, **measure(engine, raw, _repo(work))}
    (out / "spark.json").write_text(json.dumps(results, indent=2))
    return results


def table(results: dict[str, Any]) -> list[str]:
    s = results.get("spark")
    if not isinstance(s, dict):
        return []
    lines = [
        "",
        "| feature tables (compute + publish) | rows | wall s | step s | peak RSS MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, r in s.items():
        if isinstance(r, dict):
            lines.append(
                f"| {key} | {r.get('rows', '')} | {r.get('wall_s', r.get('error', ''))} "
                f"| {r.get('step_s', '')} | {r.get('peak_rss_mb', '')} |"
            )
    return lines
