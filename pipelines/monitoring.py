"""Monitoring: logged predictions -> drift + live performance -> retrain on drift or degradation.

load-predictions -> drift-check ------------\\
load-data (labels) -> live-performance -----> retrain-decision -> If(retrain): retrain
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl

from components.drift_check.component import drift_check
from components.live_performance.component import live_performance
from components.load_data.component import load_data
from components.load_predictions.component import load_predictions
from components.retrain.component import retrain
from components.retrain_decision.component import retrain_decision
from esteira.config import Settings
from pipelines.common import default_config, with_credentials

NAME = "monitoring"


def build(settings: Settings):
    """The pipeline, with the given settings as its default ``config``."""

    defaults = default_config(settings)

    @dsl.pipeline(name="esteira-monitoring", description=__doc__.splitlines()[0])
    def pipeline(
        labels_uri: str,
        config: str = defaults,
        start: str = "",
        end: str = "",
        retrain_mode: str = "auto",
    ):
        """``labels_uri``: raw data covering the predictions' horizon (its events are the
        labels). ``start``/``end``: the window of the predictions' event_timestamp.
        ``retrain_mode``: local | cluster | auto (cluster inside a pod)."""

        def step(task):
            return with_credentials(task, settings)

        logged = step(load_predictions(config=config, start=start, end=end))
        labels = step(load_data(config=config, uri=labels_uri))
        drift = step(drift_check(config=config, predictions=logged.outputs["predictions"]))
        performance = step(
            live_performance(
                config=config,
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
            step(retrain(config=config, new_data=labels.outputs["dataset"], mode=retrain_mode))

    return pipeline
