"""The ``live_performance`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import Artifact, Dataset, Input, Metrics, Output

from esteira.kfp_support import component


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

    from components.live_performance import logic
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded, write_json
    from esteira.parquet import read_parquet

    with guarded("live-performance"):
        settings = settings_from_json(config)
        result = logic.live_performance(
            read_parquet(predictions.path), read_parquet(labels.path), settings
        )
        for name, value in result.get("metrics", {}).items():
            if value is not None:
                metrics.log_metric(name, round(float(value), 6))
        metrics.log_metric("degraded", int(result["degraded"]))
        write_json(details.path, result)
        print(f"live performance: {result['status']}, degraded={result['degraded']}")
        out = namedtuple("LivePerformance", ["degraded", "status", "performance"])
        return out(result["degraded"], result["status"], result)
