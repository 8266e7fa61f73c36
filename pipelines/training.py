"""Training: raw data -> validated -> Feast features -> model -> gate -> registry -> KServe.

ingest -> validate -> compute-features -> feast-apply -> build-training-set
       -> train -> evaluate -> If(gate passed):
            register -> promote -> materialize
                                -> If(promoted): deploy
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl

from components.build_training_set.component import build_training_set
from components.compute_features.component import compute_features
from components.deploy.component import deploy
from components.evaluate.component import evaluate
from components.feast_apply.component import feast_apply
from components.gate.component import gate
from components.ingest.component import ingest
from components.materialize.component import materialize
from components.promote.component import promote
from components.register.component import register
from components.train.component import train
from components.validate.component import validate
from esteira.config import Settings
from pipelines.common import code_version, default_config, with_credentials

NAME = "training"


def build(settings: Settings):
    """The pipeline, with the given settings as its default ``config``."""

    defaults, version = default_config(settings), code_version()

    @dsl.pipeline(name="esteira-training", description=__doc__.splitlines()[0])
    def pipeline(config: str = defaults, code_version: str = version):
        def step(task):
            return with_credentials(task, settings)

        ingested = step(ingest(config=config)).set_display_name("ingest")
        validated = step(validate(config=config, dataset=ingested.outputs["dataset"]))
        features = step(compute_features(config=config, dataset=ingested.outputs["dataset"]))
        features.after(validated)
        apply = step(feast_apply(config=config)).after(features)
        training_set = step(
            build_training_set(config=config, entities=features.outputs["entities"])
        ).after(apply)
        trained = step(train(config=config, training_set=training_set.outputs["training_set"]))
        evaluated = step(
            evaluate(
                config=config, model=trained.outputs["model"], holdout=trained.outputs["holdout"]
            )
        )
        passed = step(gate(config=config, scores=evaluated.outputs["Output"]))
        # branch on single outputs: kfp.local resolves only `<task>-Output` channels in conditions
        with dsl.If(passed.output == True, name="gate-passed"):  # noqa: E712
            registered = step(
                register(
                    config=config,
                    model=trained.outputs["model"],
                    training_set=training_set.outputs["training_set"],
                    metrics=evaluated.outputs["Output"],
                    data_hash=ingested.outputs["Output"],
                    definitions_hash=apply.output,
                    code_version=code_version,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                )
            )
            promoted = step(
                promote(
                    config=config,
                    version=registered.outputs["version"],
                    holdout=trained.outputs["holdout"],
                )
            )
            step(materialize(config=config)).after(promoted)
            with dsl.If(promoted.outputs["Output"] == True, name="promoted"):  # noqa: E712
                step(deploy(config=config, version=registered.outputs["version"]))

    return pipeline
