"""esteira.safe_load: real models load; crafted pickles are refused before anything runs."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from components.train.logic import build_pipeline
from esteira.config import ModelSettings
from esteira.errors import EsteiraError
from esteira.safe_load import CorruptModelError, UnsafeModelError, load_model


def _frame(rows: int = 120) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "volt_mean_24h": rng.normal(170, 15, rows),
            "vibration_mean_24h": rng.normal(40, 5, rows),
            "model": pd.array(rng.choice(["model1", "model2", "model3"], rows), dtype="string"),
            "age": rng.integers(0, 20, rows),
        }
    )
    return frame, (frame["vibration_mean_24h"] > 40).astype("int64")


@pytest.fixture(
    scope="module", params=["gradient_boosting", "random_forest", "logistic_regression"]
)
def trained(request: pytest.FixtureRequest) -> tuple[object, pd.DataFrame, bytes]:
    frame, label = _frame()
    hyper = {
        "gradient_boosting": {"max_iter": 10},
        "random_forest": {"n_estimators": 5, "n_jobs": 1},
    }
    cfg = ModelSettings(family=request.param, hyperparameters=hyper.get(request.param, {}))
    model = build_pipeline(cfg, ["volt_mean_24h", "vibration_mean_24h", "age"], ["model"])
    model.fit(frame, label)
    buf = io.BytesIO()
    joblib.dump(model, buf)
    return model, frame, buf.getvalue()


def test_real_model_loads_from_bytes_and_path(trained, tmp_path: Path) -> None:
    model, frame, data = trained
    path = tmp_path / "model.joblib"
    path.write_bytes(data)
    for source in (data, path, str(path)):
        loaded = load_model(source)
        assert type(loaded) is type(model)
        np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame))


def test_compressed_model_loads(trained) -> None:
    model, frame, _ = trained
    buf = io.BytesIO()
    joblib.dump(model, buf, compress=3)
    np.testing.assert_array_equal(load_model(buf.getvalue()).predict(frame), model.predict(frame))


class _Payload:
    """Unpickling this would run ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


def _dump(obj: object) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda m: _dump(_Payload(m)), id="os.system"),
        pytest.param(lambda m: _dump({"model": [1, _Payload(m)]}), id="nested-in-dict"),
        pytest.param(lambda m: _dump(np.array([_Payload(m)], dtype=object)), id="object-array"),
        pytest.param(lambda m: _dump(_EvalPayload(m)), id="builtins.eval"),
        pytest.param(lambda m: pickle.dumps(_Payload(m)), id="plain-pickle"),
    ],
)
def test_crafted_pickle_is_refused_and_did_not_run(build, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = build(marker)
    with pytest.raises(UnsafeModelError) as info:
        load_model(data)
    assert not marker.exists(), "the payload ran"
    message = str(info.value)
    assert message.startswith("model.joblib: refused to load")
    assert ("system" in message) or ("eval" in message)
    assert "Fix:" in message


def test_functions_inside_allowed_packages_are_refused(tmp_path: Path) -> None:
    class NumpyFunction:
        def __reduce__(self):
            return (np.load, (str(tmp_path / "x.npy"),))

    with pytest.raises(UnsafeModelError, match="numpy"):
        load_model(_dump(NumpyFunction()))


@pytest.mark.parametrize(
    ("mangle", "expected"),
    [
        (lambda d: d[: len(d) // 2], "truncated or corrupt"),
        (lambda d: d[:20], "truncated or corrupt"),
        (lambda d: b"", "empty"),
        (lambda d: b"not a pickle at all" * 5, "truncated or corrupt"),
        (lambda d: d[:100] + bytes(200) + d[300:], "truncated or corrupt"),
    ],
    ids=["half", "header-only", "empty", "garbage", "zeroed-middle"],
)
def test_corrupt_file_gives_a_clear_error(trained, mangle, expected: str) -> None:
    _, _, data = trained
    with pytest.raises(CorruptModelError) as info:
        load_model(mangle(data))
    assert expected in str(info.value)
    assert isinstance(info.value, EsteiraError)
    assert info.value.field == "model.joblib"


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CorruptModelError, match="no file at"):
        load_model(tmp_path / "absent.joblib")


DUMP_AFTER_FEAST = """
import sys
import feast  # imports dill before joblib, as the pipeline's Feast steps do
import joblib
import pandas as pd
from components.train.logic import build_pipeline
from esteira.config import ModelSettings
from esteira.safe_load import dump_model

X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "kind": ["x", "y", "x", "y"]})
model = build_pipeline(ModelSettings(family="logistic_regression"), ["a"], ["kind"]).fit(X, [0, 0, 1, 1])
joblib.dump(model, sys.argv[1])
open(sys.argv[2], "wb").write(dump_model(model))
"""


def test_models_dumped_after_feast_is_imported_still_load(tmp_path):
    """Feast imports dill, whose reducers end up in joblib's pickler; dump_model avoids them."""
    import subprocess
    import sys

    from esteira.safe_load import UnsafeModelError, dump_model

    plain, ours = tmp_path / "plain.joblib", tmp_path / "ours.joblib"
    subprocess.run(
        [sys.executable, "-c", DUMP_AFTER_FEAST, str(plain), str(ours)], check=True, timeout=120
    )
    with pytest.raises(UnsafeModelError, match="dill"):
        load_model(plain.read_bytes())  # the trap
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "kind": ["x", "y", "x", "y"]})
    assert load_model(ours.read_bytes()).predict(X).tolist() == [0, 0, 1, 1]
    model = load_model(ours.read_bytes())
    assert load_model(dump_model(model)).predict(X).tolist() == [0, 0, 1, 1]
