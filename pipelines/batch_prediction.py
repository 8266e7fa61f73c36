"""Batch prediction: new raw data -> validated -> Feast features -> production model -> Parquet + log.

load-data -> validate -> batch-features (publish the new feature rows, apply,
point-in-time retrieval for the entity rows) -> batch-predict (chunked scoring,
``batch_predictions/<model>/<run>.parquet``, prediction log with source=batch)
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl

from components.batch_features.component import batch_features
from components.batch_predict.component import batch_predict
from components.batch_predict.defaults import DEFAULT_CHUNK_ROWS
from components.load_data.component import load_data
from components.resolve_settings.component import resolve_settings
from components.resolve_settings.logic import parameters_from
from components.validate.component import validate
from esteira.config import Settings
from pipelines.common import default_config, with_task_settings

NAME = "batch_prediction"


def build(settings: Settings):
    """The pipeline: ``use_case`` (default: ``settings``) and ``config``, an optional JSON
    override of any other setting."""

    defaults = default_config(settings)
    form = parameters_from(settings)

    @dsl.pipeline(name="esteira-batch-prediction", description=__doc__.splitlines()[0])
    def pipeline(
        data_uri: str,
        use_case: str = form.use_case,
        config: str = "",
        entities_uri: str = "",
        history_uri: str = "",
        every_hours: int = 0,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ):
        """``data_uri``: the new raw data. ``entities_uri``: optional file of entity rows
        (default: one row per machine every ``every_hours``, 0 = features.sample_every_hours).
        ``history_uri``: raw data before it for the windows' warm-up (default: the data the
        production model was trained on). ``use_case``: the registered model to predict with."""

        def step(task):
            return with_task_settings(task, settings)

        resolved = step(
            resolve_settings(
                defaults=defaults,
                config=config,
                data_source_uri=form.data_source_uri,
                model_family=form.model_family,
                hyperparameters=form.hyperparameters,
                gate_metric=form.gate_metric,
                gate_min=form.gate_min,
                min_improvement=form.min_improvement,
                deploy=form.deploy,
                use_case=use_case,
                search=form.search,
            )
        )
        config = resolved.output  # the resolved settings JSON every step takes

        load = step(load_data(config=config, uri=data_uri))
        checked = step(validate(config=config, dataset=load.outputs["dataset"]))
        features = step(
            batch_features(
                config=config,
                data=load.outputs["dataset"],
                entities_uri=entities_uri,
                history_uri=history_uri,
                every_hours=every_hours,
            )
        ).after(checked)
        step(
            batch_predict(
                config=config, features=features.outputs["features"], chunk_rows=chunk_rows
            )
        )

    return pipeline
