"""Retrain: the training pipeline on production's data plus the newly labelled data.

:func:`retraining_data` builds the retraining set: the data the production version
was trained on (its ``source_uri``) plus the newly labelled raw data, deduplicated
on the contract's unique key (newest wins) and written to the storage as
``retraining/<model>/<stamp>.parquet``. The model learns the new regime (new machine
model, recalibrated sensor) without forgetting the old one, and the training
pipeline's time-based hold-out is then the most recent data, so the gate and the
champion/challenger comparison judge both models on post-drift rows. The newest
``horizon`` hours have no label yet; ``label_frame`` drops them.
:func:`trigger_retraining` runs the training pipeline on it, in a subprocess of the
``esteira`` CLI: locally as ``esteira run training`` (kfp.local), or on a cluster as
``esteira submit training`` (a run of the compiled pipeline on Kubeflow).
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from esteira.config import Settings
from esteira.contract import load_contract
from esteira.errors import EsteiraError


def _utc(values: Any) -> Any:
    return pd.to_datetime(values, utc=True)


RETRAIN_PREFIX = "retraining"


Mode = Literal["auto", "local", "cluster"]


def retraining_data(settings: Settings, new_raw: pd.DataFrame) -> str:
    """Write production's training data + ``new_raw`` to the storage; returns its URI.

    The URI is what the training pipeline's ``data.source_uri`` takes: a local path or
    ``s3://bucket/key`` on the configured storage.
    """
    from esteira.ingest import ingest
    from esteira.registry import registry_for

    contract = load_contract(settings.features.repo_path)
    registry = registry_for(settings)
    aliases = registry.aliases()
    base_uri = settings.data.source_uri
    if "production" in aliases:
        base_uri = registry.get(aliases["production"]).metadata.get("source_uri") or base_uri
    base = ingest(base_uri, settings, contract).frame
    ts = contract.timestamp
    parts = [f.assign(**{ts: _utc(f[ts])}) for f in (base, new_raw)]
    combined = pd.concat(parts, ignore_index=True)
    combined = combined.drop_duplicates(contract.unique, keep="last")
    combined = combined.sort_values([contract.entity, ts], kind="stable").reset_index(drop=True)
    buf = io.BytesIO()
    combined.to_parquet(buf, index=False)
    key = f"{RETRAIN_PREFIX}/{registry.name}/{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.parquet"
    registry.storage.put_bytes(key, buf.getvalue())
    return registry.storage.uri(key)


@dataclass
class Retraining:
    """What a retraining trigger did."""

    mode: str
    status: str
    data_uri: str
    run_id: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def resolve_mode(mode: str) -> str:
    """``auto``: ``cluster`` inside a Kubernetes pod, else ``local``."""
    if mode not in ("auto", "local", "cluster"):
        raise EsteiraError("retrain mode", f"{mode!r} is not auto, local or cluster", "")
    if mode == "auto":
        return "cluster" if os.environ.get("KUBERNETES_SERVICE_HOST") else "local"
    return mode


def _retrain_settings(settings: Settings, data_uri: str) -> Settings:
    data = settings.model_dump()
    data["data"]["source_uri"] = data_uri
    return Settings.model_validate(data)


def _child_env() -> dict[str, str]:
    """This environment minus what must not leak into a fresh ``esteira`` process.

    ``ESTEIRA_<SECTION>__<KEY>`` overrides would beat the config file (the pipeline's own
    config must rule), and ``_KFP_RUNTIME`` (set inside a KFP task) makes ``kfp.dsl`` skip
    the imports its compiler needs.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("ESTEIRA_") and "__" in k) and k != "_KFP_RUNTIME"
    }


def retrain_local(settings: Settings, work_dir: str | Path) -> Retraining:
    """``esteira run training`` in a subprocess with ``settings`` as its config file.

    kfp.local writes its run under ``work_dir/dist/local_outputs``; the training summary
    is ``work_dir/summary.json``. The subprocess output streams to this process' log.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    config = work / "retrain-config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=True))
    command = [
        sys.executable,
        "-m",
        "esteira_cli.cli",
        "--config",
        str(config),
        "run",
        "training",
        "--out",
        str(work),
    ]
    print(f"[retrain] running: esteira run training (data: {settings.data.source_uri})", flush=True)
    done = subprocess.run(command, cwd=work, env=_child_env(), check=False)
    summary_path = work / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    status = "ok" if done.returncode == 0 and summary.get("status") == "ok" else "failed"
    error = None if status == "ok" else summary.get("error") or f"exit code {done.returncode}"
    return Retraining(
        "local", status, settings.data.source_uri, summary.get("run_dir"), summary, error
    )


def retrain_cluster(settings: Settings, work_dir: str | Path) -> Retraining:
    """``esteira submit training`` in a subprocess with ``settings`` as its config file.

    The training pipeline is compiled with these settings as its default ``config`` and a
    run starts on Kubeflow (``kfp.host``, ``kfp.experiment``); it is not awaited. A refusal
    is the CLI's one-line error.
    """
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    config = work / "retrain-config.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=True))
    command = [
        sys.executable,
        "-m",
        "esteira_cli.cli",
        "--config",
        str(config),
        "submit",
        "training",
        "--out-dir",
        str(work),
        "--run-name",
        f"retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}",
    ]
    print("[retrain] running: esteira submit training", flush=True)
    done = subprocess.run(
        command, cwd=work, env=_child_env(), capture_output=True, text=True, check=False
    )
    started = re.search(r"^run (\S+) started", done.stdout, re.MULTILINE)
    if done.returncode != 0 or not started:
        lines = (done.stderr or done.stdout).strip().splitlines()
        reason = lines[-1].removeprefix("error: ") if lines else f"exit code {done.returncode}"
        raise EsteiraError("retrain", f"submitting the training pipeline failed: {reason}")
    return Retraining("cluster", "submitted", settings.data.source_uri, started.group(1))


def trigger_retraining(
    settings: Settings,
    mode: str = "auto",
    *,
    data_uri: str | None = None,
    work_dir: str | Path | None = None,
) -> Retraining:
    """Run the training pipeline on ``data_uri`` (see :func:`retraining_data`).

    ``local``: kfp.local in a subprocess, waiting for the result; ``cluster``: a run
    submitted to Kubeflow (not awaited); ``auto`` picks by environment.
    """
    target = (_retrain_settings(settings, data_uri) if data_uri else settings).resolved()
    if work_dir is None:
        work_dir = tempfile.mkdtemp(prefix="esteira-retrain-")
    if resolve_mode(mode) == "cluster":
        return retrain_cluster(target, work_dir)
    return retrain_local(target, work_dir)
