"""The search as a Katib ``Experiment``: the same space, metric and trial budget as the
training pipeline's search (``model.search``, esteira/search.py), for a cluster with Katib.

Katib's CRD publishes no structural schema (``x-kubernetes-preserve-unknown-fields``), so
an API server accepts almost anything; the object is built with the ``kubeflow-katib``
SDK's own models and :func:`check_experiment` enforces the rules Katib's webhook would:
an objective (type and metric name), a known algorithm, a feasible space per parameter,
and every search parameter referenced by the trial template (and every template
reference naming a parameter). Each trial is a Job on the component image running
``esteira search-trial`` (one thread), which prints ``<metric>=<mean CV score>`` for
Katib's stdout metrics collector.
"""

from __future__ import annotations

import re
from typing import Any

from esteira.search import SearchParameter, direction, metric_for, space_for

API_VERSION = "kubeflow.org/v1beta1"
# Katib's suggestion services (v1beta1)
ALGORITHMS = {
    "random",
    "grid",
    "bayesianoptimization",
    "tpe",
    "multivariate-tpe",
    "cmaes",
    "sobol",
    "hyperband",
}
PARAMETER_TYPES = {"double", "int", "discrete", "categorical"}
_REFERENCE = re.compile(r"\$\{trialParameters\.([A-Za-z0-9_-]+)\}")


def objective_metric(settings: Any) -> str:
    return f"cv_{metric_for(settings.model)}"


def _parameter(name: str, spec: SearchParameter, grid_points: int, strategy: str) -> Any:
    from kubeflow.katib import V1beta1FeasibleSpace, V1beta1ParameterSpec

    if spec.type == "categorical":
        values = [str(c) for c in spec.choices or []]
        numeric = all(
            isinstance(c, int | float) and not isinstance(c, bool) for c in spec.choices or []
        )
        return V1beta1ParameterSpec(
            name=name,
            parameter_type="discrete" if numeric else "categorical",
            feasible_space=V1beta1FeasibleSpace(list=values),
        )
    low, high = spec.low, spec.high
    kind = "int" if spec.type == "int" else "double"
    fmt = (lambda v: str(int(v))) if kind == "int" else (lambda v: repr(float(v)))
    step = None
    if strategy == "grid":  # Katib's grid needs a step for every range
        step = fmt(max((high - low) / (grid_points - 1), 1 if kind == "int" else 0))  # type: ignore[operator]
    return V1beta1ParameterSpec(
        name=name,
        parameter_type=kind,
        feasible_space=V1beta1FeasibleSpace(min=fmt(low), max=fmt(high), step=step),
    )


def build_experiment(
    settings: Any, training_set_uri: str, *, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The Experiment as a plain dict (what `make manifests` writes), built from Katib's models."""
    from kubeflow.katib import (
        ApiClient,
        V1beta1AlgorithmSpec,
        V1beta1CollectorSpec,
        V1beta1Experiment,
        V1beta1ExperimentSpec,
        V1beta1MetricsCollectorSpec,
        V1beta1ObjectiveSpec,
        V1beta1TrialParameterSpec,
        V1beta1TrialTemplate,
    )
    from kubernetes.client import V1ObjectMeta

    model, search = settings.model, settings.model.search
    space = space_for(model)
    metric = objective_metric(settings)
    args = ["search-trial", "--training-set", training_set_uri]
    for p in space:
        args += ["--param", f"{p}=${{trialParameters.{p}}}"]
    container = {
        "name": "training-container",
        "image": settings.image.reference,
        "command": ["esteira"],
        "args": args,
        "env": [
            {"name": v, "value": "1"}
            for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
        ]
        + [
            {
                "name": key,
                "valueFrom": {"secretKeyRef": {"name": settings.kfp.secret_name, "key": key}},
            }
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        ],
        "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1"}},
    }
    trial_spec = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "metadata": {"annotations": {"sidecar.istio.io/inject": "false"}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            }
        },
    }
    experiment = V1beta1Experiment(
        api_version=API_VERSION,
        kind="Experiment",
        metadata=V1ObjectMeta(
            name=name or f"{model.name}-search",
            namespace=namespace or settings.kfp.namespace or settings.kserve.namespace,
            labels={"app.kubernetes.io/part-of": "esteira"},
        ),
        spec=V1beta1ExperimentSpec(
            objective=V1beta1ObjectiveSpec(
                type=direction(metric_for(model)), objective_metric_name=metric
            ),
            algorithm=V1beta1AlgorithmSpec(algorithm_name=search.strategy),
            parallel_trial_count=search.parallelism,
            max_trial_count=search.trials,
            max_failed_trial_count=max(1, search.trials // 4),
            metrics_collector_spec=V1beta1MetricsCollectorSpec(
                collector=V1beta1CollectorSpec(kind="StdOut")
            ),
            parameters=[
                _parameter(n, s, search.grid_points, search.strategy) for n, s in space.items()
            ],
            trial_template=V1beta1TrialTemplate(
                primary_container_name="training-container",
                trial_parameters=[
                    V1beta1TrialParameterSpec(
                        name=p, reference=p, description=f"{model.family} {p}"
                    )
                    for p in space
                ],
                trial_spec=trial_spec,
            ),
        ),
    )
    out = ApiClient().sanitize_for_serialization(experiment)
    # Katib >= 0.17 samples a log range with `distribution: logUniform`; the SDK that installs
    # beside kfp 2.17 (0.14) has no such field in its model, so it is set on the dict
    for p, spec in zip(out["spec"]["parameters"], space.values(), strict=True):
        if spec.log:
            p["feasibleSpace"]["distribution"] = "logUniform"
    return out


def _references(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_REFERENCE.findall(value))
    if isinstance(value, dict):
        return set().union(*(_references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value)) if value else set()
    return set()


def check_experiment(obj: dict[str, Any]) -> list[str]:
    """Katib's rules on an Experiment, one line per violation (empty: it holds)."""
    errors: list[str] = []
    if obj.get("apiVersion") != API_VERSION or obj.get("kind") != "Experiment":
        errors.append(f"apiVersion/kind: must be {API_VERSION} Experiment")
    spec = obj.get("spec") or {}
    objective = spec.get("objective") or {}
    if objective.get("type") not in ("maximize", "minimize"):
        errors.append("spec.objective.type: must be maximize or minimize")
    if not objective.get("objectiveMetricName"):
        errors.append("spec.objective.objectiveMetricName: required (the metric trials print)")
    algorithm = (spec.get("algorithm") or {}).get("algorithmName")
    if algorithm not in ALGORITHMS:
        errors.append(
            f"spec.algorithm.algorithmName: {algorithm!r} is not one of {sorted(ALGORITHMS)}"
        )
    for key in ("maxTrialCount", "parallelTrialCount"):
        if not isinstance(spec.get(key), int) or spec[key] < 1:
            errors.append(f"spec.{key}: a positive integer")
    counts = (spec.get("maxTrialCount"), spec.get("parallelTrialCount"))
    if all(isinstance(c, int) for c in counts) and counts[1] > counts[0]:
        errors.append("spec.parallelTrialCount: more than spec.maxTrialCount")
    parameters = spec.get("parameters") or []
    if not parameters:
        errors.append("spec.parameters: at least one search parameter")
    names = []
    for i, p in enumerate(parameters):
        where = f"spec.parameters[{i}]"
        names.append(p.get("name"))
        kind, space = p.get("parameterType"), p.get("feasibleSpace") or {}
        if kind not in PARAMETER_TYPES:
            errors.append(
                f"{where}.parameterType: {kind!r} is not one of {sorted(PARAMETER_TYPES)}"
            )
        elif kind in ("int", "double"):
            try:
                if not float(space["min"]) < float(space["max"]):
                    errors.append(f"{where}.feasibleSpace: min must be below max")
            except (KeyError, TypeError, ValueError):
                errors.append(f"{where}.feasibleSpace: min and max are required numbers")
            if algorithm == "grid" and not space.get("step"):
                errors.append(f"{where}.feasibleSpace.step: the grid algorithm needs a step")
        elif not space.get("list"):
            errors.append(f"{where}.feasibleSpace.list: a non-empty list of values")
    template = spec.get("trialTemplate") or {}
    trial_parameters = template.get("trialParameters") or []
    referenced = {t.get("reference") for t in trial_parameters}
    for name in names:
        if name not in referenced:
            errors.append(
                f"spec.trialTemplate.trialParameters: search parameter {name!r} is not referenced"
            )
    declared = {t.get("name") for t in trial_parameters}
    for t in trial_parameters:
        if t.get("reference") not in names:
            errors.append(
                f"spec.trialTemplate.trialParameters[{t.get('name')}]: references "
                f"{t.get('reference')!r}, not a search parameter"
            )
    used = _references(template.get("trialSpec"))
    for name in sorted(declared - used):
        errors.append(f"spec.trialTemplate.trialSpec: never uses ${{trialParameters.{name}}}")
    for name in sorted(used - declared):
        errors.append(f"spec.trialTemplate.trialSpec: ${{trialParameters.{name}}} is not declared")
    containers = (
        ((template.get("trialSpec") or {}).get("spec") or {}).get("template", {}).get("spec", {})
    ).get("containers") or []
    if template.get("primaryContainerName") not in {c.get("name") for c in containers}:
        errors.append(
            "spec.trialTemplate.primaryContainerName: names no container of the trialSpec"
        )
    return errors


def check_trial_job(obj: dict[str, Any]) -> list[str]:
    """The trial template's Job against Kubernetes' own schema (strict, as `make manifests`
    checks every core object)."""
    from esteira.manifests import validate_object

    template = (obj.get("spec") or {}).get("trialTemplate") or {}
    job = dict(template.get("trialSpec") or {})
    job["metadata"] = {"name": "trial", "namespace": (obj.get("metadata") or {}).get("namespace")}
    return [f"spec.trialTemplate.trialSpec: {e}" for e in validate_object(job)]
