"""Training: raw data -> validated -> Feast features -> model -> gate -> registry -> KServe.

ingest -> validate -> compute-features -> feast-apply -> build-training-set
       -> train -> evaluate -> If(gate passed):
            register -> promote -> materialize
                                -> If(promoted): deploy
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl

from components import ops
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

        ingest = step(ops.ingest(config=config)).set_display_name("ingest")
        validate = step(ops.validate(config=config, dataset=ingest.outputs["dataset"]))
        features = step(ops.compute_features(config=config, dataset=ingest.outputs["dataset"]))
        features.after(validate)
        apply = step(ops.feast_apply(config=config)).after(features)
        training_set = step(
            ops.build_training_set(config=config, entities=features.outputs["entities"])
        ).after(apply)
        trained = step(ops.train(config=config, training_set=training_set.outputs["training_set"]))
        evaluated = step(
            ops.evaluate(
                config=config, model=trained.outputs["model"], holdout=trained.outputs["holdout"]
            )
        )
        gate = step(ops.gate(config=config, scores=evaluated.outputs["Output"]))
        # branch on single outputs: kfp.local resolves only `<task>-Output` channels in conditions
        with dsl.If(gate.output == True, name="gate-passed"):  # noqa: E712
            registered = step(
                ops.register(
                    config=config,
                    model=trained.outputs["model"],
                    training_set=training_set.outputs["training_set"],
                    metrics=evaluated.outputs["Output"],
                    data_hash=ingest.outputs["Output"],
                    definitions_hash=apply.output,
                    code_version=code_version,
                    run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                )
            )
            promoted = step(
                ops.promote(
                    config=config,
                    version=registered.outputs["version"],
                    holdout=trained.outputs["holdout"],
                )
            )
            step(ops.materialize(config=config)).after(promoted)
            with dsl.If(promoted.outputs["Output"] == True, name="promoted"):  # noqa: E712
                step(ops.deploy(config=config, version=registered.outputs["version"]))

    return pipeline
