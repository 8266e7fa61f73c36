"""The predictor: the registry's model behind KServe's V1 and V2 (Open Inference Protocol).

Requests
--------
V1 ``POST /v1/models/<name>:predict``::

    {"instances": [{"volt_mean_3h": 171.2, ..., "model": "model3", "age": 14}, ...],
     "parameters": {"probabilities": true, "<key>s": [7], "event_timestamp": "..."}}

An instance is an object ``{feature: value}`` with exactly the model's features, or
a list of values in the order of ``metadata.feature_names``.

V2 ``POST /v2/models/<name>/infer`` (REST and gRPC ``ModelInfer``): **one input per
feature**, named after it, shape ``[n]`` (or ``[n, 1]``), datatype from the model
metadata (``GET /v2/models/<name>``): ``FP64`` for float features (FP32 and integer
types are accepted), ``INT64`` for integer features, ``BYTES`` for the categorical
``model``. A single 2-D tensor is refused on purpose: one tensor has one datatype
and cannot carry the categorical feature next to the numeric ones. Request
parameters: ``probabilities`` (bool), ``<key>s`` for each of the entity's join keys
(:mod:`serving.entity_keys`), ``event_timestamp`` (ISO 8601). The transformer passes the
keys and the time so the prediction log knows the entity; they are never features.

Answers
-------
V1: ``{"predictions": [...], "model_name", "model_version"}`` plus ``"probabilities"``
when asked. V2: outputs ``prediction`` (INT64, the class for classification, FP64
for regression) and, when asked, ``probability`` (FP64, probability of failure);
``model_version`` is set. The class is ``probability >= metadata.decision_threshold``.
A V2 answer takes the request's encoding (:mod:`serving.v2_codec`): raw gRPC inputs get
``raw_output_contents``; over REST, ``binary_data_output`` / ``outputs[i].parameters.
binary_data`` ask for binary tensors; naming ``probability`` in ``outputs`` asks for it.

Every request is validated against the registry metadata (feature names, count,
types, finite values, shape, batch size <= ``serving.max_batch``); a violation is
``kserve.errors.InvalidInput`` (HTTP 400, gRPC INVALID_ARGUMENT) whose message
names the field. A model that cannot be loaded keeps the server unready and every
readiness/inference answer says why (HTTP 503, gRPC UNAVAILABLE).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import (
    InferOutput,
    InferRequest,
    InferResponse,
    to_http_parameters,
)

from esteira.config import Settings
from esteira.errors import EsteiraError, brief
from esteira.registry import MODEL_FILE, Registry, read_model_dir
from esteira.safe_load import load_model
from serving.entity_keys import parse_parameter, plural
from serving.fast_model import verified_array_path
from serving.feature_schema import FeatureSchema
from serving.prediction_logger import PredictionLogger, Record
from serving.text_input import text_column
from serving.v2_codec import check_outputs, requested_names, respond, tensor_values

log = logging.getLogger(__name__)

V1_KEYS = ("instances", "parameters")
PARAMETERS = ("probabilities", "event_timestamp")  # and ``<key>s`` per join key
# parameters KServe clients may add on their own; accepted and ignored
PASSTHROUGH_PARAMETERS = ("binary_data_output", "content_type", "headers")
FLOAT_TYPES = ("FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32",
               "UINT16", "UINT8")  # fmt: skip
INT_TYPES = ("INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class ModelLoadFailed(ModelNotReady):
    """The model is not ready because loading failed; carries the reason to every client."""

    def __init__(self, model_name: str, detail: str) -> None:
        super().__init__(model_name, detail)
        self.reason = self.error_msg  # read by KServe's gRPC exception interceptor


# ---- value conversion (shared by V1 and V2) ------------------------------------------
def _bad(where: str, expected: str, value: Any) -> InvalidInput:
    return InvalidInput(f"{where}: expected {expected}, got {type(value).__name__} {brief(value)}")


def _utf8(value: str, where: str) -> str:
    """``value`` if it can be encoded (JSON escapes can carry lone surrogates, which the
    prediction log could never write)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(where, "valid Unicode text (no lone surrogates)", value) from None
    return value


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def convert_column(
    values: list[Any],
    kind: str,
    where: Callable[[int], str],
    *,
    nullable: bool = False,
    max_text: int = 5000,
) -> list[Any]:
    """Values of one feature, checked and as the model takes them (str, float or int);
    InvalidInput naming ``where(row)``. Plain finite numbers take a short path. A
    ``nullable`` float feature (missing in training, handled by the model) takes null and
    NaN as a missing value. A ``text`` feature: non-blank UTF-8 of at most ``max_text``
    characters (:mod:`serving.text_input`)."""
    if kind == "text":
        return text_column(values, where, max_text)
    if nullable and kind == "float":
        values = [math.nan if v is None or (type(v) is float and v != v) else v for v in values]
        return [
            v
            if type(v) is float and (v != v or v - v == 0.0)
            else float(_number(v, kind, where(i)))
            for i, v in enumerate(values)
        ]
    if kind == "category":
        out = []
        for i, v in enumerate(values):
            if isinstance(v, bytes):
                v = v.decode("utf-8", errors="replace")
            if not isinstance(v, str):
                raise _bad(where(i), "a string (categorical feature)", v)
            out.append(_utf8(v, where(i)))
        return out
    if kind == "float":
        # x - x is 0.0 for every finite float, NaN for NaN and the infinities
        return [
            v if type(v) is float and v - v == 0.0 else float(_number(v, kind, where(i)))
            for i, v in enumerate(values)
        ]
    return [
        v if type(v) is int and INT64_MIN <= v <= INT64_MAX else int(_number(v, kind, where(i)))
        for i, v in enumerate(values)
    ]


def _number(value: Any, kind: str, where: str) -> Any:
    """``value`` if it is a finite number of the feature's kind, else InvalidInput."""
    if type(value) not in (int, float) and not isinstance(value, np.integer | np.floating):
        raise _bad(where, "a number", value)
    if not _finite(value):
        raise InvalidInput(f"{where}: must be a finite number, got {str(value)[:40]}")
    if kind == "int" and not float(value).is_integer():
        raise _bad(where, "an integer", value)
    if kind == "int" and not INT64_MIN <= value <= INT64_MAX:
        raise _bad(where, "a 64-bit integer", value)
    return value


def json_body(body: Any) -> Any:
    """A V1 body that KServe left as bytes (content-type not JSON) parsed as JSON."""
    if isinstance(body, bytes | str):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"body: is not valid JSON ({exc})") from None
    return body


# ---- parsed requests -----------------------------------------------------------------
@dataclass
class Parsed:
    """A validated request: one array per feature plus the request's context."""

    columns: dict[str, list[Any]]  # one list per feature, values checked
    rows: int
    probabilities: bool = False
    keys: dict[str, list[Any]] = field(default_factory=dict)  # join key -> one value per row
    event_timestamp: str | None = None
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)


def _check_batch(rows: int, where: str, max_batch: int) -> None:
    if rows == 0:
        raise InvalidInput(f"{where}: is empty; send at least one row")
    if rows > max_batch:
        raise InvalidInput(
            f"{where}: {rows} rows exceed the batch limit of {max_batch} (serving.max_batch); "
            "split the request"
        )


def _parse_parameters(params: Any, rows: int, where: str, keys: dict[str, str]) -> dict[str, Any]:
    if params is None:
        return {}
    named = {plural(k): k for k in keys}
    if not isinstance(params, dict):
        params = to_http_parameters(params) if hasattr(params, "items") else params
    if not isinstance(params, dict):
        raise _bad(where, "an object", params)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key in PASSTHROUGH_PARAMETERS:
            continue
        if key not in PARAMETERS and key not in named:
            allowed = ", ".join([*PARAMETERS, *named])
            raise InvalidInput(f"{where}.{key}: unknown parameter; allowed: {allowed}")
        out[key] = value
    probabilities = out.get("probabilities", False)
    if not isinstance(probabilities, bool):
        raise _bad(f"{where}.probabilities", "true or false", probabilities)
    result: dict[str, Any] = {"probabilities": probabilities}
    result["keys"] = {
        k: parse_parameter(out[name], keys[k], rows, f"{where}.{name}")
        for name, k in named.items()
        if name in out
    }
    if "event_timestamp" in out:
        result["event_timestamp"] = _timestamp(out["event_timestamp"], f"{where}.event_timestamp")
    return result


def _timestamp(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(where, "an ISO 8601 string", value)
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(where, "an ISO 8601 string", value) from None
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).isoformat()


def parse_v1(body: Any, schema: FeatureSchema, max_batch: int) -> Parsed:
    """Validate a V1 body into feature arrays (InvalidInput names the field)."""
    body = json_body(body)
    if not isinstance(body, dict):
        raise _bad("body", 'a JSON object {"instances": [...]}', body)
    unknown = [k for k in body if k not in V1_KEYS]
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown top-level field; allowed: {', '.join(V1_KEYS)}")
    if "instances" not in body:
        raise InvalidInput('instances: missing; send {"instances": [{feature: value, ...}]}')
    instances = body["instances"]
    if not isinstance(instances, list):
        raise _bad("instances", "a list of rows", instances)
    _check_batch(len(instances), "instances", max_batch)
    raw = _v1_columns(instances, schema)
    columns = {
        name: convert_column(
            raw[name],
            schema.kinds[name],
            _v1_where(name),
            nullable=name in schema.nullable,
            max_text=schema.max_text_chars,
        )
        for name in schema.names
    }
    params = _parse_parameters(body.get("parameters"), len(instances), "parameters", schema.keys)
    return Parsed(columns, len(instances), **params)


def _v1_where(name: str) -> Callable[[int], str]:
    return lambda i: f"instances[{i}].{name}"


def _v2_where(name: str) -> Callable[[int], str]:
    return lambda i: f"inputs[{name!r}].data[{i}]"


def _v1_columns(instances: list[Any], schema: FeatureSchema) -> dict[str, list[Any]]:
    names = schema.names
    if all(isinstance(row, dict) for row in instances):
        wanted = set(names)
        for i, row in enumerate(instances):
            if row.keys() != wanted:
                missing = [n for n in names if n not in row]
                extra = sorted(k for k in row if k not in wanted)
                if missing:
                    raise InvalidInput(f"instances[{i}]: missing features {missing}")
                raise InvalidInput(
                    f"instances[{i}]: unknown fields {extra}; the model's features are "
                    f"{schema.describe()}"
                )
        return {n: [row[n] for row in instances] for n in names}
    for i, row in enumerate(instances):
        if not isinstance(row, list | dict):
            raise _bad(
                f"instances[{i}]", "an object {feature: value} or a list in feature order", row
            )
        if isinstance(row, dict):
            raise InvalidInput(f"instances[{i}]: mixes objects and lists; use one form")
        if len(row) != len(names):
            raise InvalidInput(
                f"instances[{i}]: has {len(row)} values, the model takes {len(names)} "
                f"features in this order: {schema.describe()}"
            )
    return {n: [row[j] for row in instances] for j, n in enumerate(names)}


def parse_v2(request: InferRequest, schema: FeatureSchema, max_batch: int) -> Parsed:
    """Validate a V2 request (REST or gRPC) into feature arrays."""
    inputs = {}
    for j, tensor in enumerate(request.inputs):
        if tensor.name in inputs:
            raise InvalidInput(f"inputs[{j}] {tensor.name!r}: sent twice")
        inputs[tensor.name] = tensor
    unknown = [n for n in inputs if n not in schema.kinds]
    if unknown:
        hint = ""
        if len(inputs) == 1:
            hint = (
                " (a single 2-D tensor is not accepted: send one input per feature, "
                "shape [n], because the categorical feature needs BYTES)"
            )
        raise InvalidInput(
            f"inputs {unknown}: not features of the model{hint}; expected one input per "
            f"feature: {schema.describe()}"
        )
    missing = [n for n in schema.names if n not in inputs]
    if missing:
        raise InvalidInput(f"inputs: missing features {missing}; send one input per feature")
    rows: int | None = None
    columns: dict[str, list[Any]] = {}
    for name in schema.names:
        values, n = _v2_values(inputs[name], schema, name)
        if rows is None:
            rows = n
            _check_batch(n, f"inputs[{name!r}].shape", max_batch)
        elif n != rows:
            raise InvalidInput(
                f"inputs[{name!r}].shape: has {n} rows, other inputs have {rows}; "
                "every input needs the same number of rows"
            )
        columns[name] = convert_column(
            values,
            schema.kinds[name],
            _v2_where(name),
            nullable=name in schema.nullable,
            max_text=schema.max_text_chars,
        )
    params = _parse_parameters(request.parameters, rows or 0, "parameters", schema.keys)
    parsed = Parsed(columns, rows or 0, **params)
    if request.id:
        parsed.request_id = _utf8(str(request.id), "id")
    return parsed


def _v2_values(tensor: Any, schema: FeatureSchema, name: str) -> tuple[list[Any], int]:
    where = f"inputs[{name!r}]"
    kind = schema.kinds[name]
    datatype = (tensor.datatype or "").upper()
    allowed = {
        "float": FLOAT_TYPES,
        "int": INT_TYPES + ("FP64", "FP32"),
        "category": ("BYTES",),
        "text": ("BYTES",),
    }
    if datatype not in allowed[kind]:
        raise InvalidInput(
            f"{where}.datatype: {datatype or 'missing'} is not accepted for this {kind} feature; "
            f"use {schema.datatype(name)}"
        )
    shape = list(tensor.shape or [])
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or any(
        (not isinstance(d, int)) or d < 0 for d in shape
    ):
        raise InvalidInput(f"{where}.shape: {shape} is not accepted; use [n] (or [n, 1])")
    expected = shape[0] * (shape[1] if len(shape) == 2 else 1)
    if isinstance(tensor.data, list) and getattr(tensor, "_raw_data", None) is None:
        values = _flatten(tensor.data)  # JSON or gRPC contents: keep the sent types for checks
    else:  # raw (gRPC raw_input_contents, REST binary): checked against shape and datatype
        values = tensor_values(tensor, where)
    if len(values) != expected:
        raise InvalidInput(
            f"{where}.data: has {len(values)} values, shape {shape} needs {expected}"
        )
    return values, shape[0]


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in data:
        if isinstance(item, list):
            out.extend(_flatten(item))
        else:
            out.append(item)
    return out


# ---- the model -----------------------------------------------------------------------
class Scorer:
    """The loaded model and how its answers are turned into classes and probabilities."""

    def __init__(self, model: Any, schema: FeatureSchema, metadata: dict[str, Any]) -> None:
        self.model = model
        self.schema = schema
        self.task = metadata.get("task", "classification")
        self.threshold = float(metadata.get("decision_threshold", 0.5))
        if not callable(getattr(model, "predict", None)):
            raise EsteiraError(MODEL_FILE, "holds no model with a predict method", "retrain")
        if self.task == "classification":
            classes = list(getattr(model, "classes_", []))
            if len(classes) != 2 or not callable(getattr(model, "predict_proba", None)):
                raise EsteiraError(
                    MODEL_FILE,
                    f"is not a binary classifier with predict_proba (classes: {classes})",
                    "register a binary classifier for this classification model",
                )
            self.classes = np.asarray(classes)
        self.fast = verified_array_path(model, schema, self.task, self.frame)
        if self.fast is None:
            self.path = "Pipeline path"
        else:
            self.path = "array path" + (", tree walk" if self.fast.trees else "")

    def frame(self, columns: dict[str, Any]) -> pd.DataFrame:
        return pd.DataFrame(columns, columns=list(self.schema.names))

    def score(self, columns: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """(prediction, probability of the positive class or None for regression)."""
        if self.task != "classification":
            raw = (
                self.fast.predict(columns) if self.fast else self.model.predict(self.frame(columns))
            )
            return np.asarray(raw, dtype="float64"), None
        if self.fast is not None:
            proba = self.fast.predict_proba(columns)[:, 1]
        else:
            proba = self.model.predict_proba(self.frame(columns))[:, 1]
        proba = np.asarray(proba, dtype="float64")
        labels = np.where(proba >= self.threshold, self.classes[1], self.classes[0])
        return labels.astype("int64"), proba


# ---- the KServe model ----------------------------------------------------------------
class Predictor(Model):
    """The registry's model as a KServe model (V1 and V2, REST and gRPC)."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str | None = None,
        ref: int | str = "production",
        registry: Registry | None = None,
        prediction_logger: PredictionLogger | None = None,
        model_dir: str | None = None,
    ) -> None:
        super().__init__(name or settings.model.name)
        self.settings = settings
        self.ref = ref if model_dir is None else model_dir
        self.model_dir = model_dir
        self.registry = registry
        self.prediction_logger = prediction_logger
        self.max_batch = settings.serving.max_batch
        self.scorer: Scorer | None = None
        self.schema: FeatureSchema | None = None
        self.version: int | None = None
        self.failure: str | None = None

    # ---- lifecycle ---------------------------------------------------------------------
    def load(self) -> bool:
        """Load the model version from the registry; on failure stay unready with the reason."""
        try:
            self._load()
        except EsteiraError as exc:
            self._fail(exc.message)
        except Exception as exc:  # registry/storage trouble we did not anticipate
            self._fail(f"{type(exc).__name__}: {exc}")
        return self.ready

    def _load(self) -> None:
        if self.model_dir is not None:  # what KServe's storage initializer downloaded
            version = read_model_dir(self.model_dir, self.name)
            data = Path(self.model_dir, MODEL_FILE).read_bytes()
        else:
            registry = self.registry or self._open_registry()
            version = registry.get(self.ref)
            data = registry.read_file(version.version, MODEL_FILE)
        schema = FeatureSchema.from_metadata(version.metadata, self._contract_keys())
        schema = replace(schema, max_text_chars=self.settings.serving.max_text_chars)
        self.scorer = Scorer(load_model(data), schema, version.metadata)
        self.schema = schema
        self.version = version.version
        self.failure = None
        self.ready = True
        log.info(
            "loaded %s v%s (%d features, %s)",
            self.name,
            version.version,
            len(schema.names),
            self.scorer.path,
        )

    def _contract_keys(self) -> dict[str, str]:
        """The join keys of the configured contract, for versions whose metadata lacks them."""
        from esteira.contract import load_contract

        try:
            return load_contract(self.settings.features.repo_path).key_kinds
        except EsteiraError:
            return {}

    def _open_registry(self) -> Registry:
        from esteira.storage import open_storage

        return Registry(open_storage(self.settings.storage), self.settings.model.name)

    def _fail(self, reason: str) -> None:
        self.ready = False
        self.failure = f"model {self.name!r} ({self.ref}) could not be loaded: {reason}"
        log.error("%s", self.failure)

    async def healthy(self) -> bool:
        if self.ready:
            return True
        raise ModelLoadFailed(self.name, self.failure or "it is still loading")

    def stop(self) -> None:
        """Flush the prediction log on shutdown."""
        super().stop()
        if self.prediction_logger is not None:
            self.prediction_logger.close()

    # ---- metadata ----------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        schema = self.schema
        if schema is None:
            return []
        return [{"name": n, "datatype": schema.datatype(n), "shape": [-1]} for n in schema.names]

    def get_output_types(self) -> list[dict[str, Any]]:
        if self.scorer is None:
            return []
        if self.scorer.task != "classification":
            return [{"name": "prediction", "datatype": "FP64", "shape": [-1]}]
        return [
            {"name": "prediction", "datatype": "INT64", "shape": [-1]},
            {"name": "probability", "datatype": "FP64", "shape": [-1]},
        ]

    # ---- inference ---------------------------------------------------------------------
    def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        if self.scorer is None or self.schema is None:
            raise ModelLoadFailed(self.name, self.failure or "it is still loading")
        if isinstance(payload, InferRequest):
            parsed = parse_v2(payload, self.schema, self.max_batch)
            # a client that names the probability output asks for it (Triton clients do)
            parsed.probabilities |= "probability" in (requested_names(payload) or ())
            check_outputs(payload, [o["name"] for o in self.get_output_types()])
        else:
            parsed = parse_v1(payload, self.schema, self.max_batch)
        if headers and headers.get("x-request-id"):
            parsed.request_id = headers["x-request-id"]
        prediction, probability = self.scorer.score(parsed.columns)
        self._log(parsed, prediction, probability)
        if isinstance(payload, InferRequest):
            return self._v2_response(payload, parsed, prediction, probability)
        return self._v1_response(parsed, prediction, probability)

    def _v1_response(
        self, parsed: Parsed, prediction: np.ndarray, probability: np.ndarray | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "predictions": prediction.tolist(),
            "model_name": self.name,
            "model_version": str(self.version),
        }
        if parsed.probabilities and probability is not None:
            body["probabilities"] = probability.tolist()
        return body

    def _v2_response(
        self,
        request: InferRequest,
        parsed: Parsed,
        prediction: np.ndarray,
        probability: np.ndarray | None,
    ) -> InferResponse:
        n = parsed.rows
        datatype = "INT64" if prediction.dtype.kind == "i" else "FP64"
        outputs = [InferOutput("prediction", [n], datatype, data=prediction.tolist())]
        if parsed.probabilities and probability is not None:
            outputs.append(InferOutput("probability", [n], "FP64", data=probability.tolist()))
        # in the request's encoding: raw gRPC inputs get raw outputs (serving/v2_codec.py)
        return respond(
            request,
            outputs,
            response_id=parsed.request_id,
            model_name=self.name,
            model_version=str(self.version),
        )

    def _log(self, parsed: Parsed, prediction: np.ndarray, probability: np.ndarray | None) -> None:
        if self.prediction_logger is None:
            return
        columns: dict[str, Any] = dict(parsed.columns)
        columns["prediction"] = prediction
        columns["probability"] = probability if probability is not None else [None] * parsed.rows
        columns.update(parsed.keys)
        constants = {
            "request_id": parsed.request_id,
            "served_at": datetime.fromtimestamp(time.time(), UTC),
            "model_name": self.name,
            "model_version": self.version,
            "source": "online",
            "event_timestamp": parsed.event_timestamp,
        }
        self.prediction_logger.log(Record(columns, constants, parsed.rows))
