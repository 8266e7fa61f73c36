"""The transformer: entity keys in, online features from Feast, predictions from the predictor.

Requests
--------
The entity's join keys (one, or several for a composite key) and the request-time
values come from the use case's contract (``feature_repo/<use case>/dataset.yaml``).
V1 ``POST /v1/models/<name>:predict``::

    {"instances": [{"<key>": 7, "<request value>": 171.2, ...}]}

V2 ``POST /v2/models/<name>/infer`` (REST, and gRPC when enabled): one input per join
key (INT64 for an integer key, BYTES for a string key, shape [n]) and one FP64 input per
request-time value (BYTES, UTF-8, for a text value: the contract's ``features.text``; over
V1 a JSON string), typed or raw (binary); the V2 metadata lists them, from the
contract. Text is checked by :mod:`serving.text_input` (empty, too long, not UTF-8: 400). Answers take the request's encoding (:mod:`serving.v2_codec`).

For each request the transformer reads the feature vectors with
:class:`esteira.online.OnlineFeatures` (feature service order, as in training),
sends them to the predictor over REST with ``serving.predictor_protocol`` (v1 or v2)
on keep-alive connections (:mod:`serving.upstream`) within ``serving.timeout_seconds``, and answers
V1 ``{"<key>s", "predictions", "probabilities", "model_name", "model_version"}``
or V2 outputs ``<key>``, ``prediction``, ``probability`` (:mod:`serving.entity_keys`).
A regression (a contract whose label is a value) answers ``prediction`` as FP64 and no
probabilities.

Errors: a bad request is 400 naming the field; an unknown entity is 404 naming its
keys; the online store down is 503 (and the next request after it is back works, no
restart); the predictor unreachable is 503, timing out 504, answering garbage or an
error 502 (gRPC: NOT_FOUND, UNAVAILABLE, DEADLINE_EXCEEDED).

An online store without its materialization sentinel (Redis restarted without its
data) is empty, not a store of unknown entities: requests get 503 naming the refill
command and readiness is false until `esteira features materialize --full` ran.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import grpc
import orjson
from grpc_interceptor.exceptions import GrpcException
from kserve import Model
from kserve.errors import InvalidInput, ModelNotReady
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from esteira.config import Settings
from esteira.errors import EsteiraError, brief
from serving.entity_keys import DATATYPES, encode_parameter, key_value, plural
from serving.predictor import json_body
from serving.stock import STOCK_RUNTIME, read_stock_answer, stock_request
from serving.text_input import text_value
from serving.upstream import Upstream, UpstreamProtocolError
from serving.v2_codec import check_outputs, contract_signature, respond, tensor_values

log = logging.getLogger(__name__)


class ServingError(GrpcException):
    """An error with its HTTP status and gRPC status code, answered as ``{"error": message}``."""

    def __init__(self, http_status: int, grpc_status: grpc.StatusCode, message: str) -> None:
        super().__init__(details=message, status_code=grpc_status)
        self.http_status = http_status
        self.message = message

    def __str__(self) -> str:
        return self.message


class TransformerNotReady(ModelNotReady):
    def __init__(self, model_name: str, detail: str) -> None:
        super().__init__(model_name, detail)
        self.reason = self.error_msg


def unknown_entity(message: str) -> ServingError:
    return ServingError(404, grpc.StatusCode.NOT_FOUND, message)


def unavailable(message: str) -> ServingError:
    return ServingError(503, grpc.StatusCode.UNAVAILABLE, message)


def bad_gateway(message: str) -> ServingError:
    return ServingError(502, grpc.StatusCode.UNAVAILABLE, message)


def gateway_timeout(message: str) -> ServingError:
    return ServingError(504, grpc.StatusCode.DEADLINE_EXCEEDED, message)


# ---- request parsing -----------------------------------------------------------------
def _number(value: Any, where: str) -> float:
    if type(value) not in (int, float):
        raise InvalidInput(f"{where}: expected a number, got {type(value).__name__} {brief(value)}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite:
        raise InvalidInput(f"{where}: must be a finite number, got {str(value)[:40]}")
    return float(value)


def _check_rows(rows: int, where: str, max_batch: int) -> None:
    if rows == 0:
        raise InvalidInput(f"{where}: is empty; send at least one entity")
    if rows > max_batch:
        raise InvalidInput(
            f"{where}: {rows} entities exceed the batch limit of {max_batch} (serving.max_batch)"
        )


Columns = dict[str, list[Any]]


def _request_value(value: Any, where: str, text: bool, max_text: int) -> Any:
    """A request-time value: a number, or for a text field a checked string."""
    return text_value(value, where, max_text) if text else _number(value, where)


def parse_v1(
    body: Any,
    keys: dict[str, str],
    fields: list[str],
    max_batch: int,
    *,
    text: frozenset[str] | set[str] = frozenset(),
    max_text: int = 5000,
) -> tuple[Columns, Columns]:
    """``{"instances": [{<join keys>, <request fields>}]}`` -> (key columns, request values).

    ``keys``: each join key and its kind (``int`` or ``string``); ``text``: the request
    fields that are text (a JSON string, at most ``max_text`` characters)."""
    body = json_body(body)
    if not isinstance(body, dict):
        raise InvalidInput('body: expected a JSON object {"instances": [...]}')
    extra = [k for k in body if k != "instances"]
    if extra:
        raise InvalidInput(f"{extra[0]}: unknown top-level field; send only instances")
    wanted = [*keys, *fields]
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise InvalidInput(f"instances: missing or not a list of objects with {wanted}")
    _check_rows(len(instances), "instances", max_batch)
    ids: Columns = {k: [] for k in keys}
    values: Columns = {f: [] for f in fields}
    for i, row in enumerate(instances):
        if not isinstance(row, dict):
            raise InvalidInput(f"instances[{i}]: expected an object with {sorted(wanted)}")
        if row.keys() != set(wanted):
            missing = sorted(set(wanted) - row.keys())
            if missing:
                raise InvalidInput(f"instances[{i}]: missing {missing}")
            raise InvalidInput(
                f"instances[{i}]: unknown fields {sorted(row.keys() - set(wanted))}; "
                f"send {sorted(wanted)}"
            )
        for key, kind in keys.items():
            ids[key].append(key_value(row[key], kind, f"instances[{i}].{key}"))
        for name in fields:
            where = f"instances[{i}].{name}"
            values[name].append(_request_value(row[name], where, name in text, max_text))
    return ids, values


def parse_v2(
    request: InferRequest,
    keys: dict[str, str],
    fields: list[str],
    max_batch: int,
    *,
    text: frozenset[str] | set[str] = frozenset(),
    max_text: int = 5000,
) -> tuple[Columns, Columns]:
    """Inputs: one per join key (INT64 or BYTES) and per request field (FP64, or BYTES for
    a text field) -> (key columns, request values)."""
    inputs = {t.name: t for t in request.inputs}
    wanted = [*keys, *fields]
    unknown = sorted(set(inputs) - set(wanted))
    missing = [n for n in wanted if n not in inputs]
    if unknown or missing or len(inputs) != len(request.inputs):
        raise InvalidInput(
            f"inputs: expected exactly {wanted} (one each); missing {missing}, unknown {unknown}"
        )
    kinds = {**{n: "text" if n in text else "float" for n in fields}, **keys}
    columns = {name: _tensor_values(inputs[name], kinds[name]) for name in wanted}
    first = wanted[0]
    rows = len(columns[first])
    _check_rows(rows, f"inputs[{first!r}].shape", max_batch)
    for name in wanted[1:]:
        if len(columns[name]) != rows:
            raise InvalidInput(
                f"inputs[{name!r}].shape: {len(columns[name])} values for {rows} entities"
            )
    ids = {
        k: [key_value(v, kind, f"inputs[{k!r}].data[{i}]") for i, v in enumerate(columns[k])]
        for k, kind in keys.items()
    }
    values = {
        n: [
            _request_value(v, f"inputs[{n!r}].data[{i}]", n in text, max_text)
            for i, v in enumerate(columns[n])
        ]
        for n in fields
    }
    return ids, values


ACCEPTED = {
    "int": ("INT64", "INT32"),
    "string": ("BYTES",),
    # a number: the metadata advertises the raw column's datatype (INT64 for an int column)
    "float": ("FP64", "FP32", "INT64", "INT32"),
    "text": ("BYTES",),
}


def _tensor_values(tensor: Any, kind: str) -> list[Any]:
    name = tensor.name
    shape = list(tensor.shape or [])
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise InvalidInput(f"inputs[{name!r}].shape: {shape} is not accepted; use [n]")
    datatype = (tensor.datatype or "").upper()
    if datatype not in ACCEPTED[kind]:
        raise InvalidInput(
            f"inputs[{name!r}].datatype: {datatype} is not accepted; use {ACCEPTED[kind][0]}"
        )
    values = tensor_values(tensor, f"inputs[{name!r}]")  # typed or raw, checked
    if len(values) != shape[0] * (shape[1] if len(shape) == 2 else 1):
        raise InvalidInput(f"inputs[{name!r}].data: has {len(values)} values for shape {shape}")
    return values


# ---- predictor requests --------------------------------------------------------------
def _datatype(values: list[Any]) -> str:
    if any(isinstance(v, str) for v in values):
        return "BYTES"
    if all(type(v) is int for v in values):
        return "INT64"
    return "FP64"


def predictor_body(
    protocol: str,
    names: list[str],
    features: Columns,
    ids: Columns,
    stamp: str,
    *,
    probabilities: bool = True,
) -> dict[str, Any]:
    """The predictor request for these feature columns, with the entity's keys as parameters."""
    n = len(next(iter(ids.values())))
    params: dict[str, Any] = {"probabilities": probabilities, "event_timestamp": stamp}
    if protocol == "v1":
        rows = [[features[name][i] for name in names] for i in range(n)]
        params.update({plural(k): v for k, v in ids.items()})
        return {"instances": rows, "parameters": params}
    inputs = [
        {"name": name, "shape": [n], "datatype": _datatype(features[name]), "data": features[name]}
        for name in names
    ]
    params.update({plural(k): encode_parameter(v) for k, v in ids.items()})
    return {"inputs": inputs, "parameters": params}


def read_answer(protocol: str, body: dict[str, Any]) -> tuple[list[Any], list[Any] | None, str]:
    """(predictions, probabilities or None for a regression, model_version) from an answer."""
    if protocol == "v1":
        probabilities = body.get("probabilities")
        return body["predictions"], probabilities, str(body.get("model_version", ""))
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    probabilities = outputs.get("probability")
    return outputs["prediction"], probabilities, str(body.get("model_version") or "")


def _request_id(headers: dict[str, str] | None) -> str:
    """The client's ``x-request-id`` when it is a plain token, else a new one."""
    given = (headers or {}).get("x-request-id", "")
    if 0 < len(given) <= 128 and given.isascii() and given.isprintable():
        return given
    return uuid.uuid4().hex


# ---- the KServe model ----------------------------------------------------------------
class Transformer(Model):
    """Feast online features in front of the predictor."""

    def __init__(
        self,
        settings: Settings,
        *,
        predictor_host: str,
        name: str | None = None,
        protocol: str | None = None,
        online: Any = None,
        runtime: str | None = None,
        decision_threshold: float | None = None,
    ) -> None:
        super().__init__(name or settings.model.name)
        # the stock runtime answers probabilities only: the served version's threshold
        # (deploy passes --decision_threshold); our predictor applies its own
        self.decision_threshold = decision_threshold
        # KServe's stock sklearn server behind us: DataFrame-shaped requests (serving/stock.py)
        self.stock = (runtime or settings.kserve.runtime) == STOCK_RUNTIME
        self.settings = settings
        self.protocol = protocol or settings.serving.predictor_protocol
        host = predictor_host if "://" in predictor_host else f"http://{predictor_host}"
        self.predictor_url = host.rstrip("/")
        self.timeout = settings.serving.timeout_seconds
        self.max_batch = settings.serving.max_batch
        self.max_text = settings.serving.max_text_chars
        self.text_fields: frozenset[str] = frozenset()  # request fields that are text
        self.online = online
        self.failure: str | None = None
        self.classifier = True  # from the contract's label at load
        self.keys: dict[str, str] = {}  # join key -> int | string, from Feast at load
        self._upstream: Upstream | None = None
        if self.protocol == "v1":
            self.infer_path = f"/v1/models/{self.name}:predict"
        else:
            self.infer_path = f"/v2/models/{self.name}/infer"

    def load(self) -> bool:
        """Resolve the feature service (no online-store connection is needed yet)."""
        try:
            self.signature = self._signature()
            if (
                self.stock
                and self.classifier
                and not (self.decision_threshold is not None and 0 < self.decision_threshold < 1)
            ):
                raise EsteiraError(
                    "--decision_threshold",
                    f"behind {STOCK_RUNTIME} the transformer needs the model version's "
                    f"decision_threshold, between 0 and 1 (got {self.decision_threshold})",
                    "pass the version's metadata.decision_threshold (the deploy step does)",
                )
            if self.online is None:
                from esteira.online import OnlineFeatures

                self.online = OnlineFeatures(self.settings)
            self.names = self.online.feature_names
            self.fields = self.online.request_fields
            self.text_fields = frozenset(self.online.text_fields)
            self.keys = dict(self.online.entity_types)  # join key -> int | string
            self.ready, self.failure = True, None
        except EsteiraError as exc:
            self.ready, self.failure = False, exc.message
            log.error("transformer not ready: %s", exc.message)
        return self.ready

    async def healthy(self) -> bool:
        if not self.ready:
            raise TransformerNotReady(self.name, self.failure or "still loading")
        empty = self.online.empty_reason()  # readiness and each request: 503, not 404
        if empty:
            raise unavailable(empty)
        return True

    # ---- metadata (GET /v2/models/<name>, gRPC ModelMetadata) ----------------------------
    def _signature(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """V2 inputs and outputs from the dataset contract (join keys, request values)."""
        from esteira.contract import load_contract

        contract = load_contract(self.settings.features.repo_path)
        self.classifier = contract.task == "classification"
        return contract_signature(contract)

    def get_input_types(self) -> list[dict[str, Any]]:
        signature = getattr(self, "signature", None)
        return list(signature[0]) if signature else []

    def get_output_types(self) -> list[dict[str, Any]]:
        signature = getattr(self, "signature", None)
        return list(signature[1]) if signature else []

    @property
    def upstream(self) -> Upstream:
        """The keep-alive connections to the predictor (made in the server's loop)."""
        if self._upstream is None:
            self._upstream = Upstream(self.predictor_url, timeout=self.timeout)
        return self._upstream

    # ---- inference ---------------------------------------------------------------------
    async def predict(
        self, payload: dict | InferRequest, headers: dict[str, str] | None = None
    ) -> dict | InferResponse:
        is_v2 = isinstance(payload, InferRequest)
        text = {"text": self.text_fields, "max_text": self.max_text}
        if is_v2:
            ids, request_values = parse_v2(payload, self.keys, self.fields, self.max_batch, **text)
            check_outputs(payload, [o["name"] for o in self.get_output_types()])
        else:
            ids, request_values = parse_v1(payload, self.keys, self.fields, self.max_batch, **text)
        rows = len(next(iter(ids.values())))
        features = self._lookup(ids, request_values)
        stamp = datetime.now(UTC).isoformat()
        if self.stock:
            body = stock_request(self.protocol, self.names, features)
        else:
            body = predictor_body(
                self.protocol, self.names, features, ids, stamp, probabilities=self.classifier
            )
        request_id = _request_id(headers)
        answer = await self._call_predictor(body, request_id)
        try:
            if self.stock:
                threshold = float(self.decision_threshold or 0.5) if self.classifier else None
                predictions, probabilities, version = read_stock_answer(
                    self.protocol, answer, rows, threshold
                )
            else:
                predictions, probabilities, version = read_answer(self.protocol, answer)
            if len(predictions) != rows or (self.classifier and len(probabilities or ()) != rows):
                raise ValueError(f"expected {rows} predictions")
        except (KeyError, TypeError, ValueError) as exc:
            what = exc if isinstance(exc, ValueError) else f"no {exc}"
            raise bad_gateway(
                f"predictor at {self.predictor_url}: unexpected answer ({what})"
            ) from None
        if is_v2:  # in the request's encoding (serving/v2_codec.py)
            outputs = [
                InferOutput(k, [rows], DATATYPES[kind], data=ids[k])
                for k, kind in self.keys.items()
            ]
            if self.classifier:
                outputs.append(InferOutput("prediction", [rows], "INT64", data=predictions))
                outputs.append(InferOutput("probability", [rows], "FP64", data=probabilities))
            else:
                outputs.append(InferOutput("prediction", [rows], "FP64", data=predictions))
            return respond(
                payload,
                outputs,
                response_id=payload.id or request_id,
                model_name=self.name,
                model_version=version,
            )
        answer = {plural(k): ids[k] for k in self.keys}
        answer["predictions"] = predictions
        if self.classifier:
            answer["probabilities"] = probabilities
        return {**answer, "model_name": self.name, "model_version": version}

    def _lookup(self, ids: Columns, values: Columns) -> Columns:
        from esteira.online import (
            MissingRequestValueError,
            OnlineStoreUnavailable,
            UnknownEntityError,
        )

        try:
            return self.online.lookup(ids, values)
        except UnknownEntityError as exc:
            raise unknown_entity(exc.message) from None
        except MissingRequestValueError as exc:
            raise InvalidInput(exc.message) from None
        except OnlineStoreUnavailable as exc:
            raise unavailable(exc.message) from None

    async def _call_predictor(self, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        where = f"predictor at {self.predictor_url}"
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        try:
            status, content = await self.upstream.post(self.infer_path, orjson.dumps(body), headers)
        except TimeoutError:
            raise gateway_timeout(
                f"{where}: no answer within serving.timeout_seconds={self.timeout}"
            ) from None
        except UpstreamProtocolError as exc:
            raise bad_gateway(f"{where}: {exc}") from None
        except OSError as exc:  # refused, reset, unresolvable: ConnectionError and kin
            raise unavailable(
                f"{where}: unreachable ({type(exc).__name__}: {exc}); check that it runs "
                "and --predictor-host"
            ) from None
        if status != 200:
            raise self._predictor_error(status, content, where)
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            raise bad_gateway(f"{where}: answered with invalid JSON") from None

    @staticmethod
    def _predictor_error(status: int, content: bytes, where: str) -> ServingError:
        try:
            detail = orjson.loads(content).get("error", "")
        except (orjson.JSONDecodeError, AttributeError):
            detail = content[:200].decode("utf-8", "replace")
        message = f"{where}: answered HTTP {status}: {detail}"
        if status == 503:
            return unavailable(message)
        return bad_gateway(message)

    def stop(self) -> None:
        super().stop()
        upstream, self._upstream = self._upstream, None
        if upstream is not None:
            upstream.close()
