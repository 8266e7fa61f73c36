"""The ``batch_predict`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Output

from esteira.kfp_support import component


@component
def batch_predict(
    config: str, features: Input[Dataset], chunk_rows: int, predictions: Output[Dataset]
) -> NamedTuple("BatchPredictions", rows=int, model_version=int, uri=str, run_id=str):
    """Score with the production model in chunks; write Parquet on the storage and log the rows."""
    from collections import namedtuple

    from components.batch_predict.defaults import DEFAULT_CHUNK_ROWS
    from components.batch_predict.logic import score_and_write
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded
    from esteira.parquet import read_parquet

    with guarded("batch-predict"):
        settings = settings_from_json(config)
        result = score_and_write(
            settings, read_parquet(features.path), chunk_rows=chunk_rows or DEFAULT_CHUNK_ROWS
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
