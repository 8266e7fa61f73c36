"""`esteira manifests`: render every kustomize overlay and validate what it produces."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from esteira.config import ROOT, Settings, resolve_path

# esteira.manifests is imported in run(): the CLI discovers every command at start-up, and
# its validators (jsonschema, kubernetes-validate) are dev dependencies absent from images.


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "manifests",
        help="render kustomize overlays into dist/manifests/ and validate them",
        description=__doc__,
    )
    parser.add_argument(
        "--out-dir", default="dist/manifests", help="where <overlay>.yaml files are written"
    )
    parser.add_argument(
        "--root", default=str(ROOT / "manifests"), help="kustomize tree with base/ and overlays/"
    )
    parser.add_argument(
        "--katib-training-set",
        default="",
        help="the Parquet training set the Katib trials read "
        "(default s3://<storage.bucket>/<storage.prefix>search/training_set.parquet)",
    )
    parser.set_defaults(handler=run)


def format_table(objects: list[dict[str, Any]]) -> str:
    """A fixed-width KIND / NAMESPACE / NAME table, one object per line."""
    rows = [
        (
            str(o.get("kind", "?")),
            str((o.get("metadata") or {}).get("namespace", "-")),
            str((o.get("metadata") or {}).get("name", "?")),
        )
        for o in objects
    ]
    header = ("KIND", "NAMESPACE", "NAME")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    return "\n".join(
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Render, print a table per overlay, and exit 1 with every violation if any."""
    from esteira.manifests import KUBERNETES_VERSION, load_objects, render_all, validate_objects

    rendered = render_all(resolve_path(args.out_dir), Path(args.root))
    violations: list[str] = []
    for overlay, path in rendered.items():
        objects = load_objects(path)
        errors = validate_objects(objects)
        violations += [f"{overlay}: {e}" for e in errors]
        status = "ok" if not errors else f"{len(errors)} violation(s)"
        print(f"{overlay}: {len(objects)} objects -> {path} [{status}]")
        print(format_table(objects))
    violations += katib_experiment(args, settings)
    if violations:
        print(f"\n{len(violations)} violation(s):", file=sys.stderr)
        for line in violations:
            print(f"  - {line}", file=sys.stderr)
        return 1
    print(f"all {len(rendered)} overlays valid (Kubernetes {KUBERNETES_VERSION}, KServe CRDs)")
    return 0


def katib_experiment(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The search (model.search) as a Katib Experiment in <out-dir>/katib-experiment.yaml,
    checked by Katib's rules (esteira/katib.py); its violations."""
    import yaml

    from esteira.katib import build_experiment, check_experiment, check_trial_job

    storage = settings.storage
    uri = args.katib_training_set or (
        f"s3://{storage.bucket}/{storage.prefix.strip('/') + '/' if storage.prefix.strip('/') else ''}"
        "search/training_set.parquet"
    )
    experiment = build_experiment(settings, uri)
    errors = check_experiment(experiment) + check_trial_job(experiment)
    path = resolve_path(args.out_dir) / "katib-experiment.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(experiment, sort_keys=False))
    tmp.replace(path)
    spec = experiment["spec"]
    status = "ok" if not errors else f"{len(errors)} violation(s)"
    print(
        f"katib: Experiment {experiment['metadata']['name']} ({spec['algorithm']['algorithmName']}, "
        f"{spec['maxTrialCount']} trials, {spec['parallelTrialCount']} at once, "
        f"{len(spec['parameters'])} parameters) -> {path} [{status}]"
    )
    return [f"katib: {e}" for e in errors]
