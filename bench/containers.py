"""Images and the docker runner: sizes, pipeline wall docker vs subprocess, first vs warm run.

One small training run (25 machines x 60 days, from the compiled YAML) under each runner in
the same process: docker first (the first run after `make images` when they run back to back,
layers and page cache cold), then subprocess, then docker again (warm). Never asserted.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_MB = {"component": 1100, "serving": 800}


def _sizes() -> dict[str, Any]:
    from esteira import engine
    from esteira.config import Settings

    image = Settings().image
    client = engine.client()
    try:
        sizes = {}
        for role, ref in (("component", image.reference), ("serving", image.serving_reference)):
            attrs = engine.require_image(client, ref)
            sizes[role] = {
                "reference": ref,
                "size_mb": round(attrs["Size"] / 1e6),
                "target_mb": TARGET_MB[role],
            }
        return sizes
    finally:
        client.close()


def _wall(runner: str, workdir: Path) -> dict[str, Any]:
    from esteira_cli.training_run import run_training
    from testkit.pipeline import small_workspace

    settings = small_workspace(workdir)
    started = time.monotonic()
    summary = run_training(settings, workdir / "run", root=workdir / "outputs", runner=runner)
    return {
        "wall_s": round(time.monotonic() - started, 1),
        "status": summary["status"],
        "roc_auc": round(summary["metrics"].get("roc_auc", float("nan")), 4),
    }


def run(out: Path) -> dict[str, Any] | str:
    from esteira.errors import EsteiraError

    try:
        results: dict[str, Any] = {"images": _sizes()}
    except EsteiraError as exc:
        return f"skipped: {exc.message}"
    built = Path("dist/images/images.json")
    if built.exists():
        results["last_build_seconds"] = json.loads(built.read_text()).get("build_seconds")
    with tempfile.TemporaryDirectory(prefix="esteira-bench-") as tmp:
        runs = {}
        for label, runner in (
            ("docker_first", "docker"),
            ("subprocess", "subprocess"),
            ("docker_warm", "docker"),
        ):
            print(f"[bench] containers: {label} ...", flush=True)
            runs[label] = _wall(runner, Path(tmp) / label)
    results["pipeline"] = runs
    sub, warm, first = (runs[k]["wall_s"] for k in ("subprocess", "docker_warm", "docker_first"))
    results["docker_over_subprocess"] = round(warm / sub, 2) if sub else None
    results["first_over_warm"] = round(first / warm, 2) if warm else None
    (out / "containers.json").write_text(json.dumps(results, indent=2))
    return results
