"""The ``evaluate`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from esteira.kfp_support import component


@component
def evaluate(
    config: str,
    model: Input[Model],
    holdout: Input[Dataset],
    metrics: Output[Metrics],
    curves: Output[ClassificationMetrics],
    report: Output[HTML],
) -> dict:
    """Hold-out metrics for the UI (scalars, ROC curve, confusion matrix at the model's
    decision_threshold, an HTML report with the precision-recall curve and threshold table)."""
    import json
    from pathlib import Path

    from esteira.config import settings_from_json
    from esteira.contract import load_contract
    from esteira.evaluation import score
    from esteira.kfp_support import guarded
    from esteira.parquet import read_parquet
    from esteira.report import render_metrics_html
    from esteira.safe_load import load_model

    with guarded("evaluate"):
        settings = settings_from_json(config)
        info = json.loads(Path(model.path, "training.json").read_text())
        fitted = load_model(Path(model.path, "model.joblib"))
        if settings.model.task == "regression":  # esteira/forecasting.py: forecasts, baseline
            from esteira.forecasting import evaluate_forecast

            scores, html = evaluate_forecast(fitted, read_parquet(holdout.path), info, settings)
            for name, value in scores.items():
                metrics.log_metric(name, round(value, 6))
            Path(report.path).write_text(html)
            return scores
        result = score(
            fitted,
            read_parquet(holdout.path),
            info["feature_names"],
            info["label"],
            settings.model,
            info.get("decision_threshold", 0.5),
        )
        for name, value in result.metrics.items():
            metrics.log_metric(name, round(value, 6))
        if result.threshold:  # the model's threshold and what 0.5 would have cost
            view = result.threshold
            metrics.log_metric("decision_threshold", round(view["decision_threshold"], 6))
            metrics.log_metric("expected_cost_at_0.5", round(view["at_0.5"]["expected_cost"], 6))
        if result.roc:
            curves.log_roc_curve(result.roc["fpr"], result.roc["tpr"], result.roc["threshold"])
            classes = load_contract(settings.features.repo_path).label.classes
            curves.log_confusion_matrix(classes, result.confusion)
        Path(report.path).write_text(
            render_metrics_html(
                result.metrics,
                result.roc,
                result.confusion,
                "Hold-out evaluation",
                pr=result.pr,
                threshold=result.threshold,
            )
        )
        return result.metrics
