"""The one place that picks the feature engine (``features.engine``): pandas or Spark.

Both engines compute the same tables from the same contract (esteira/features.py,
esteira/spark_features.py); the Feast sources they are published to differ only in class
(esteira/feast_definitions.py::data_source), and the training set is built by the matching
offline store (esteira/feast_store.py::repo_config).
"""

from __future__ import annotations

import pandas as pd

from esteira.config import Settings
from esteira.contract import Contract


def feature_tables(raw: pd.DataFrame, c: Contract, settings: Settings) -> dict[str, pd.DataFrame]:
    """Every source table the contract names, on the driver, by the configured engine."""
    if settings.features.engine == "spark":
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
