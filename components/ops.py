"""The KFP components: thin ``@dsl.component`` wrappers around the pure logic modules.

Each body only converts between KFP artifacts and the typed functions in
``components/`` and ``esteira/``; tests call those functions directly. KFP
serialises a component's body alone, so its imports live inside it. No
``from __future__ import annotations`` here: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from esteira.kfp_support import component


@component
def ingest(config: str, dataset: Output[Dataset]) -> str:
    """Read the configured source (path, http(s), s3://) into Parquet; returns the content hash."""
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.ingest import ingest as run
    from esteira.kfp_support import guarded

    with guarded("ingest"):
        settings = settings_from_json(config)
        result = run(settings.data.source_uri, settings, load_contract(settings.features.repo_path))
        result.frame.to_parquet(dataset.path, index=False)
        dataset.metadata.update(result.metadata)
        print(
            f"ingested {len(result.frame)} rows from {result.source_uri} ({result.content_hash[:19]})"
        )
        return result.content_hash


@component
def validate(config: str, dataset: Input[Dataset], report: Output[Metrics]):
    """Check the dataset contract; any violation fails the task and stops the pipeline."""
    import pandas as pd

    from components.validate.logic import validate as run
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.kfp_support import guarded

    with guarded("validate"):
        settings = settings_from_json(config)
        result = run(
            pd.read_parquet(dataset.path),
            load_contract(settings.features.repo_path),
            settings.validation,
        )
        report.log_metric("rows", result.rows)
        report.log_metric("violations", len(result.violations))
        for column, ratio in result.null_ratios.items():
            report.log_metric(f"null_ratio.{column}", ratio)
        result.raise_for_violations()
        print(f"{result.rows} rows valid against the contract")


@component
def compute_features(config: str, dataset: Input[Dataset], entities: Output[Dataset]) -> dict:
    """Write the Feast sources' tables; output the labelled entity rows for training."""
    import pandas as pd

    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.feast_repo import publish_sources
    from esteira.features import compute_feature_tables, label_frame
    from esteira.kfp_support import guarded

    with guarded("compute-features"):
        settings = settings_from_json(config)
        contract = load_contract(settings.features.repo_path)
        raw = pd.read_parquet(dataset.path)
        published = publish_sources(compute_feature_tables(raw, contract), settings)
        rows = label_frame(raw, contract, settings.features.sample_every_hours)
        rows.to_parquet(entities.path, index=False)
        entities.metadata.update(
            {"rows": len(rows), "positive_rate": float(rows[contract.label.name].mean())}
        )
        return published


@component
def feast_apply(config: str) -> str:
    """Register the feature definitions (idempotent); returns their hash."""
    from esteira.config import settings_from_json
    from esteira.feast_repo import apply_definitions
    from esteira.kfp_support import guarded

    with guarded("feast-apply"):
        applied = apply_definitions(settings_from_json(config))
        print(f"applied {applied['feature_views']} and service {applied['feature_service']}")
        return applied["definitions_hash"]


@component
def build_training_set(
    config: str, entities: Input[Dataset], training_set: Output[Dataset]
) -> NamedTuple("TrainingSetInfo", feature_service=str, training_rows=int, dropped_by_ttl=int):
    """Point-in-time correct features for every labelled row, through the FeatureService."""
    from collections import namedtuple

    import pandas as pd

    from esteira.config import settings_from_json
    from esteira.feast_repo import build_training_set as run
    from esteira.kfp_support import guarded

    with guarded("build-training-set"):
        settings = settings_from_json(config)
        result = run(pd.read_parquet(entities.path), settings)
        result.frame.to_parquet(training_set.path, index=False)
        training_set.metadata.update(
            {
                "feature_service": result.feature_service,
                "feature_names": result.feature_names,
                "requested_rows": result.requested_rows,
                "dropped_by_ttl": result.dropped_rows,
                "dropped_by_view": result.dropped_by_ttl,
            }
        )
        print(
            f"training set: {len(result.frame)} rows, {result.dropped_rows} dropped by TTL {result.dropped_by_ttl}"
        )
        info = namedtuple("TrainingSetInfo", ["feature_service", "training_rows", "dropped_by_ttl"])
        return info(result.feature_service, len(result.frame), result.dropped_rows)


@component
def train(
    config: str, training_set: Input[Dataset], model: Output[Model], holdout: Output[Dataset]
):
    """Fit the configured scikit-learn Pipeline on the past; keep the future as hold-out."""
    import os
    from pathlib import Path

    import pandas as pd

    from components.train.logic import train_model
    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.kfp_support import guarded, write_json
    from esteira.safe_load import dump_model

    with guarded("train"):
        settings = settings_from_json(config)
        contract = load_contract(settings.features.repo_path)
        frame = pd.read_parquet(training_set.path)
        features = list(training_set.metadata["feature_names"])
        result = train_model(
            frame,
            features,
            contract.label.name,
            settings.model,
            purge_hours=contract.label.horizon_hours,
        )
        os.makedirs(model.path, exist_ok=True)
        Path(model.path, "model.joblib").write_bytes(dump_model(result.model))
        info = {
            "feature_names": result.feature_names,
            "categorical": result.categorical,
            "label": contract.label.name,
            "task": settings.model.task,
            "family": settings.model.family,
            "parameters": result.parameters,
            "split_time": result.split_time,
            "training_rows": len(result.train),
            "holdout_rows": len(result.holdout),
        }
        write_json(os.path.join(model.path, "training.json"), info)
        model.metadata.update(
            {"framework": "scikit-learn", **{k: info[k] for k in ("family", "task")}}
        )
        result.holdout.to_parquet(holdout.path, index=False)
        print(
            f"trained {settings.model.family} on {len(result.train)} rows; hold-out {len(result.holdout)} rows"
        )


@component
def evaluate(
    config: str,
    model: Input[Model],
    holdout: Input[Dataset],
    metrics: Output[Metrics],
    curves: Output[ClassificationMetrics],
    report: Output[HTML],
) -> dict:
    """Hold-out metrics for the UI (scalars, ROC curve, confusion matrix, an HTML report)."""
    import json
    from pathlib import Path

    import pandas as pd

    from esteira.config import settings_from_json
    from esteira.evaluation import score
    from esteira.kfp_support import guarded
    from esteira.report import render_metrics_html
    from esteira.safe_load import load_model

    with guarded("evaluate"):
        settings = settings_from_json(config)
        info = json.loads(Path(model.path, "training.json").read_text())
        fitted = load_model(Path(model.path, "model.joblib"))
        result = score(
            fitted,
            pd.read_parquet(holdout.path),
            info["feature_names"],
            info["label"],
            settings.model,
        )
        for name, value in result.metrics.items():
            metrics.log_metric(name, round(value, 6))
        if result.roc:
            curves.log_roc_curve(result.roc["fpr"], result.roc["tpr"], result.roc["threshold"])
            curves.log_confusion_matrix(["no failure", "failure"], result.confusion)
        Path(report.path).write_text(
            render_metrics_html(result.metrics, result.roc, result.confusion, "Hold-out evaluation")
        )
        return result.metrics


@component
def gate(config: str, scores: dict) -> bool:
    """The absolute thresholds (gate.thresholds). One boolean output, so `dsl.If` can branch on it."""
    from esteira.config import settings_from_json
    from esteira.evaluation import check_thresholds
    from esteira.kfp_support import guarded

    with guarded("gate"):
        failures = check_thresholds(scores, settings_from_json(config).gate.thresholds)
        print("gate passed" if not failures else "gate failed: " + "; ".join(failures))
        return not failures


@component
def register(
    config: str,
    model: Input[Model],
    training_set: Input[Dataset],
    metrics: dict,
    data_hash: str,
    definitions_hash: str,
    code_version: str,
    run_id: str,
) -> NamedTuple("Registered", version=int, model_uri=str):
    """Store the model as a new immutable registry version with everything needed to trace it."""
    from collections import namedtuple

    from components.register.logic import register_model
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded

    with guarded("register"):
        version = register_model(
            settings_from_json(config),
            model.path,
            training_set.path,
            dict(training_set.metadata),
            metrics=metrics,
            data_hash=data_hash,
            definitions_hash=definitions_hash,
            code_version=code_version,
            run_id=run_id,
        )
        print(f"registered {version.name} v{version.version} at {version.uri}")
        return namedtuple("Registered", ["version", "model_uri"])(version.version, version.uri)


@component
def promote(config: str, version: int, holdout: Input[Dataset], decision: Output[Artifact]) -> bool:
    """Champion/challenger on the same hold-out; move `production` only for a better model."""
    import pandas as pd

    from components.register.logic import champion_challenger
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded, write_json

    with guarded("promote"):
        result = champion_challenger(
            settings_from_json(config), version, pd.read_parquet(holdout.path)
        )
        write_json(decision.path, result)
        decision.metadata.update(result)
        print(result["reason"])
        return result["promoted"]


@component
def deploy(config: str, version: int, manifest: Output[Artifact]) -> str:
    """The InferenceService for the promoted version: applied on a cluster, else written as a manifest."""
    import os
    from pathlib import Path

    from esteira.config import settings_from_json
    from esteira.deploy import deploy as run
    from esteira.kfp_support import guarded
    from esteira.registry import Registry
    from esteira.storage import open_storage

    with guarded("deploy"):
        settings = settings_from_json(config)
        registry = Registry(open_storage(settings.storage), settings.model.name)
        os.makedirs(manifest.path, exist_ok=True)
        result = run(settings, registry.get(version), Path(manifest.path))
        manifest.metadata.update({"mode": result.mode, "version": version})
        print(f"deploy v{version}: {result.mode}")
        return result.mode


@component
def materialize(config: str) -> dict:
    """Load the newest feature values into the online store for serving."""
    from esteira.config import settings_from_json
    from esteira.feast_repo import materialize as run
    from esteira.kfp_support import guarded

    with guarded("materialize"):
        return run(settings_from_json(config))
