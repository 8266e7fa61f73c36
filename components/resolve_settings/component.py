"""The ``resolve_settings`` component: a thin ``@dsl.component`` wrapper around its logic.

KFP serialises the body alone, so its imports live inside it. No
``from __future__ import annotations``: KFP reads the real annotation objects.
"""

from esteira.kfp_support import component


@component
def resolve_settings(
    defaults: str,
    config: str,
    data_source_uri: str,
    model_family: str,
    hyperparameters: dict,
    gate_metric: str,
    gate_min: float,
    min_improvement: float,
    deploy: bool,
    use_case: str,
    search: bool,
) -> str:
    """The run's settings JSON: compile-time ``defaults``, the ``config`` override, then every typed parameter changed from its default."""
    from components.resolve_settings.logic import RunParameters, describe_diff, resolve_json
    from esteira.kfp_support import guarded

    with guarded("resolve-settings"):
        parameters = RunParameters(
            data_source_uri=data_source_uri,
            model_family=model_family,
            hyperparameters=dict(hyperparameters),
            gate_metric=gate_metric,
            gate_min=gate_min,
            min_improvement=min_improvement,
            deploy=deploy,
            use_case=use_case,
            search=search,
        )
        resolved = resolve_json(defaults, config, parameters)
        print(describe_diff(defaults, resolved))
        return resolved
