"""The search as a Katib Experiment: built with Katib's models from model.search, written by
`esteira manifests`, and Katib's rules fail on a broken copy."""

import copy

import pytest
import yaml

from esteira.config import Settings
from esteira.katib import build_experiment, check_experiment, check_trial_job
from esteira.search import space_for

SETTINGS = Settings.model_validate(
    {"model": {"search": {"trials": 16, "parallelism": 3}}, "kfp": {"namespace": "team-a"}}
)


@pytest.fixture(scope="module")
def experiment():
    return build_experiment(SETTINGS, "s3://esteira/search/training_set.parquet")


def test_the_experiment_holds_the_search_space_budget_and_objective(experiment):
    assert check_experiment(experiment) == [] and check_trial_job(experiment) == []
    spec = experiment["spec"]
    assert experiment["metadata"] == {
        "name": "machine-failure-search",
        "namespace": "team-a",
        "labels": {"app.kubernetes.io/part-of": "esteira"},
    }
    assert spec["objective"] == {"type": "maximize", "objectiveMetricName": "cv_roc_auc"}
    assert spec["algorithm"] == {"algorithmName": "random"}
    assert (spec["maxTrialCount"], spec["parallelTrialCount"]) == (16, 3)
    space = space_for(SETTINGS.model)
    by_name = {p["name"]: p for p in spec["parameters"]}
    assert set(by_name) == set(space)
    assert by_name["learning_rate"]["feasibleSpace"] == {
        "min": "0.03",
        "max": "0.3",
        "distribution": "logUniform",
    }
    assert by_name["max_iter"]["parameterType"] == "int"
    assert by_name["max_leaf_nodes"] == {
        "name": "max_leaf_nodes",
        "parameterType": "discrete",
        "feasibleSpace": {"list": ["15", "31", "63"]},
    }
    container = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == SETTINGS.image.reference
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in container["env"]
    assert "max_iter=${trialParameters.max_iter}" in container["args"]
    credentials = [e for e in container["env"] if e["name"].startswith("AWS_")]
    assert len(credentials) == 2 and all(set(e) == {"name", "valueFrom"} for e in credentials)


def test_a_grid_experiment_steps_every_range():
    grid = Settings.model_validate({"model": {"search": {"strategy": "grid", "trials": 81}}})
    experiment = build_experiment(grid, "s3://b/t.parquet")
    assert check_experiment(experiment) == []
    steps = [p["feasibleSpace"].get("step") for p in experiment["spec"]["parameters"]]
    assert steps == ["0.135", "80", None, "35"]


def _break(experiment, change):
    broken = copy.deepcopy(experiment)
    change(broken["spec"])
    return broken


def _drop_trial_parameter(spec):
    spec["trialTemplate"]["trialParameters"] = spec["trialTemplate"]["trialParameters"][1:]


def _unused_in_spec(spec):
    args = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]["args"]
    args[:] = [a for a in args if "max_iter" not in a]


BROKEN = {
    "no objective metric": (
        lambda s: s["objective"].pop("objectiveMetricName"),
        "spec.objective.objectiveMetricName",
    ),
    "objective type": (lambda s: s["objective"].update(type="best"), "spec.objective.type"),
    "unknown algorithm": (
        lambda s: s["algorithm"].update(algorithmName="annealing"),
        "spec.algorithm.algorithmName: 'annealing'",
    ),
    "parameter not referenced": (
        _drop_trial_parameter,
        "search parameter 'learning_rate' is not referenced",
    ),
    "template reference unused": (_unused_in_spec, "never uses ${trialParameters.max_iter}"),
    "empty range": (
        lambda s: s["parameters"][1]["feasibleSpace"].update(min="300"),
        "spec.parameters[1].feasibleSpace: min must be below max",
    ),
    "grid without step": (
        lambda s: s["algorithm"].update(algorithmName="grid"),
        "the grid algorithm needs a step",
    ),
    "more parallel than trials": (
        lambda s: s.update(parallelTrialCount=99),
        "spec.parallelTrialCount: more than spec.maxTrialCount",
    ),
    "primary container": (
        lambda s: s["trialTemplate"].update(primaryContainerName="main"),
        "primaryContainerName",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_copy_fails_katibs_rules_naming_the_field(experiment, case):
    change, expected = BROKEN[case]
    errors = check_experiment(_break(experiment, change))
    assert any(expected in e for e in errors), errors


def test_a_broken_trial_job_fails_the_kubernetes_schema(experiment):
    def typo(spec):
        spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["restartPolicyy"] = "Never"

    errors = check_trial_job(_break(experiment, typo))
    assert errors and "restartPolicyy" in errors[0]


def test_make_manifests_writes_the_checked_experiment(tmp_path, capsys):
    from esteira_cli.cli import main

    assert main(["manifests", "--out-dir", str(tmp_path)]) == 0
    written = yaml.safe_load((tmp_path / "katib-experiment.yaml").read_text())
    assert written["kind"] == "Experiment" and check_experiment(written) == []
    assert "katib: Experiment machine-failure-search" in capsys.readouterr().out
