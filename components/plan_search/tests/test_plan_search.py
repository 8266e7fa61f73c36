"""The search's plan: the space, random and grid trials, batches, config errors, float typing."""

import json

import pytest
from google.protobuf import json_format, struct_pb2

from components.plan_search.logic import describe, plan
from esteira.config import ModelSettings, settings_from_json
from esteira.errors import ConfigError
from esteira.search import coerce_trial, grid_size, plan_trials, space_for


def on(**search) -> ModelSettings:
    return ModelSettings(search={"enabled": True, **search})


def test_search_off_is_one_empty_batch():
    batches = plan(ModelSettings())
    assert batches == [{"batch": 0, "trials": []}]
    assert describe(batches, ModelSettings()).startswith("search off")


def test_random_plan_is_seeded_batched_and_inside_the_space():
    model = on(trials=12, trials_per_task=5)
    batches = plan(model)
    assert [len(b["trials"]) for b in batches] == [5, 5, 2]
    assert [t["trial"] for b in batches for t in b["trials"]] == list(range(12))
    assert plan(model) == batches  # the same settings, the same trials
    assert plan_trials(on(trials=12)) != plan_trials(
        ModelSettings(random_state=7, search={"enabled": True})
    )
    space = space_for(model)
    for b in batches:
        for t in b["trials"]:
            assert set(t["params"]) == set(space)
            for name, value in t["params"].items():
                spec = space[name]
                if spec.type == "categorical":
                    assert value in spec.choices
                else:
                    assert spec.low <= value <= spec.high
                    assert isinstance(value, int) == (spec.type == "int")


def test_grid_enumerates_every_point():
    space = {
        "gradient_boosting": {
            "max_iter": {"type": "int", "low": 10, "high": 30},
            "max_leaf_nodes": {"type": "categorical", "choices": [7, 15]},
        }
    }
    model = on(strategy="grid", trials=6, space=space, grid_points=3)
    trials = plan_trials(model)
    assert grid_size(model) == 6
    assert sorted((t.params["max_iter"], t.params["max_leaf_nodes"]) for t in trials) == [
        (i, n) for i in (10, 20, 30) for n in (7, 15)
    ]


@pytest.mark.parametrize(
    "search, field",
    [
        (
            {"space": {"gradient_boosting": {"learnin_rate": {"low": 0.1, "high": 0.2}}}},
            "model.search.space.gradient_boosting.learnin_rate",
        ),
        (
            {"space": {"gradient_boosting": {"max_iter": {"type": "int", "low": 5, "high": 2}}}},
            "max_iter: a range needs low < high",
        ),
        (
            {"space": {"gradient_boosting": {"max_iter": {"type": "categorical"}}}},
            "needs `choices`",
        ),
        (
            {"space": {"gradient_boosting": {"learning_rate": {"low": 0, "high": 1, "log": True}}}},
            "log: true needs low > 0",
        ),
        (
            {"space": {"gradient_boosting": {}}},
            "model.search.space.gradient_boosting: an empty space",
        ),
        ({"strategy": "grid"}, "model.search.trials: the grid"),
        ({"metric": "rmse"}, "model.search.metric: 'rmse' is not a classification metric"),
        ({"parallelism": 0}, "model.search.parallelism"),
    ],
)
def test_a_bad_search_is_one_line_naming_the_field_and_the_fix(search, field):
    with pytest.raises(ConfigError) as err:
        settings_from_json(json.dumps({"model": {"search": search}}))
    assert field in err.value.message and "Fix:" in err.value.message
    assert "\n" not in err.value.message


def test_ints_that_kfp_hands_back_as_floats_are_typed_by_the_space():
    model = on(trials=3)
    item = plan(model)[0]["trials"][1]
    # what dsl.Collected / a dict parameter does to it: a protobuf Struct, numbers as doubles
    struct = struct_pb2.Struct()
    struct.update(item)
    back = json_format.MessageToDict(struct)
    assert isinstance(back["trial"], float) and isinstance(back["params"]["max_iter"], float)
    trial = coerce_trial(back, space_for(model))
    assert trial.trial == item["trial"] and trial.params == item["params"]
    assert all(type(trial.params[k]) is type(v) for k, v in item["params"].items())
