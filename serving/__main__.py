"""``python -m serving predictor|transformer``: one KServe ModelServer process.

Examples::

    python -m serving predictor --http-port 8085 --grpc-port 8086
    python -m serving transformer --http-port 8080 --grpc-port 8081 --predictor-host 127.0.0.1:8085

Both serve ``settings.model.name`` with ``kserve.ModelServer(workers=1)`` (it binds
0.0.0.0). On top of KServe's own handling, every client mistake is a 4xx with a
message: FastAPI's request validation errors become 400 (KServe leaves them 422 with
pydantic's wording), bodies over ``--max-body-bytes`` are 413, transformer errors
keep their status (404 unknown machine, 502/503/504 upstream). The server's
readiness (``/v2/health/ready``, gRPC ``ServerReady``) follows the model's: a model
that failed to load keeps it 503/UNAVAILABLE with the reason.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys

# One thread per process for numpy/OpenMP: single-row requests on 2 cores are much
# faster without a thread pool's wake-ups. Must be set before numpy is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

# One process serves (workers=1), so Prometheus metrics live in memory. Feast switches
# prometheus_client to multiprocess mode (mmap files in a temporary directory, a pid
# check on every increment) when it is imported first, and a parent process that
# imported it exports the switch: drop it, then let prometheus_client choose.
for _switch in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
    os.environ.pop(_switch, None)
from typing import Any  # noqa: E402

import prometheus_client.values  # noqa: E402, F401

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
# FastAPI's answer when its JSON parser raised (a document nested past Python's recursion limit)
FASTAPI_BODY_ERROR = "There was an error parsing the body"
UNPARSABLE_BODY = (
    "body: could not be parsed as JSON (not JSON, or nested too deep for the parser); "
    'send a JSON object such as {"inputs": [{"name", "shape", "datatype", "data"}, ...]}'
)
ERRORS_LOG = logging.getLogger("serving.errors")  # one line per error answer
SWITCH_INTERVAL_SECONDS = 0.0005
# The config file when --config is absent: `esteira serve` starts the servers with the
# manifests' command lines, which carry no --config (on a cluster, ESTEIRA_* come from a ConfigMap)
CONFIG_FILE_ENV = "ESTEIRA_CONFIG_FILE"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["predictor", "transformer"])
    parser.add_argument("--config", help="esteira YAML config (env ESTEIRA_* overrides it)")
    # Each option also answers to KServe's spelling (--model_name, --predictor_host, ...):
    # KServe passes those to a transformer container in an InferenceService.
    parser.add_argument(
        "--model-name", "--model_name", help="served model name (default: model.name)"
    )
    parser.add_argument("--version", default="production", help="predictor: version or alias")
    parser.add_argument(
        "--model-dir",
        "--model_dir",
        help="predictor: load model.joblib and metadata.json from this directory (what "
        "KServe's storage initializer downloads to /mnt/models) instead of the registry",
    )
    parser.add_argument(
        "--http-port", "--http_port", type=int, help="REST port (default: serving.*_port)"
    )
    parser.add_argument(
        "--grpc-port",
        "--grpc_port",
        type=int,
        help="gRPC port; 0 disables (default: serving.grpc_port for the predictor, "
        "REST port + 1 for the transformer)",
    )
    parser.add_argument(
        "--predictor-host",
        "--predictor_host",
        default=None,
        help="transformer: host:port of the predictor (default: 127.0.0.1:serving.predictor_port)",
    )
    parser.add_argument(
        "--protocol",
        "--predictor_protocol",
        choices=["v1", "v2"],
        help="transformer -> predictor REST protocol (default: serving.predictor_protocol)",
    )
    parser.add_argument(
        "--decision-threshold",
        "--decision_threshold",
        type=float,
        help="transformer with kserve.runtime kserve-sklearnserver (which answers only "
        "probabilities): the served version's decision_threshold; the deploy step sets it",
    )
    parser.add_argument(
        "--workers",
        type=int,
        choices=[1],
        default=1,
        help="KServe appends it when containerConcurrency is set; one process serves",
    )
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="log every request with KServe's timings (slower: V1 goes through FastAPI too)",
    )
    parser.add_argument(
        "--no-fast-lane",
        action="store_true",
        help="route V1 predictions through FastAPI too (serving/fast_lane.py; for comparison)",
    )
    return parser


# ---- app hardening -------------------------------------------------------------------
class BodyLimit:
    """ASGI middleware: 413 for bodies over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.exceptions import HTTPException

        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, self._message(int(declared)))
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, self._message(seen))
            return message

        await self.app(scope, limited, send)

    def _message(self, size: int) -> str:
        return (
            f"body: {size} bytes exceed the limit of {self.max_bytes} bytes (--max-body-bytes); "
            "send fewer rows per request"
        )


async def _send_json(send: Any, status: int, message: str) -> None:
    import orjson

    body = orjson.dumps({"error": message})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _location(loc: tuple) -> str:
    parts = [p for p in loc if p not in ("body", "InferenceRequest")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "body"


def serving_app(max_body_bytes: int, dataplane: Any = None, role: str = "model") -> Any:
    """The ASGI app to serve: KServe's FastAPI app with our error handlers, wrapped
    (outer to inner) in request metrics, the body limit and, given a dataplane, the V1
    fast lane.

    The wrappers sit around the FastAPI app rather than inside its middleware stack,
    so a V1 prediction never enters FastAPI; everything else goes through it as before.
    """
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve.model_server import app
    from starlette.exceptions import HTTPException

    from serving.guard import UnservedRoutes
    from serving.metrics import RequestMetrics
    from serving.transformer import ServingError

    async def validation_error(_: Any, exc: RequestValidationError) -> JSONResponse:
        problems = []
        errors = [e for e in exc.errors() if tuple(e.get("loc", ()))[-1:] != ("bytes",)]
        for err in (errors or exc.errors())[:5]:
            msg = err.get("msg", "invalid")
            if err.get("type") == "json_invalid":
                msg = f"is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
            problems.append(f"{_location(tuple(err.get('loc', ())))}: {msg}")
        return JSONResponse(status_code=400, content={"error": "; ".join(problems)})

    async def serving_error(request: Any, exc: ServingError) -> JSONResponse:
        # an unknown machine is the client's; the predictor or the store failing is ours
        level = logging.WARNING if exc.http_status >= 500 else logging.INFO
        ERRORS_LOG.log(
            level, "%d %s %s: %s", exc.http_status, request.method, request.url.path, exc.message
        )
        return JSONResponse(status_code=exc.http_status, content={"error": exc.message})

    async def http_error(_: Any, exc: HTTPException) -> JSONResponse:
        detail = str(exc.detail)
        if exc.status_code == 400 and detail == FASTAPI_BODY_ERROR:  # says neither what nor why
            detail = UNPARSABLE_BODY
        return JSONResponse(status_code=exc.status_code, content={"error": detail})

    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ServingError, serving_error)
    app.add_exception_handler(HTTPException, http_error)
    served: Any = app
    if dataplane is not None:
        from serving.fast_lane import FastLane

        served = FastLane(app, dataplane, handlers=lambda: app.exception_handlers)
    served = BodyLimit(UnservedRoutes(served), max_body_bytes)
    return RequestMetrics(served, role=role)  # outermost: counts 413s too


def rest_server_class(access_log: bool, asgi_app: Any = None) -> type:
    """KServe's REST server serving ``asgi_app`` (see :func:`serving_app`), without
    KServe's trace-timing middleware unless access logs are on.

    That middleware only writes to the ``kserve.trace`` log, and names each request
    by matching it against every route again; :mod:`serving.metrics` counts and
    times requests instead.
    """
    from kserve.protocol.rest.server import RESTServer

    class ServingRESTServer(RESTServer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if asgi_app is not None:
                self.config.app = asgi_app  # what uvicorn serves; KServe sets up the app inside

        def _add_middlewares(self, app: Any) -> None:
            if access_log:
                super()._add_middlewares(app)

        def _add_exception_handlers(self, app: Any) -> None:
            super()._add_exception_handlers(app)
            for kind, status in client_errors().items():
                app.add_exception_handler(kind, client_error_handler(status))

    return ServingRESTServer


def client_errors() -> dict[type, int]:
    """The client's mistakes KServe answers, with their status."""
    from kserve.errors import InvalidInput, ModelNotFound

    return {InvalidInput: 400, ModelNotFound: 404}


def client_error_handler(status: int) -> Any:
    """KServe's answer to a client's mistake (``{"error": message}``), logged in one line.

    KServe logs each one at ERROR with its traceback, thirty lines for a typo; under
    bad traffic that buries the server's real errors. The metrics count them as
    ``esteira_request_errors_total{kind="client"}``.
    """
    from fastapi.responses import JSONResponse

    async def handle(request: Any, exc: Exception) -> Any:
        # a message may quote the client's text: lone surrogates become escapes, never a 500
        message = str(exc).encode("utf-8", "backslashreplace").decode("utf-8")
        ERRORS_LOG.info("%d %s %s: %s", status, request.method, request.url.path, message[:300])
        return JSONResponse(status_code=status, content={"error": message})

    return handle


def _inference_request(body: bytes) -> Any:
    """A V2 InferenceRequest from JSON bytes, or InvalidInput naming what is wrong."""
    import orjson
    from kserve.errors import InvalidInput

    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: is not valid JSON ({exc})") from None
    return _validated(data)


def _validated(data: Any) -> Any:
    """``data`` as a V2 InferenceRequest, or InvalidInput naming the first problem."""
    from kserve.errors import InvalidInput
    from kserve.protocol.rest.v2_datamodels import InferenceRequest
    from pydantic import ValidationError

    try:
        return InferenceRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _location(tuple(first.get("loc", ()))) if first.get("loc") else "body"
        raise InvalidInput(
            f"{where}: {first.get('msg', 'invalid')} (a V2 inference request is "
            '{"inputs": [{"name", "shape", "datatype", "data"}, ...]})'
        ) from None


def _binary_inference_request(body: bytes, length: str, model_name: str) -> Any:
    """A V2 request in the binary data extension (a JSON part of ``length`` bytes, then raw
    tensor bytes), or InvalidInput: KServe's parser indexes the JSON part unchecked."""
    import orjson
    from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER as HEADER
    from kserve.errors import InvalidInput

    from serving.v2_codec import read_binary_request

    json_length = int(length) if length.strip().isdecimal() else -1
    if not 0 < json_length <= len(body):
        raise InvalidInput(
            f"{HEADER}: {length[:40]!r} is not the length of the JSON part of this "
            f"{len(body)}-byte body"
        )
    try:
        head = orjson.loads(body[:json_length])
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: the JSON part is not valid JSON ({exc})") from None
    checked = head
    if isinstance(head, dict) and isinstance(head.get("inputs"), list):
        # binary inputs have no "data": validate everything else
        inputs = [{"data": [], **i} if isinstance(i, dict) else i for i in head["inputs"]]
        checked = {**head, "inputs": inputs}
    _validated(checked)
    # raw inputs stay raw and are checked against shape and datatype when read
    return read_binary_request(body, json_length, head, model_name)


def readiness_dataplane(registry: Any) -> Any:
    """KServe's DataPlane whose server readiness is every model's (with the reason)."""
    from kserve.protocol.dataplane import DataPlane

    class ServingDataPlane(DataPlane):
        def decode_inference_request(self, body: Any, headers: dict, model_name: str) -> Any:
            from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER

            if isinstance(body, bytes):
                # FastAPI hands over raw bytes when it did not parse an InferenceRequest
                # (not JSON, or a content-type other than application/json)
                length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
                if length is not None:
                    return _binary_inference_request(body, length, model_name)
                body = _inference_request(body)
            return super().decode_inference_request(body, headers, model_name)

        def decode(self, body: Any, headers: Any, *args: Any, **kwargs: Any) -> Any:
            from kserve.errors import InvalidInput

            try:
                return super().decode(body, headers, *args, **kwargs)
            except InvalidInput as exc:
                if str(exc).startswith("Unrecognized request format"):
                    detail = str(exc).split(": ", 1)[-1]
                    raise InvalidInput(f"body: is not valid JSON ({detail})") from None
                raise

        async def ready(self) -> bool:
            from kserve.errors import ServerNotReady

            if not self.model_registry.get_models():
                raise ServerNotReady("no model is loaded")
            for model in self.model_registry.get_models().values():
                await model.healthy()  # raises ModelNotReady with the reason
            return await super().ready()

    return ServingDataPlane(model_registry=registry)


def configure_logs(access_log: bool) -> None:
    """Our loggers write like KServe's (its handler, format and level); the per-request
    access and timing logs only with ``--access-log``."""
    from kserve.logging import configure_logging

    configure_logging()  # KServe's format; ModelServer keeps it (it configures only once)
    kserve_log = logging.getLogger("kserve")
    for name in ("serving", "esteira"):
        ours = logging.getLogger(name)
        ours.handlers = list(kserve_log.handlers)
        ours.setLevel(kserve_log.level or logging.INFO)
        ours.propagate = False
    if not access_log:
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        logging.getLogger("kserve.trace").setLevel(logging.WARNING)


# ---- models ----------------------------------------------------------------------------
def build_model(args: argparse.Namespace, settings: Any) -> Any:
    if args.role == "predictor":
        from esteira.storage import open_storage
        from serving.prediction_logger import PredictionLogger
        from serving.predictor import Predictor

        name = args.model_name or settings.model.name
        logger = PredictionLogger(
            open_storage(settings.storage),
            name,
            flush_rows=settings.serving.log_flush_rows,
            flush_seconds=settings.serving.log_flush_seconds,
        )
        ref: int | str = int(args.version) if args.version.isdigit() else args.version
        model = Predictor(
            settings, name=name, ref=ref, prediction_logger=logger, model_dir=args.model_dir
        )
    else:
        from serving.transformer import Transformer

        host = args.predictor_host or f"127.0.0.1:{settings.serving.predictor_port}"
        model = Transformer(
            settings,
            predictor_host=host,
            name=args.model_name,
            protocol=args.protocol,
            decision_threshold=args.decision_threshold,
        )
    model.load()
    return model


def ports(args: argparse.Namespace, settings: Any) -> tuple[int, int]:
    s = settings.serving
    if args.role == "predictor":
        http = args.http_port or s.predictor_port
        return http, s.grpc_port if args.grpc_port is None else args.grpc_port
    http = args.http_port or s.transformer_port
    return http, http + 1 if args.grpc_port is None else args.grpc_port


def use_uvloop() -> None:
    """Run the server on uvloop when it is installed (KServe's own loop is plain asyncio)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return
    import asyncio

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.set_event_loop(asyncio.new_event_loop())  # KServe asks for the current loop


def serve(
    model: Any,
    http_port: int,
    grpc_port: int,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    access_log: bool = False,
    fast_lane: bool = True,
    role: str = "model",
    allow_model_repository: bool = False,
) -> None:
    """Run a single-worker ModelServer; a model that failed to load is served unready."""
    import kserve.model_server
    from kserve import ModelServer

    from serving import guard

    server = ModelServer(
        http_port=http_port,
        grpc_port=grpc_port or 0,
        workers=1,
        enable_grpc=bool(grpc_port),
        enable_latency_logging=False,
    )
    server.dataplane = readiness_dataplane(server.registered_models)
    guard.install(server, allow_model_repository)  # load/unload refused unless allowed
    # --access-log logs from inside the FastAPI app, so it keeps V1 there too
    lane = server.dataplane if fast_lane and not access_log else None
    asgi_app = serving_app(max_body_bytes, lane, role)
    kserve.model_server.RESTServer = rest_server_class(access_log, asgi_app)  # read by start()
    # Registered directly: ModelServer.start() refuses to run without a ready model, and
    # an unready server that says why is more useful than a crash loop.
    server.register_model(model)
    use_uvloop()
    # Everything loaded so far (Feast, KServe, the model) lives as long as the process:
    # moving it out of the collector's view keeps full collections from scanning it.
    gc.collect()
    gc.freeze()
    # The prediction-log thread converts and writes batches in the background; hand
    # the interpreter back to a waiting request after 0.5 ms, not Python's default 5.
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    try:
        server.start([])
    finally:
        model.stop()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # KServe parses sys.argv when imported (and `--config` would abbreviate its
    # `--configure_logging`): hide ours from it.
    sys.argv = sys.argv[:1]
    from esteira.config import load_settings
    from esteira.errors import EsteiraError

    try:
        settings = load_settings(args.config or os.environ.get(CONFIG_FILE_ENV)).resolved()
    except EsteiraError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    http_port, grpc_port = ports(args, settings)
    configure_logs(args.access_log)  # before loading, so the model's load is logged too
    model = build_model(args, settings)
    serve(
        model,
        http_port,
        grpc_port,
        max_body_bytes=args.max_body_bytes,
        access_log=args.access_log,
        fast_lane=not args.no_fast_lane,
        role=args.role,
        allow_model_repository=settings.serving.allow_model_repository,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
