"""The ``drift_check`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from typing import NamedTuple

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from esteira.kfp_support import component


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

    from components.drift_check import logic
    from esteira.config import settings_from_json
    from esteira.kfp_support import guarded, write_json
    from esteira.parquet import read_parquet

    with guarded("drift-check"):
        settings = settings_from_json(config)
        result, html = logic.drift_check(settings, read_parquet(predictions.path))
        verdict = logic.drift_verdict(result)
        features = logic.feature_summary(result)
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
