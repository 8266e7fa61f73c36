"""`esteira run training`: the training pipeline on this machine (kfp.local)."""

from __future__ import annotations

import argparse
import sys

from esteira.config import Settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a pipeline locally with kfp.local")
    p.add_argument("pipeline", choices=["training"], nargs="?", default="training")
    p.add_argument("--out", default="dist/run", help="where summary.json goes")
    p.add_argument(
        "--runner",
        choices=["subprocess", "docker"],
        default="subprocess",
        help="kfp.local runner: this venv's subprocesses, or the component image (DockerRunner)",
    )
    p.add_argument(
        "--search",
        action="store_true",
        help="run the hyperparameter search (the `search` run parameter; model.search)",
    )
    p.set_defaults(handler=handle)


def handle(args: argparse.Namespace, settings: Settings) -> int:
    from esteira_cli.training_run import run_training

    summary = run_training(
        settings,
        args.out,
        runner=args.runner,
        config_path=args.config,
        arguments={"search": True} if args.search else None,
    )
    print(
        f"\n== {summary['pipeline']}: {summary['status']} in {summary['seconds']:.0f}s"
        f" ({summary['runner']} runner, {summary['pipeline_yaml']})"
    )
    if summary["status"] != "ok":
        print(f"error: {summary.get('error')}", file=sys.stderr)
        return 1
    metrics = summary["metrics"]
    shown = ", ".join(
        f"{k}={v:.3f}" for k, v in metrics.items() if k in ("roc_auc", "pr_auc", "f1", "rmse")
    )
    print(f"   metrics: {shown}")
    if t := summary.get("threshold"):
        cost, half = t.get("holdout_expected_cost"), t.get("holdout_expected_cost_at_0.5")
        costs = (
            f"; hold-out expected cost {cost:.1f} per 1,000 rows (at 0.5: {half:.1f})"
            if cost is not None and half is not None
            else ""
        )
        policy = (t.get("policy") or {}).get("policy", "?")
        print(f"   decision_threshold: {t['decision_threshold']:.4f} ({policy}){costs}")
    gate = summary.get("gate") or {}
    print(f"   gate passed: {summary['gate_passed']} ({gate.get('rule')}: {gate.get('reason')})")
    if search := summary.get("search"):
        print(
            f"   search: trial {search['trial']} of {search['trials']} won, CV {search['metric']} "
            f"{search['cv_mean']:.3f} ± {search['cv_std']:.3f} (hold-out above): {search['params']}"
        )
    feats = summary["features"]
    print(
        f"   features: {feats['feature_service']} rows={feats['training_rows']} dropped_by_ttl={feats['dropped_by_ttl']}"
    )
    if reg := summary.get("registry"):
        print(
            f"   registry: {reg['model']} v{reg['version']} promoted={reg['promoted']} production=v{reg['production_version']}"
        )
        print(f"   {reg['reason']}")
        print(f"   model card: esteira models card {reg['model']}:{reg['version']}")
    print(f"   model: {summary['model_uri']}")
    if summary["cached"]:
        print(f"   from cache: {', '.join(summary['cached'])}")
    if summary["tasks"]:
        images = sorted({t["image"] for t in summary["tasks"].values()})
        print(f"   containers: {len(summary['tasks'])} tasks in {', '.join(images)}")
    print(f"   summary: {args.out}/summary.json")
    return 0
