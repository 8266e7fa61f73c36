"""`make soak`: the training pipeline N times in a row under kfp.local, on small data.

``python -m bench.soak [--runs 20] [--out dist/soak]`` builds one small workspace (the
tests' fixture: 25 machines x 60 days, its own store and feature repo copy) and runs the
training pipeline ``--runs`` times in a row in it, as a scheduler would: the first run
registers and promotes v1, the later ones register v2, v3, ... and re-score the champion.
Every run's status, wall time and failed step (the first task kfp.local marked as not
successful, with its message) go to ``<out>/summary.json``
(the workspace and the runs' task directories stay in ``<out>/work``), rewritten after every run so
a long soak can be watched. The exit status is non-zero unless every run is ok.

A release check, not a test: a flaky step (a crash at exit one run in seven) passes a
single pipeline run most of the time but 20 runs in a row with probability under 5%.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def soak(runs: int, out: Path, work: Path) -> dict[str, Any]:
    from esteira_cli.local_run import run_pipeline, write_summary
    from esteira_cli.training_run import summarize
    from testkit.pipeline import small_workspace

    settings = small_workspace(work)
    summary: dict[str, Any] = {
        "pipeline": "training",
        "runs_requested": runs,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "workspace": str(work),
        "runs": [],
    }
    for i in range(1, runs + 1):
        run = run_pipeline("training", settings, root=work / "outputs")
        result = summarize(run)
        summary["runs"].append(
            {
                "run": i,
                "status": run.status,
                "seconds": run.seconds,
                "failed_step": run.failed_step,
                "error": run.error,
                "registered_version": (result.get("registry") or {}).get("version"),
                "run_dir": run.run_dir,
            }
        )
        done = summary["runs"]
        summary["ok"] = sum(r["status"] == "ok" for r in done)
        summary["failed"] = len(done) - summary["ok"]
        summary["failed_steps"] = sorted({r["failed_step"] for r in done if r["failed_step"]})
        write_summary(summary, out)
        print(
            f"[soak] run {i}/{runs}: {run.status} in {run.seconds:.0f}s"
            + (f", failed step {run.failed_step}: {run.error}" if run.status != "ok" else ""),
            flush=True,
        )
    summary["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_summary(summary, out)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--runs", type=int, default=20, help="pipeline runs in a row (20)")
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "soak")
    args = parser.parse_args(argv)
    if args.runs < 1:
        print(f"error: --runs must be at least 1 (got {args.runs})", file=sys.stderr)
        return 2
    started = time.monotonic()
    work = args.out / "work"  # kept, so a failed run's task directories can be read
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    summary = soak(args.runs, args.out, work)
    print(
        f"[soak] {summary['ok']}/{args.runs} runs ok in {time.monotonic() - started:.0f}s; "
        f"summary in {args.out / 'summary.json'}",
        flush=True,
    )
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
