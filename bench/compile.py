"""`esteira compile` of every pipeline and component, as a user runs it: wall time of a fresh process.

Most of it is imports; the target is 3 s for all pipelines and components. Each run
is a new interpreter (nothing cached in memory; the bytecode cache is warm after the first).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RUNS = 5


def compile_once(out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "esteira_cli.cli",
            "compile",
            "--out",
            str(out / "pipelines"),
            "--components-out",
            str(out / "components"),
        ],
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def run(out_dir: Path, runs: int = RUNS) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        compile_once(Path(tmp))  # warm the bytecode cache
        seconds = [compile_once(Path(tmp)) for _ in range(runs)]
        files = len(list(Path(tmp).rglob("*.yaml")))
    ordered = sorted(seconds)
    return {
        "esteira compile (all pipelines and components)": {
            "p50_ms": round(statistics.median(seconds) * 1000, 1),
            "p99_ms": round(ordered[-1] * 1000, 1),
            "runs": runs,
            "files": files,
            "target_ms": 3000,
        }
    }


if __name__ == "__main__":
    print(run(Path("dist/bench"), runs=3))
