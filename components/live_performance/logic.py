"""Monitoring: data drift of the logged features, live performance once labels arrive, retraining.

Drift
    :func:`drift_check` compares the features of logged predictions with the
    ``reference.json`` profile the production version stored at registration
    (``esteira.drift.compare``) and renders the HTML report. Drift warrants retraining
    (``DriftReport.drift_detected``, reported by :func:`drift_verdict`) when the dataset drifts (the share of
    drifted features reaches ``monitoring.drift_share``) **or** at least one feature
    drifts with *significant* severity (PSI >= ``monitoring.psi_significant``, or JS
    distance >= ``esteira.drift.JS_SIGNIFICANT`` for categories). The share alone is
    diluted by correlated derived features: a recalibrated voltage sensor moves 6 of the
    39 features (every volt mean/min/max) by a PSI of 1 to 5, a 15% share, yet it
    invalidates what the model learnt about voltage.

Live performance
    Labels arrive later: a prediction made at ``event_timestamp`` t is labelled 1 when
    the contract's event (``failure``) happens in (t, t + horizon], and its label is
    known once the raw data reaches t + horizon for that entity (the same rule as
    ``esteira.features.label_frame``). :func:`live_performance` joins the logged
    predictions with those labels and computes, over the window and per day of
    ``event_timestamp``: rows, positives, ROC AUC and PR AUC (when both classes are
    present) and precision/recall/F1 of the logged decision. The model is *degraded*
    when a metric the gate cares about (``gate.compare_metric`` and every
    ``gate.thresholds`` metric) is worse than the value recorded at training
    (``metadata["metrics"]``) by more than ``monitoring.performance_tolerance``
    (absolute). With fewer than ``min_positives`` labelled positives the comparison is
    not made (``status="insufficient_labels"``): a handful of failures says nothing.

Retraining
    :func:`retraining_data` builds the retraining set: the data the production version
    was trained on (its ``source_uri``) plus the newly labelled raw data, deduplicated
    on the contract's unique key (newest wins) and written to the storage as
    ``retraining/<model>/<stamp>.parquet``. The model learns the new regime (new machine
    model, recalibrated sensor) without forgetting the old one, and the training
    pipeline's time-based hold-out is then the most recent data, so the gate and the
    champion/challenger comparison judge both models on post-drift rows. The newest
    ``horizon`` hours have no label yet; ``label_frame`` drops them.
    :func:`trigger_retraining` runs the training pipeline on it: locally as
    ``esteira run training`` in a subprocess (kfp.local), or on a cluster as a run of
    the compiled training pipeline through ``kfp.Client``.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from sklearn import metrics as skm

from esteira.config import KNOWN_METRICS, Settings
from esteira.contract import Contract, load_contract
from esteira.drift import DriftReport, compare
from esteira.errors import DataError, EsteiraError
from esteira.features import EVENT_TS

REFERENCE_FILE = "reference.json"
MIN_POSITIVES = 10
"""Labelled positives below which live metrics are reported but not compared."""
RETRAIN_PREFIX = "retraining"
Mode = Literal["auto", "local", "cluster"]


# ---- the prediction log --------------------------------------------------------------------
def _utc(values: Any) -> Any:
    return pd.to_datetime(values, utc=True)


def logged_predictions(
    settings: Settings,
    start: str | None = None,
    end: str | None = None,
    source: str | None = None,
) -> pd.DataFrame:
    """Logged predictions whose ``event_timestamp`` is in [start, end), one per entity and time.

    When an entity and time was predicted more than once (a batch re-run, online and
    batch), the newest prediction (``served_at``) is kept. ``source`` keeps only
    ``online`` or ``batch`` rows.
    """
    from components.register.logic import registry_for
    from esteira.prediction_log import read_log

    contract = load_contract(settings.features.repo_path)
    registry = registry_for(settings)
    frame = read_log(registry.storage, settings.model.name)
    if frame.empty:
        return frame
    stamps = _utc(frame[EVENT_TS])
    keep = pd.Series(True, index=frame.index)
    if start:
        keep &= stamps >= _utc(start)
    if end:
        keep &= stamps < _utc(end)
    if source:
        keep &= frame["source"] == source
    frame = frame.loc[keep].assign(**{EVENT_TS: stamps[keep]})
    frame = frame.sort_values("served_at", kind="stable")
    frame = frame.drop_duplicates([contract.entity, EVENT_TS], keep="last")
    return frame.sort_values([EVENT_TS, contract.entity], kind="stable").reset_index(drop=True)


# ---- drift ---------------------------------------------------------------------------------
def _production(settings: Settings) -> Any:
    from components.batch_predict.logic import production_version
    from components.register.logic import registry_for

    registry = registry_for(settings)
    return registry, production_version(registry)


def drift_check(settings: Settings, current: pd.DataFrame) -> tuple[DriftReport, str]:
    """Drift of ``current``'s model features against the production version's reference."""
    from esteira.report import render_drift_html

    registry, version = _production(settings)
    reference = json.loads(registry.read_file(version.version, REFERENCE_FILE))
    features = list(version.metadata["feature_names"])
    report = compare(reference, current, settings.monitoring, features)
    title = f"Data drift: {registry.name} v{version.version} ({len(current)} logged rows)"
    return report, render_drift_html(report, title)


def drift_verdict(report: DriftReport) -> dict[str, Any]:
    """Whether the drift warrants retraining (see the module doc), with the reasons."""
    return {
        "drift_detected": report.drift_detected,
        "dataset_drift": bool(report.dataset_drift),
        "drift_share": float(report.drift_share),
        "drifted_features": report.drifted_features,
        "significant_features": report.significant_features,
    }


def feature_summary(report: DriftReport) -> dict[str, dict[str, Any]]:
    """Per feature: kind, drifted, severity, effect size (PSI or JS) and p-value, JSON-safe."""
    out: dict[str, dict[str, Any]] = {}
    for f in report.features:
        effect = f.effect_size
        out[f.feature] = {
            "kind": f.kind,
            "drifted": bool(f.drifted),
            "severity": f.severity,
            "psi" if f.kind == "numeric" else "js": None
            if math.isnan(effect)
            else round(effect, 6),
            "p_value": float(f"{f.p_value:.6g}"),
        }
    return out


# ---- live performance ----------------------------------------------------------------------
def attach_labels(predictions: pd.DataFrame, raw: pd.DataFrame, contract: Contract) -> pd.DataFrame:
    """``predictions`` with the contract's label where it is known yet (others dropped).

    Label 1: the event happens in (event_timestamp, event_timestamp + horizon] for the
    entity. Known: the entity's raw data reaches event_timestamp + horizon.
    """
    entity, ts = contract.entity, contract.timestamp
    horizon = pd.Timedelta(hours=contract.label.horizon_hours)
    stamps = _utc(raw[ts])
    events = pd.DataFrame({entity: raw[entity].to_numpy(), "_next": stamps.to_numpy()})
    events = events.loc[(raw[contract.label.event] > 0).to_numpy()].sort_values("_next")
    last_seen = pd.DataFrame({entity: raw[entity].to_numpy(), "_last": stamps.to_numpy()})
    last_seen = last_seen.groupby(entity, as_index=False)["_last"].max()

    rows = predictions.assign(**{EVENT_TS: _utc(predictions[EVENT_TS])})
    rows = rows.sort_values(EVENT_TS, kind="stable")
    events[entity] = events[entity].astype(rows[entity].dtype)
    last_seen[entity] = last_seen[entity].astype(rows[entity].dtype)
    joined = pd.merge_asof(
        rows,
        events,
        left_on=EVENT_TS,
        right_on="_next",
        by=entity,
        direction="forward",
        allow_exact_matches=False,
    )
    joined = joined.merge(last_seen, on=entity, how="left")
    known = joined["_last"].notna() & (joined[EVENT_TS] + horizon <= joined["_last"])
    joined = joined.loc[known].copy()
    joined[contract.label.name] = ((joined["_next"] - joined[EVENT_TS]) <= horizon).to_numpy(
        dtype=np.int64
    )
    return joined.drop(columns=["_next", "_last"]).reset_index(drop=True)


def classification_metrics(y: np.ndarray, proba: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """rows, positives, AUCs (None with one class) and precision/recall/F1 of the decisions."""
    both = len(np.unique(y)) == 2
    return {
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "positive_rate": float(y.mean()) if len(y) else 0.0,
        "roc_auc": float(skm.roc_auc_score(y, proba)) if both else None,
        "pr_auc": float(skm.average_precision_score(y, proba)) if both else None,
        "precision": float(skm.precision_score(y, pred, zero_division=0)),
        "recall": float(skm.recall_score(y, pred, zero_division=0)),
        "f1": float(skm.f1_score(y, pred, zero_division=0)),
    }


def _compared_metrics(settings: Settings) -> list[str]:
    names = [settings.gate.compare_metric, *settings.gate.thresholds]
    return list(dict.fromkeys(n for n in names if n in KNOWN_METRICS))


def degradation(
    live: dict[str, Any], recorded: dict[str, float], metrics: list[str], tolerance: float
) -> dict[str, dict[str, Any]]:
    """Per metric: recorded, live, change and whether it is worse by more than ``tolerance``."""
    out: dict[str, dict[str, Any]] = {}
    for name in metrics:
        value, baseline = live.get(name), recorded.get(name)
        if value is None or baseline is None:
            continue
        change = float(value) - float(baseline)
        worse = -change if KNOWN_METRICS[name] == "maximize" else change
        out[name] = {
            "recorded": float(baseline),
            "live": float(value),
            "change": change,
            "degraded": bool(worse > tolerance),
        }
    return out


def _chosen_version(predictions: pd.DataFrame, production: int | None) -> int:
    versions = set(predictions["model_version"].astype(int))
    return production if production in versions else max(versions)


def live_performance(
    predictions: pd.DataFrame,
    raw_with_labels: pd.DataFrame,
    settings: Settings,
    *,
    min_positives: int = MIN_POSITIVES,
) -> dict[str, Any]:
    """Metrics of logged predictions against labels that arrived later, and the degradation flag.

    Rows of one model version are judged (the production version when it made some of
    them, else the newest) against the metrics that version recorded at training.
    """
    from components.register.logic import registry_for

    contract = load_contract(settings.features.repo_path)
    registry = registry_for(settings)
    result: dict[str, Any] = {"status": "no_predictions", "degraded": False, "rows": 0}
    if predictions.empty:
        return result
    production = registry.aliases().get("production")
    version = _chosen_version(predictions, production)
    meta = registry.get(version).metadata
    if meta.get("task", "classification") != "classification":
        raise DataError("live performance", "only classification is monitored", "")
    rows = predictions.loc[predictions["model_version"].astype(int) == version]
    labelled = attach_labels(rows, raw_with_labels, contract)
    label = contract.label.name
    result |= {
        "model_version": int(version),
        "rows": int(len(rows)),
        "labelled_rows": int(len(labelled)),
        "unlabelled_rows": int(len(rows) - len(labelled)),
    }
    if labelled.empty:
        return result | {"status": "no_labels"}

    def scores(part: pd.DataFrame) -> dict[str, Any]:
        return classification_metrics(
            part[label].to_numpy(),
            part["probability"].to_numpy(dtype=float),
            part["prediction"].to_numpy(dtype=int),
        )

    overall = scores(labelled)
    days = labelled[EVENT_TS].dt.strftime("%Y-%m-%d")
    per_day = {day: scores(part) for day, part in labelled.groupby(days, sort=True)}
    compared = degradation(
        overall,
        meta.get("metrics", {}),
        _compared_metrics(settings),
        settings.monitoring.performance_tolerance,
    )
    enough = overall["positives"] >= min_positives and overall["roc_auc"] is not None
    return result | {
        "status": "ok" if enough else "insufficient_labels",
        "metrics": overall,
        "per_day": per_day,
        "recorded_metrics": {k: meta.get("metrics", {}).get(k) for k in compared},
        "comparison": compared,
        "tolerance": settings.monitoring.performance_tolerance,
        "min_positives": min_positives,
        "degraded": bool(enough and any(c["degraded"] for c in compared.values())),
    }


# ---- retraining ----------------------------------------------------------------------------
def should_retrain(drift_detected: bool, degraded: bool) -> bool:
    """Retrain on retraining-worthy drift or on degraded live performance."""
    return bool(drift_detected or degraded)


def retraining_data(settings: Settings, new_raw: pd.DataFrame) -> str:
    """Write production's training data + ``new_raw`` to the storage; returns its URI.

    The URI is what the training pipeline's ``data.source_uri`` takes: a local path or
    ``s3://bucket/key`` on the configured storage.
    """
    from components.register.logic import registry_for
    from esteira.ingest import ingest

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


def retrain_cluster(settings: Settings) -> Retraining:
    """Start a run of the training pipeline on Kubeflow (``kfp.host``, ``kfp.experiment``)."""
    from esteira.config import settings_to_json
    from esteira_cli.submit import submit

    with tempfile.TemporaryDirectory() as tmp:
        run = submit(
            "training",
            settings,
            {"config": settings_to_json(settings)},
            out_dir=Path(tmp),
            run_name=f"retrain-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        )
    return Retraining("cluster", "submitted", settings.data.source_uri, run.run_id)


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
    if resolve_mode(mode) == "cluster":
        return retrain_cluster(target)
    if work_dir is None:
        work_dir = tempfile.mkdtemp(prefix="esteira-retrain-")
    return retrain_local(target, work_dir)
