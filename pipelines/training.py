"""Training: raw data -> validated -> Feast features -> model -> gate -> registry -> KServe.

resolve-settings -> fingerprint -> ingest -> validate -> compute-features -> feast-apply -> build-training-set
       -> plan-search -> ParallelFor(batches): search-trials -> pick-best (Collected)
       -> train -> evaluate -> If(gate passed):
            register -> promote -> materialize
                                -> If(promoted): deploy
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl

from components.build_training_set.component import build_training_set
from components.compute_features.component import compute_features
from components.deploy.component import deploy as deploy_step
from components.evaluate.component import evaluate
from components.feast_apply.component import feast_apply
from components.fingerprint.component import fingerprint
from components.gate.component import gate
from components.ingest.component import ingest
from components.materialize.component import materialize
from components.pick_best.component import pick_best
from components.plan_search.component import plan_search
from components.promote.component import promote
from components.register.component import register
from components.resolve_settings.component import resolve_settings
from components.resolve_settings.logic import parameters_from
from components.search_trials.component import search_trials
from components.train.component import train
from components.validate.component import validate
from esteira.config import Settings
from pipelines.common import code_version, default_config, one_thread, with_task_settings

NAME = "training"


def build(settings: Settings):
    """The pipeline: typed run parameters whose defaults are ``settings``, and ``config``, an
    optional JSON override of any other setting (``components/resolve_settings``)."""

    defaults, version = default_config(settings), code_version()
    form = parameters_from(settings)

    @dsl.pipeline(name="esteira-training", description=__doc__.splitlines()[0])
    def pipeline(
        data_source_uri: str = form.data_source_uri,
        model_family: str = form.model_family,
        hyperparameters: dict = form.hyperparameters,
        gate_metric: str = form.gate_metric,
        gate_min: float = form.gate_min,
        min_improvement: float = form.min_improvement,
        deploy: bool = form.deploy,
        use_case: str = form.use_case,
        search: bool = form.search,
        config: str = "",
        code_version: str = version,
    ):
        """``data_source_uri``: CSV or Parquet (path, http(s)://, s3://). ``model_family``:
        gradient_boosting | random_forest | logistic_regression; ``hyperparameters`` its
        estimator's. The gate passes when ``gate_metric`` reaches ``gate_min``; a challenger
        is promoted when it beats production by ``min_improvement``; ``deploy`` the promoted
        version. ``use_case``: the registered model's name. ``search``: a hyperparameter search
        (``model.search``) on time-ordered CV folds of the training window picks the
        hyperparameters the model is fit with. ``config``: optional JSON of
        other settings, e.g. ``{"model": {"random_state": 7}}``."""

        def step(task):
            return with_task_settings(task, settings)

        resolved = step(
            resolve_settings(
                defaults=defaults,
                config=config,
                data_source_uri=data_source_uri,
                model_family=model_family,
                hyperparameters=hyperparameters,
                gate_metric=gate_metric,
                gate_min=gate_min,
                min_improvement=min_improvement,
                deploy=deploy,
                use_case=use_case,
                search=search,
            )
        )
        config = resolved.output  # the resolved settings JSON every step takes
        source = step(fingerprint(config=config))
        ingested = step(ingest(config=config, content_hash=source.output))
        validated = step(validate(config=config, dataset=ingested.outputs["dataset"]))
        features = step(compute_features(config=config, dataset=ingested.outputs["dataset"]))
        features.after(validated)
        apply = step(feast_apply(config=config)).after(features)
        training_set = step(
            build_training_set(config=config, entities=features.outputs["entities"])
        ).after(apply)
        # the search: trial batches fan out (parallelism fixed at compile time), one thread
        # per estimator; with the search off, one empty batch and pick-best passes config on
        planned = step(plan_search(config=config))
        with dsl.ParallelFor(
            planned.output, parallelism=settings.model.search.parallelism, name="search"
        ) as batch:
            trials = one_thread(
                step(search_trials(batch=batch, training_set=training_set.outputs["training_set"]))
            )
        picked = step(
            pick_best(
                config=config,
                results=dsl.Collected(trials.outputs["Output"]),
                predictions=dsl.Collected(trials.outputs["predictions"]),
            )
        )
        trained = step(
            train(
                config=picked.outputs["config"],
                training_set=training_set.outputs["training_set"],
                search_predictions=picked.outputs["winner_predictions"],
            )
        )
        evaluated = step(
            evaluate(
                config=config, model=trained.outputs["model"], holdout=trained.outputs["holdout"]
            )
        )
        passed = step(
            gate(
                config=config,
                scores=evaluated.outputs["Output"],
                holdout=trained.outputs["holdout"],
            )
        )
        # branch on single outputs: kfp.local resolves only `<task>-Output` channels in conditions
        with dsl.If(passed.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
            registered = step(
                register(
                    config=config,
                    model=trained.outputs["model"],
                    training_set=training_set.outputs["training_set"],
                    holdout=trained.outputs["holdout"],
                    verdict=passed.outputs["verdict"],
                    metrics=evaluated.outputs["Output"],
                    data_hash=ingested.outputs["Output"],
                    data_lineage=ingested.outputs["lineage"],
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
                step(deploy_step(config=config, version=registered.outputs["version"]))

    return pipeline
