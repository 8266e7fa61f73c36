"""The transformer's side of KServe's stock sklearn runtime (``kserve.runtime: kserve-sklearnserver``).

KServe's sklearn server (``python/sklearnserver`` in KServe) loads ``model.joblib`` and
hands the request to ``model.predict_proba`` (with ``PREDICT_PROBA=true``, else
``predict``) as KServe's ``get_predict_input`` builds it. Our model is a Pipeline whose
ColumnTransformer selects columns by name, so only DataFrame-shaped requests work:

* V1: ``{"instances": [[{feature: value, ...}, ...]]}``: one instance holding the rows
  as objects (KServe makes a DataFrame of each instance; a bare object of scalars has
  no index and is refused);
* V2: one input per feature, named after it, and ``parameters.content_type: "pd"``.

It answers the probabilities of both classes, ``[n, 2]``: V1 ``{"predictions":
[[p0, p1], ...]}``, V2 one output ``output-0`` (FP64, shape ``[n, 2]``). The class is
``p1 >= threshold``, as our predictor decides it. A regression's runtime runs ``predict``
(no ``PREDICT_PROBA``) and answers one value per row. It knows nothing of entity keys,
request ids or the prediction log, and names no model version.

``tests/fixtures/kserve_sklearnserver.json`` holds requests and answers recorded from
KServe's own server (``tools/record_stock_fixtures.py``); ``tests/test_stock_runtime.py``
holds these functions to them.
"""

from __future__ import annotations

from typing import Any

STOCK_RUNTIME = "kserve-sklearnserver"
OUTPUT = "output-0"


def _datatype(values: list[Any]) -> str:
    if any(isinstance(v, str) for v in values):
        return "BYTES"
    if all(type(v) is int for v in values):
        return "INT64"
    return "FP64"


def stock_request(protocol: str, names: list[str], features: dict[str, list[Any]]) -> dict:
    """The DataFrame-shaped request for these feature columns (see the module doc)."""
    n = len(features[names[0]]) if names else 0
    if protocol == "v1":
        return {"instances": [[{name: features[name][i] for name in names} for i in range(n)]]}
    inputs = [
        {"name": name, "shape": [n], "datatype": _datatype(features[name]), "data": features[name]}
        for name in names
    ]
    return {"inputs": inputs, "parameters": {"content_type": "pd"}}


def read_stock_answer(
    protocol: str, body: dict[str, Any], rows: int, threshold: float | None
) -> tuple[list[Any], list[float] | None, str]:
    """(classes, probabilities of class 1, model version) from a stock answer, or for a
    regression (``threshold`` None: the runtime runs ``predict``) (values, None, version);
    KeyError, TypeError or ValueError when it is not one."""
    if threshold is None:
        if protocol == "v1":
            values = body["predictions"]
        else:
            values = {o["name"]: o for o in body["outputs"]}[OUTPUT]["data"]
        if len(values) != rows:
            raise ValueError(f"expected {rows} predictions")
        return [float(v) for v in values], None, str(body.get("model_version") or "")
    if protocol == "v1":
        pairs = body["predictions"]
    else:
        outputs = {o["name"]: o for o in body["outputs"]}
        output = outputs[OUTPUT]
        data, shape = output["data"], list(output["shape"])
        if shape != [rows, 2] or len(data) != rows * 2:
            raise ValueError(f"{OUTPUT} has shape {shape}, expected [{rows}, 2]")
        pairs = [data[2 * i : 2 * i + 2] for i in range(rows)]
    if len(pairs) != rows or any(len(p) != 2 for p in pairs):
        raise ValueError(f"expected {rows} pairs of class probabilities")
    probabilities = [float(p[1]) for p in pairs]
    classes = [int(p >= threshold) for p in probabilities]
    return classes, probabilities, str(body.get("model_version") or "")
