"""Retrain: the training pipeline on production's data plus the newly labelled data.

:func:`retraining_data` builds the retraining set: the data the production version
was trained on (its ``source_uri``) plus the newly labelled raw data, deduplicated
on the contract's unique key (newest wins) and written to the storage as
``retraining/<model>/<stamp>.parquet``. The model learns the new regime (new machine
model, recalibrated sensor) without forgetting the old one, and the training
pipeline's time-based hold-out is then the most recent data, so the gate and the
champion/challenger comparison judge both models on post-drift rows. The newest
``horizon`` hours have no label yet; ``label_frame`` drops them.

The monitoring pipeline then runs the training pipeline on that URI as a nested pipeline
under ``dsl.If(retrain)``: the same run, on kfp.local or on the cluster; no subprocess.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from esteira.config import Settings
from esteira.contract import load_contract


def _utc(values: Any) -> Any:
    return pd.to_datetime(values, utc=True)


RETRAIN_PREFIX = "retraining"


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
    combined = combined.sort_values([*contract.keys, ts], kind="stable").reset_index(drop=True)
    buf = io.BytesIO()
    combined.to_parquet(buf, index=False)
    key = f"{RETRAIN_PREFIX}/{registry.name}/{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}.parquet"
    registry.storage.put_bytes(key, buf.getvalue())
    return registry.storage.uri(key)


def new_labelled_rows(settings: Settings, new_raw: pd.DataFrame) -> int:
    """Rows of the new data whose label is known: older than the label horizon at its end."""
    contract = load_contract(settings.features.repo_path)
    ts = _utc(new_raw[contract.timestamp])
    if ts.empty:
        return 0
    return int((ts <= ts.max() - timedelta(hours=contract.label.horizon_hours)).sum())


def retraining_config(override: str, drift_detected: bool, degraded: bool, new_labels: int) -> str:
    """The nested training run's ``config``: the monitoring run's own override, plus what the
    retrain policy reads (``retrain.trigger``, ``retrain.new_labels``)."""
    try:
        doc = json.loads(override) if override.strip() else {}
    except json.JSONDecodeError:
        doc = {}  # resolve-settings already refused a bad override before this step ran
    trigger = "+".join(n for n, on in (("drift", drift_detected), ("degradation", degraded)) if on)
    section = dict(doc.get("retrain") or {})
    section |= {"trigger": trigger or "requested", "new_labels": int(new_labels)}
    return json.dumps({**doc, "retrain": section}, sort_keys=True)
