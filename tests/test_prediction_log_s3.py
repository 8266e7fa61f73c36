"""The prediction log on a cluster's storage: the predictor writes batched Parquet under
the S3 prefix (the loopback S3 server), flushes it on shutdown, and the monitoring
pipeline's drift step reads what landed."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml

from esteira.net import free_port
from testkit.serving import ServerProcess

MODEL = "machine-failure"
PREFIX = "team-a/esteira"
ROWS = 40  # requests sent, one row each


def _register(settings) -> list[str]:
    """A small model of the training kind, registered as production on S3 with its drift
    reference; returns its feature names."""
    from components.train.logic import build_pipeline
    from esteira.drift import summarize_reference
    from esteira.registry import MODEL_FILE, Registry
    from esteira.safe_load import dump_model
    from esteira.storage import open_storage

    rng = np.random.default_rng(3)
    n = 300
    frame = pd.DataFrame(
        {
            "volt_mean_3h": rng.normal(170, 10, n),
            "vibration_mean_3h": rng.normal(40, 5, n),
            "age": rng.integers(0, 20, n),
            "model": rng.choice(["model1", "model2", "model3"], n),
        }
    )
    label = (frame["vibration_mean_3h"] + rng.normal(0, 3, n) > 42).astype("int64")
    features = list(frame.columns)
    model = build_pipeline(settings.model, features[:3], ["model"]).fit(frame, label)
    metadata = {
        "feature_names": features,
        "categorical_features": ["model"],
        "feature_types": {c: str(frame[c].dtype) for c in features},
        "task": "classification",
        "decision_threshold": 0.5,
        "classes": [0, 1],
        "library_versions": {"scikit-learn": __import__("sklearn").__version__},
    }
    reference = summarize_reference(frame, features)
    registry = Registry(open_storage(settings.storage), MODEL)
    version = registry.register(
        {MODEL_FILE: dump_model(model), "reference.json": json.dumps(reference).encode()},
        metadata,
    )
    registry.set_alias("production", version.version)
    return features


def test_predictions_land_on_s3_and_the_drift_step_reads_them(tmp_path: Path, s3_settings) -> None:
    from components.drift_check.logic import drift_check
    from components.load_predictions.logic import logged_predictions
    from esteira.config import Settings
    from esteira.storage import open_storage

    storage = s3_settings.model_copy(update={"prefix": PREFIX})
    # a batch is written every 1000 rows or 10 minutes: these rows reach S3 only at shutdown
    settings = Settings(
        storage=storage,
        model={"name": MODEL, "hyperparameters": {"max_iter": 20}},
        serving={"log_flush_rows": 1000, "log_flush_seconds": 600},
    )
    features = _register(settings)
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump(settings.model_dump(mode="json", exclude_none=True)))
    port = free_port()
    server = ServerProcess(
        "predictor",
        ["--config", str(config), "--http-port", str(port), "--grpc-port", "0"],
        tmp_path / "predictor.log",
    ).start()
    store = open_storage(settings.storage)
    try:
        url = f"http://127.0.0.1:{port}"
        server.wait_http(f"{url}/v2/health/ready", timeout=400)
        rng = np.random.default_rng(5)
        with httpx.Client(timeout=30) as client:
            for i in range(ROWS):
                row = {
                    "volt_mean_3h": float(rng.normal(170, 10)),
                    "vibration_mean_3h": float(rng.normal(40, 5)),
                    "age": int(rng.integers(0, 20)),
                    "model": "model2",
                }
                body = {
                    "instances": [row],
                    "parameters": {
                        "machine_ids": [i],
                        "event_timestamp": f"2026-11-29T{i % 24:02d}:00:00+00:00",
                    },
                }
                answer = client.post(f"{url}/v1/models/{MODEL}:predict", json=body)
                assert answer.status_code == 200, answer.text
        assert not store.list("predictions")  # still batched in memory: no write per request
    finally:
        assert server.stop() == 0  # SIGTERM: a clean stop flushes the batch

    # the Parquet landed under the prefix, in the local layout
    import boto3

    s3 = boto3.client("s3", endpoint_url=f"http://{storage.endpoint}", region_name="us-east-1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=storage.bucket)["Contents"]]
    logged = [k for k in keys if k.startswith(f"{PREFIX}/predictions/{MODEL}/date=")]
    assert logged and all(k.endswith(".parquet") for k in logged), keys

    # the monitoring pipeline's steps read it from there
    frame = logged_predictions(settings, source="online")
    assert len(frame) == ROWS
    assert sorted(frame["machine_id"].tolist()) == list(range(ROWS))
    report, _ = drift_check(settings, frame)
    assert {f.feature for f in report.features} == set(features)
    assert report.current_rows == ROWS
