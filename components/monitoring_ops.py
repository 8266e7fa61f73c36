"""KFP components of batch prediction and monitoring: thin wrappers around the pure logic.

The logic lives in ``components/batch_predict.py`` and ``components/monitor.py``; tests
call it directly. KFP serialises a component's body alone, so its imports live inside
it. No ``from __future__ import annotations`` here: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from esteira.kfp_support import component


@component
def load_data(config: str, uri: str, dataset: Output[Dataset]) -> str:
    """Read raw data (path, http(s), s3://) into Parquet; returns the content hash."""
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.errors import ConfigError
    from esteira.ingest import ingest
    from esteira.kfp_support import guarded

    with guarded("load-data"):
        if not uri:
            raise ConfigError("uri", "no data to read", "pass the raw data's path or URI")
        settings = settings_from_json(config)
        result = ingest(uri, settings, load_contract(settings.features.repo_path))
        result.frame.to_parquet(dataset.path, index=False)
        dataset.metadata.update(result.metadata)
        print(f"loaded {len(result.frame)} rows from {uri} ({result.content_hash[:19]})")
        return result.content_hash


@component
def batch_features(
    config: str,
    data: Input[Dataset],
    entities_uri: str,
    history_uri: str,
    every_hours: int,
    features: Output[Dataset],
) -> NamedTuple("BatchFeatures", rows=int, requested_rows=int, dropped_by_ttl=dict):
    """Publish the new data's feature rows to Feast, then point-in-time features per entity row."""
    from collections import namedtuple

    import pandas as pd

    from components.batch_predict import logic as bp
    from components.register.logic import registry_for
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.feast_repo import apply_definitions
    from esteira.ingest import ingest
    from esteira.kfp_support import guarded

    with guarded("batch-features"):
        settings = settings_from_json(config)
        contract = load_contract(settings.features.repo_path)
        raw = pd.read_parquet(data.path)
        if not history_uri:
            production = bp.production_version(registry_for(settings))
            history_uri = production.metadata.get("source_uri") or settings.data.source_uri
        history = ingest(history_uri, settings, contract).frame
        published = bp.extend_sources(raw, history, settings, contract)
        print(
            f"published features from {published['start']} ({published['warmup_rows']} warm-up rows)"
        )
        apply_definitions(settings)
        if entities_uri:
            rows = bp.read_entity_rows(entities_uri, settings, contract, raw)
        else:
            rows = bp.entity_rows(
                raw, contract, every_hours or settings.features.sample_every_hours
            )
        retrieved = bp.historical_features(rows, settings)
        retrieved.frame.to_parquet(features.path, index=False)
        features.metadata.update(
            {
                "rows": len(retrieved.frame),
                "requested_rows": len(rows),
                "feature_names": retrieved.feature_names,
                "history_uri": history_uri,
            }
        )
        print(f"{len(retrieved.frame)} of {len(rows)} entity rows have features")
        out = namedtuple("BatchFeatures", ["rows", "requested_rows", "dropped_by_ttl"])
        return out(len(retrieved.frame), len(rows), dict(retrieved.dropped_by_ttl))


@component
def batch_predict(
    config: str, features: Input[Dataset], chunk_rows: int, predictions: Output[Dataset]
) -> NamedTuple("BatchPredictions", rows=int, model_version=int, uri=str, run_id=str):
    """Score with the production model in chunks; write Parquet on the storage and log the rows."""
    from collections import namedtuple

    import pandas as pd

    from components.batch_predict.logic import DEFAULT_CHUNK_ROWS, score_and_write
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded

    with guarded("batch-predict"):
        settings = settings_from_json(config)
        result = score_and_write(
            settings, pd.read_parquet(features.path), chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS
        )
        result.frame.to_parquet(predictions.path, index=False)
        summary = result.summary
        predictions.metadata.update({k: summary[k] for k in ("run_id", "model", "model_version")})
        predictions.metadata.update({"rows": result.predicted_rows, "uri": summary["uri"]})
        print(
            f"wrote {result.predicted_rows} predictions of v{result.model_version} to {summary['uri']}"
        )
        out = namedtuple("BatchPredictions", ["rows", "model_version", "uri", "run_id"])
        return out(result.predicted_rows, result.model_version, summary["uri"], result.run_id)


@component
def load_predictions(config: str, start: str, end: str, predictions: Output[Dataset]) -> int:
    """Logged predictions with event_timestamp in [start, end) (newest per entity and time)."""
    from components.live_performance.logic import logged_predictions
    from esteira.config import settings_from_json
    from esteira.errors import DataError
    from esteira.kfp_support import guarded

    with guarded("load-predictions"):
        frame = logged_predictions(settings_from_json(config), start or None, end or None)
        if frame.empty:
            raise DataError(
                "prediction log", f"has no predictions in [{start}, {end})", "run a batch first"
            )
        frame.to_parquet(predictions.path, index=False)
        predictions.metadata.update({"rows": len(frame), "start": start, "end": end})
        print(f"{len(frame)} logged predictions in [{start or '-inf'}, {end or 'inf'})")
        return len(frame)


@component
def drift_check(
    config: str,
    predictions: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    details: Output[Artifact],
) -> NamedTuple("Drift", drift_detected=bool, dataset_drift=bool, drift_share=float, features=dict):
    """Drift of the logged features against production's reference: metrics, HTML and verdict."""
    from collections import namedtuple

    import pandas as pd

    from components.live_performance import logic as monitor
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded, write_json

    with guarded("drift-check"):
        settings = settings_from_json(config)
        result, html = monitor.drift_check(settings, pd.read_parquet(predictions.path))
        verdict = monitor.drift_verdict(result)
        features = monitor.feature_summary(result)
        metrics.log_metric("drift_share", round(result.drift_share, 6))
        metrics.log_metric("drifted_features", len(result.drifted_features))
        metrics.log_metric("dataset_drift", int(result.dataset_drift))
        metrics.log_metric("drift_detected", int(verdict["drift_detected"]))
        for name, info in features.items():
            effect = info.get("psi", info.get("js"))
            if effect is not None:
                metrics.log_metric(f"{name}.{'psi' if 'psi' in info else 'js'}", effect)
            metrics.log_metric(f"{name}.drifted", int(info["drifted"]))
        with open(report.path, "w") as fh:
            fh.write(html)
        write_json(details.path, result.to_dict() | {"verdict": verdict})
        print(
            f"drift: {len(result.drifted_features)} of {len(features)} features drifted "
            f"(share {result.drift_share:.2f}); significant: {verdict['significant_features']}"
        )
        out = namedtuple("Drift", ["drift_detected", "dataset_drift", "drift_share", "features"])
        return out(
            verdict["drift_detected"], verdict["dataset_drift"], result.drift_share, features
        )


@component
def live_performance(
    config: str,
    predictions: Input[Dataset],
    labels: Input[Dataset],
    metrics: Output[Metrics],
    details: Output[Artifact],
) -> NamedTuple("LivePerformance", degraded=bool, status=str, performance=dict):
    """Logged predictions against the labels that arrived since; degradation vs training."""
    from collections import namedtuple

    import pandas as pd

    from components.live_performance import logic as monitor
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded, write_json

    with guarded("live-performance"):
        settings = settings_from_json(config)
        result = monitor.live_performance(
            pd.read_parquet(predictions.path), pd.read_parquet(labels.path), settings
        )
        for name, value in result.get("metrics", {}).items():
            if value is not None:
                metrics.log_metric(name, round(float(value), 6))
        metrics.log_metric("degraded", int(result["degraded"]))
        write_json(details.path, result)
        print(f"live performance: {result['status']}, degraded={result['degraded']}")
        out = namedtuple("LivePerformance", ["degraded", "status", "performance"])
        return out(result["degraded"], result["status"], result)


@component
def retrain_decision(drift_detected: bool, degraded: bool) -> bool:
    """One boolean for the pipeline's condition: drift or degradation (``monitor.should_retrain``).

    Inlined rather than imported: the rule is one line and importing the monitoring
    module (scikit-learn, scipy) would cost this task seconds.
    """
    decision = bool(drift_detected or degraded)
    print(f"retrain: {decision} (drift={drift_detected}, degraded={degraded})")
    return decision


@component
def retrain(config: str, new_data: Input[Dataset], mode: str, run: Output[Artifact]) -> NamedTuple(
    "Retrain", mode=str, status=str, run_id=str, data_uri=str, summary=dict
):
    """Training on production's data plus the newly labelled data: locally or on Kubeflow."""
    import os
    from collections import namedtuple

    import pandas as pd

    from components.live_performance import logic as monitor
    from esteira.config import settings_from_json
    from esteira.errors import EsteiraError
    from esteira.kfp_support import guarded

    with guarded("retrain"):
        settings = settings_from_json(config)
        data_uri = monitor.retraining_data(settings, pd.read_parquet(new_data.path))
        os.makedirs(run.path, exist_ok=True)
        result = monitor.trigger_retraining(settings, mode, data_uri=data_uri, work_dir=run.path)
        run.metadata.update({"mode": result.mode, "status": result.status, "data_uri": data_uri})
        print(f"retraining ({result.mode}): {result.status} on {data_uri}")
        if result.status == "failed":
            raise EsteiraError("retrain", f"the training pipeline failed: {result.error}")
        out = namedtuple("Retrain", ["mode", "status", "run_id", "data_uri", "summary"])
        return out(result.mode, result.status, result.run_id or "", data_uri, result.summary)
