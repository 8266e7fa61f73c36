"""`esteira models ...`: list, show, promote, roll back and audit registered models.

The InferenceService serves the ``production`` alias, so only moves of that alias
redeploy (``rollback`` always, ``promote`` with ``--deploy``). The manifest goes to
``dist/deploy/<name>/``; with a cluster the alias moves only once the new version is
Ready, so a failed rollout leaves the alias and the serving version unchanged.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from esteira.config import Settings, resolve_path
from esteira.errors import EsteiraError
from esteira.registry import DEFAULT_ALIAS, ModelVersion, Registry, model_names
from esteira.storage import open_storage

DEPLOY_DIR = "dist/deploy"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models", help="the model registry: list, show, card, promote, rollback, history"
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    p = sub.add_parser("list", help="table of versions: name, version, created, metric, aliases")
    p.add_argument("name", nargs="?", help="only this model")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", help="metadata of NAME[:VERSION|:alias] as JSON")
    p.add_argument("ref", metavar="NAME[:VERSION|:ALIAS]")
    p.set_defaults(handler=cmd_show)

    p = sub.add_parser("card", help="the model card of NAME[:VERSION|:alias] (Markdown)")
    p.add_argument("ref", metavar="NAME[:VERSION|:ALIAS]")
    p.add_argument(
        "--format", choices=("md", "html", "json"), default="md", help="default: %(default)s"
    )
    p.add_argument("--out", help="write it to this file instead of printing it")
    p.set_defaults(handler=cmd_card)

    p = sub.add_parser("promote", help="point an alias (default production) at a version")
    p.add_argument("name")
    p.add_argument("version", help="3, v3 or another alias")
    _alias_args(p)
    p.add_argument("--deploy", action="store_true", help="deploy it first (production only)")
    p.set_defaults(handler=cmd_promote)

    p = sub.add_parser("rollback", help="move an alias back to its previous version")
    p.add_argument("name")
    _alias_args(p)
    p.set_defaults(handler=cmd_rollback)

    p = sub.add_parser("history", help="every alias move, oldest first")
    p.add_argument("name")
    p.add_argument("--alias", help="only this alias")
    p.set_defaults(handler=cmd_history)


def _alias_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alias", default=DEFAULT_ALIAS, help="alias to move (default: %(default)s)"
    )
    parser.add_argument("--reason", default="", help="why; kept in the alias history")
    parser.add_argument(
        "--manifest-only",
        action="store_true",
        help="only write the manifest even if a cluster is configured",
    )


def _registry(settings: Settings, name: str) -> Registry:
    return Registry(open_storage(settings.storage), name)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _metric_cell(version: ModelVersion, metric: str) -> str:
    value = (version.metadata.get("metrics") or {}).get(metric)
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    """Print one row per committed version."""
    storage = open_storage(settings.storage)
    names = [args.name] if args.name else model_names(storage)
    metric = settings.gate.compare_metric
    rows = [["NAME", "VERSION", "CREATED", metric.upper(), "ALIASES"]]
    for name in names:
        for v in Registry(storage, name).versions():
            created = str(v.metadata.get("created_at", "-"))
            rows.append(
                [name, f"v{v.version}", created, _metric_cell(v, metric), ",".join(v.aliases)]
            )
    if len(rows) == 1:
        print(f"no models registered in {storage.uri('models')}")
        return 0
    print(_table(rows))
    return 0


def split_ref(text: str) -> tuple[str, str | None]:
    """``"name:3"`` -> ("name", "3"); ``"name"`` -> ("name", None)."""
    name, sep, ref = text.partition(":")
    if sep and not ref:
        raise EsteiraError(
            "NAME:REF", f"{text!r} has an empty reference", "write NAME:3 or NAME:production"
        )
    return name, (ref if sep else None)


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    """Print a version's metadata (default: production, else the newest) as JSON."""
    name, ref = split_ref(args.ref)
    registry = _registry(settings, name)
    if ref is None:
        ref = DEFAULT_ALIAS if DEFAULT_ALIAS in registry.aliases() else _newest(registry)
    version = registry.get(ref)
    doc = {
        "name": version.name,
        "version": version.version,
        "uri": version.uri,
        "aliases": version.aliases,
        "files": registry.files(version.version),
        "metadata": version.metadata,
    }
    meta = version.metadata
    if "decision_threshold" in meta:  # what `prediction` is cut at, and the policy that chose it
        doc["decision_threshold"] = meta["decision_threshold"]
        doc["threshold_policy"] = meta.get("threshold_policy")
    # where the data came from: the source, its content hash, a dvc:// source's revision and md5
    lineage = meta.get("data_lineage") or {}
    doc["data"] = {
        "source_uri": meta.get("source_uri"),
        "content_hash": meta.get("data_hash"),
        **{k: lineage[k] for k in ("repo", "path", "rev", "git_rev", "dvc_md5") if k in lineage},
    }
    if "gate" in meta:  # the rule that passed it (absolute thresholds or a retrain's policy)
        doc["gate"] = meta["gate"]
    print(json.dumps(doc, indent=2, sort_keys=True))
    return 0


def cmd_card(args: argparse.Namespace, settings: Settings) -> int:
    """Print (or write) a version's model card (default: production, else the newest)."""
    name, ref = split_ref(args.ref)
    registry = _registry(settings, name)
    if ref is None:
        ref = DEFAULT_ALIAS if DEFAULT_ALIAS in registry.aliases() else _newest(registry)
    number = registry.resolve(ref)
    filename = f"card.{args.format}"
    if filename not in registry.files(number):
        raise EsteiraError(
            f"model {name!r} v{number}",
            "has no model card (registered before cards existed)",
            "register it again with the training pipeline, or read `esteira models show`",
        )
    body = registry.read_file(number, filename)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_bytes(body)
        print(f"wrote {args.out} ({name} v{number})")
    else:
        print(body.decode(), end="")
    return 0


def _newest(registry: Registry) -> int:
    versions = registry.versions()
    if not versions:
        raise EsteiraError(
            f"model {registry.name!r}",
            "has no registered versions",
            "run the training pipeline first",
        )
    return versions[-1].version


def _deploy(settings: Settings, version: ModelVersion, manifest_only: bool) -> str:
    """Deploy ``version``; returns a short description of what happened."""
    from esteira.deploy import deploy

    manifest_dir = resolve_path(DEPLOY_DIR) / version.name
    result = deploy(settings, version, Path(manifest_dir), cluster=False if manifest_only else None)
    if result.mode == "cluster":
        return f"deployed v{version.version}: InferenceService {result.namespace}/{result.name} is Ready"
    return f"wrote {result.manifest} (manifest-only: no cluster configured)"


def cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    """Point the alias at a version, deploying first when asked (production only)."""
    registry = _registry(settings, args.name)
    version = registry.get(args.version)
    if args.deploy:
        if args.alias != DEFAULT_ALIAS:
            raise EsteiraError(
                "--deploy",
                f"only the {DEFAULT_ALIAS!r} alias is served, not {args.alias!r}",
                f"drop --deploy or use --alias {DEFAULT_ALIAS}",
            )
        print(_deploy(settings, version, args.manifest_only))
    move = registry.set_alias(args.alias, version.version, args.reason)
    print(f"{args.name}: {args.alias} {_arrow(move.previous, move.version)}")
    return 0


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    """Redeploy the previous version (production), then move the alias back."""
    registry = _registry(settings, args.name)
    target = registry.rollback_target(args.alias)
    if args.alias == DEFAULT_ALIAS:
        print(_deploy(settings, registry.get(target), args.manifest_only))
    move = registry.rollback(args.alias, args.reason, expect=target)
    print(f"{args.name}: {args.alias} rolled back {_arrow(move.previous, move.version)}")
    return 0


def _arrow(previous: int | None, version: int) -> str:
    return f"v{previous} -> v{version}" if previous is not None else f"-> v{version}"


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    """Print every alias move, oldest first."""
    registry = _registry(settings, args.name)
    rows = [["SEQ", "TIME", "ALIAS", "MOVE", "KIND", "ACTOR", "REASON"]]
    for m in registry.history(args.alias):
        rows.append(
            [str(m.seq), m.time, m.alias, _arrow(m.previous, m.version), m.kind, m.actor, m.reason]
        )
    if len(rows) == 1:
        print(f"no alias moves for {args.name}")
        return 0
    print(_table(rows))
    return 0
