"""The search in the compiled training pipeline: the ParallelFor's parallelism from config,
one thread per trial task, the `search` run parameter, and `esteira search-trial`."""

import json
from pathlib import Path

import pytest
import yaml

from components.resolve_settings.logic import RunParameters, parameters_from, resolve
from esteira.config import Settings, settings_to_json
from esteira.errors import ConfigError
from esteira_cli.compile import compile_pipeline


def _spec(settings: Settings, out: Path) -> dict:
    return next(yaml.safe_load_all(compile_pipeline("training", settings, out).read_text()))


@pytest.mark.parametrize("parallelism", [3])  # not the default (2)
def test_the_compiled_parallel_for_takes_its_parallelism_from_config(tmp_path, parallelism):
    settings = Settings.model_validate({"model": {"search": {"parallelism": parallelism}}})
    spec = _spec(settings, tmp_path)
    loops = [t for t in spec["root"]["dag"]["tasks"].values() if "parameterIterator" in t]
    assert len(loops) == 1
    loop = loops[0]
    assert loop["iteratorPolicy"]["parallelismLimit"] == parallelism
    assert loop["parameterIterator"]["items"]["inputParameter"].endswith("plan-search-Output")
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert set(body) == {"search-trials"}
    # the body takes the loop item and artifacts only (kfp.local 2.17 swaps other parameters)
    assert set(body["search-trials"]["inputs"]["parameters"]) == {"batch"}
    executor = spec["deploymentSpec"]["executors"][
        body["search-trials"]["componentRef"]["name"].replace("comp-", "exec-")
    ]
    env = {e["name"]: e["value"] for e in executor["container"].get("env", [])}
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    # pick-best gathers every iteration's scores and predictions (dsl.Collected of the loop)
    picked = spec["root"]["dag"]["tasks"]["pick-best"]["inputs"]
    loop_name = next(k for k, t in spec["root"]["dag"]["tasks"].items() if t is loop)
    assert picked["parameters"]["results"]["taskOutputParameter"] == {
        "outputParameterKey": "pipelinechannel--search-trials-Output",
        "producerTask": loop_name,
    }
    assert picked["artifacts"]["predictions"]["taskOutputArtifact"]["producerTask"] == loop_name
    train = spec["root"]["dag"]["tasks"]["train"]["inputs"]["parameters"]["config"]
    assert train["taskOutputParameter"] == {
        "outputParameterKey": "config",
        "producerTask": "pick-best",
    }
    assert spec["root"]["inputDefinitions"]["parameters"]["search"]["defaultValue"] is False


def test_the_search_parameter_turns_the_search_on_and_conflicts_are_refused():
    defaults = settings_to_json(Settings())
    form = parameters_from(Settings())
    assert form.search is False
    on = RunParameters(**{**form.__dict__, "search": True})
    assert resolve(defaults, "", on).model.search.enabled is True
    assert resolve(defaults, "", form).model.search.enabled is False
    with pytest.raises(ConfigError) as err:
        resolve(defaults, json.dumps({"model": {"search": {"enabled": False}}}), on)
    assert err.value.message.startswith("search:") and "one place" in err.value.message


def test_search_trial_prints_the_metric_katib_reads(tmp_path, monkeypatch, capsys):
    from esteira_cli.cli import main
    from testkit.search import training_frame

    frame, _, _, _ = training_frame(machines=20, days=60)
    data = tmp_path / "training_set.parquet"
    frame.to_parquet(data, index=False)
    monkeypatch.setenv("ESTEIRA_MODEL__FAMILY", "logistic_regression")
    code = main(["search-trial", "--training-set", str(data), "--param", "C=0.5"])
    # Katib's stdout collector matches `name=value` anywhere in a line: compare stripped lines
    out = [line.strip() for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert code == 0 and out[0] == 'params={"C": 0.5}'
    name, value = out[1].split("=")
    assert name == "cv_roc_auc" and 0.5 < float(value) <= 1.0
    assert main(["search-trial", "--training-set", str(data), "--param", "max_iter=5"]) == 2
    assert (
        "--param: 'max_iter=5' is not name=value of a searched parameter" in capsys.readouterr().err
    )
