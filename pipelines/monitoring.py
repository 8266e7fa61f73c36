"""Monitoring: logged predictions -> drift + live performance -> retrain on drift or degradation.

resolve-settings -> load-predictions -> drift-check ------------\\
                    load-data (labels) -> live-performance -----> retrain-decision
    -> If(retrain): retrain (the retraining set) -> the training pipeline, nested
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl

from components.drift_check.component import drift_check
from components.live_performance.component import live_performance
from components.load_data.component import load_data
from components.load_predictions.component import load_predictions
from components.resolve_settings.component import resolve_settings
from components.resolve_settings.logic import parameters_from
from components.retrain.component import retrain
from components.retrain_decision.component import retrain_decision
from esteira.config import Settings
from pipelines import training as training_pipeline
from pipelines.common import default_config, with_task_settings

NAME = "monitoring"


def build(settings: Settings):
    """The pipeline: typed parameters for the retraining run (defaults: ``settings``) and
    ``config``, an optional JSON override of any other setting."""

    defaults = default_config(settings)
    form = parameters_from(settings)
    training = training_pipeline.build(settings)

    @dsl.pipeline(name="esteira-monitoring", description=__doc__.splitlines()[0])
    def pipeline(
        labels_uri: str,
        start: str = "",
        end: str = "",
        model_family: str = form.model_family,
        hyperparameters: dict = form.hyperparameters,
        gate_metric: str = form.gate_metric,
        gate_min: float = form.gate_min,
        min_improvement: float = form.min_improvement,
        deploy: bool = form.deploy,
        use_case: str = form.use_case,
        config: str = "",
    ):
        """``labels_uri``: raw data covering the predictions' horizon (its events are the
        labels). ``start``/``end``: the window of the predictions' event_timestamp. The
        other parameters are the retraining run's, as in the training pipeline."""

        def step(task):
            return with_task_settings(task, settings)

        resolved = step(
            resolve_settings(
                defaults=defaults,
                config=config,
                data_source_uri=form.data_source_uri,
                model_family=model_family,
                hyperparameters=hyperparameters,
                gate_metric=gate_metric,
                gate_min=gate_min,
                min_improvement=min_improvement,
                deploy=deploy,
                use_case=use_case,
                search=form.search,
            )
        )
        settings_json = resolved.output
        logged = step(load_predictions(config=settings_json, start=start, end=end))
        labels = step(load_data(config=settings_json, uri=labels_uri))
        drift = step(drift_check(config=settings_json, predictions=logged.outputs["predictions"]))
        performance = step(
            live_performance(
                config=settings_json,
                predictions=logged.outputs["predictions"],
                labels=labels.outputs["dataset"],
            )
        )
        decision = step(
            retrain_decision(
                drift_detected=drift.outputs["drift_detected"],
                degraded=performance.outputs["degraded"],
            )
        )
        with dsl.If(decision.output == True, name="retrain-needed"):  # noqa: E712
            data = step(
                retrain(
                    config=settings_json,
                    new_data=labels.outputs["dataset"],
                    override=config,
                    drift_detected=drift.outputs["drift_detected"],
                    degraded=performance.outputs["degraded"],
                )
            )
            # judged by retrain.policy: its config carries retrain.trigger and new_labels
            training(
                data_source_uri=data.outputs["Output"],
                model_family=model_family,
                hyperparameters=hyperparameters,
                gate_metric=gate_metric,
                gate_min=gate_min,
                min_improvement=min_improvement,
                deploy=deploy,
                use_case=use_case,
                config=data.outputs["retraining_config"],
            ).set_display_name("retraining")

    return pipeline
