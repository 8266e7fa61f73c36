"""The one place that picks the feature engine (``features.engine``): pandas or Spark.

Both engines compute the same tables from the same contract (esteira/features.py,
esteira/spark_features.py); the Feast sources they are published to differ only in class
(esteira/feast_definitions.py::data_source), and the training set is built by the matching
offline store (esteira/feast_store.py::repo_config).

The KFP steps call :func:`compute_features_step` and :func:`training_set_step`: with
``features.spark.run_in: spark_application`` each submits its work as a SparkApplication and
waits for it (esteira/spark_submit.py::run_step), else it runs here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from esteira.config import Settings
from esteira.contract import Contract

if TYPE_CHECKING:
    from esteira.feast_repo import TrainingSet


def feature_tables(raw: pd.DataFrame, c: Contract, settings: Settings) -> dict[str, pd.DataFrame]:
    """Every source table the contract names, on the driver, by the configured engine.

    Used by batch prediction's incremental publish (new data and a warm-up: small). With
    ``features.spark.run_in: spark_application`` it stays in the task on the pandas code,
    whose tables equal Spark's bit for bit (tests/test_spark_engine.py): the component
    image carries no Spark.
    """
    if settings.features.engine == "spark" and settings.features.spark.run_in == "task":
        from esteira import spark_features

        session = spark_features.spark_session(settings.features.spark)
        tables = spark_features.compute_feature_tables(raw, c, session)
        return spark_features.to_pandas(tables, c)
    from esteira.features import compute_feature_tables

    return compute_feature_tables(raw, c)


def publish_feature_tables(raw: pd.DataFrame, c: Contract, settings: Settings) -> dict[str, str]:
    """Compute the tables and write them where the Feast sources read them; table -> uri.

    With Spark the tables never come to the driver: Spark writes each file.
    """
    if settings.features.engine == "spark":
        from esteira import spark_features
        from esteira.feast_store import source_uri

        session = spark_features.spark_session(settings.features.spark)
        tables = spark_features.compute_feature_tables(raw, c, session)
        uris = {table: source_uri(settings, table) for table in tables}
        return spark_features.publish_tables(tables, uris, settings, c)
    from esteira.feast_repo import publish_sources
    from esteira.features import compute_feature_tables

    return publish_sources(compute_feature_tables(raw, c), settings)


def compute_and_publish(
    dataset_path: str, c: Contract, settings: Settings
) -> tuple[dict[str, str], pd.DataFrame]:
    """The compute-features step: every source table published (table -> uri) and the
    labelled entity rows. pandas works block by block of whole entities
    (:func:`esteira.feast_repo.compute_and_publish`); Spark writes the tables itself."""
    if settings.features.engine == "spark":
        from esteira.features import label_frame
        from esteira.parquet import read_parquet

        raw = read_parquet(dataset_path)
        published = publish_feature_tables(raw, c, settings)
        return published, label_frame(raw, c, settings.features.sample_every_hours)
    from esteira import feast_repo

    return feast_repo.compute_and_publish(dataset_path, c, settings)


def compute_features_step(
    dataset_path: str,
    c: Contract,
    settings: Settings,
    entities_path: str,
    run_id: str,
    api: Any = None,
) -> tuple[dict[str, str], pd.DataFrame]:
    """compute-features: publish every source table, write the labelled entity rows at
    ``entities_path``; returns (table -> uri, the rows). ``run_id``: fixed per run and task
    (the output artifact's URI), it names the SparkApplication; ``api``: kubernetes'
    CustomObjectsApi (default: the in-cluster one)."""
    from esteira import spark_submit

    if spark_submit.runs_as_application(settings):
        from esteira.parquet import read_parquet

        summary = spark_submit.run_step(
            settings, "features", dataset_path, entities_path, run_id, api
        )
        return summary["published"], read_parquet(entities_path)
    published, rows = compute_and_publish(dataset_path, c, settings)
    rows.to_parquet(entities_path, index=False)
    return published, rows


def training_set_step(
    rows: pd.DataFrame, settings: Settings, out_path: str, run_id: str, api: Any = None
) -> TrainingSet:
    """build-training-set and batch prediction's retrieval: point-in-time features for
    ``rows`` through the feature service, written at ``out_path``."""
    from esteira import spark_submit
    from esteira.feast_repo import TrainingSet, build_training_set

    if spark_submit.runs_as_application(settings):
        from esteira.parquet import read_parquet

        with tempfile.TemporaryDirectory(prefix="esteira-rows-") as tmp:
            staged = str(Path(tmp) / "rows.parquet")
            rows.to_parquet(staged, index=False)
            s = spark_submit.run_step(settings, "training-set", staged, out_path, run_id, api)
        return TrainingSet(
            frame=read_parquet(out_path),
            feature_names=s["feature_names"],
            requested_rows=s["requested_rows"],
            dropped_by_ttl=s["dropped_by_ttl"],
            dropped_share=s["dropped_share"],
            feature_service=s["feature_service"],
            seconds=s["seconds"],
        )
    result = build_training_set(rows, settings)
    result.frame.to_parquet(out_path, index=False)
    return result
