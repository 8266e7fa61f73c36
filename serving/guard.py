"""Endpoints a stranger cannot use to switch the model off, and honest answers for the rest.

KServe's ``ModelServer`` serves more than predictions, and some of it is unsafe or
unserved on an unauthenticated port:

* **Model repository** (REST ``POST /v2/repository/models/<name>/load|unload``, gRPC
  ``RepositoryModelLoad``/``RepositoryModelUnload``): one unload removes the model, and
  every prediction answers 404 until a restart. :class:`GuardedRepository` refuses both
  with 403 / ``PERMISSION_DENIED`` unless ``serving.allow_model_repository`` is true.
* **Readiness over gRPC**: KServe's ``ServerReady``/``ModelReady`` raise when the model
  is not ready (an error status instead of an answer). :class:`ReadinessServicer`
  answers ``ready: false`` instead, as a health checker expects; REST keeps answering
  503 with the reason.
* **Routes not served**: ``:explain`` without an explainer and the versioned V2 URLs
  (``/v2/models/<name>/versions/<v>/...``) end in KServe's ``NotImplementedError``,
  a 501. :class:`UnservedRoutes` answers them 404 with a message saying what to use.

:func:`install` puts the first two into a ``ModelServer`` before it starts; the
third wraps the ASGI app (``serving.__main__.serving_app``).
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import orjson
from kserve.errors import ModelNotFound, ModelNotReady, ServerNotReady
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc.servicer import InferenceServicer
from kserve.protocol.model_repository_extension import ModelRepositoryExtension

from serving.transformer import ServingError

SETTING = "serving.allow_model_repository"
EXPLAIN = re.compile(r"^/v1/models/([^/]+):explain$")
VERSIONED = re.compile(r"^/v2/models/([^/]+)/versions/[^/]*(/.*)?$")


def repository_forbidden(action: str, model_name: str) -> ServingError:
    return ServingError(
        403,
        grpc.StatusCode.PERMISSION_DENIED,
        f"model repository: {action} of {model_name!r} is disabled on this server; "
        f"set {SETTING}: true (env ESTEIRA_SERVING__ALLOW_MODEL_REPOSITORY=true) to allow it",
    )


class GuardedRepository(ModelRepositoryExtension):
    """KServe's model-repository extension, refusing load and unload unless allowed."""

    def __init__(self, model_registry: Any, allow: bool) -> None:
        super().__init__(model_registry)
        self.allow = allow

    async def load(self, model_name: str) -> None:
        if not self.allow:
            raise repository_forbidden("load", model_name)
        await super().load(model_name)

    async def unload(self, model_name: str) -> None:
        if not self.allow:
            raise repository_forbidden("unload", model_name)
        await super().unload(model_name)


class ReadinessServicer(InferenceServicer):
    """KServe's gRPC servicer whose readiness answers are ``ready: false`` when the model
    is not ready (not an error status), and whose repository calls answer properly."""

    async def ServerReady(self, request: Any, context: Any) -> Any:
        try:
            ready = await self._data_plane.ready()
        except (ModelNotReady, ServerNotReady, ModelNotFound):
            ready = False
        return pb.ServerReadyResponse(ready=bool(ready))

    async def ModelReady(self, request: Any, context: Any) -> Any:
        try:
            ready = await self._data_plane.model_ready(model_name=request.name)
        except (ModelNotReady, ModelNotFound):
            ready = False
        return pb.ModelReadyResponse(ready=bool(ready))

    # KServe's own handlers index the extension's result, which is None: a TypeError
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        await self._mode_repository_extension.load(model_name=request.model_name)
        return pb.RepositoryModelLoadResponse(model_name=request.model_name, isLoaded=True)

    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        await self._mode_repository_extension.unload(model_name=request.model_name)
        return pb.RepositoryModelUnloadResponse(model_name=request.model_name, isUnloaded=True)


def install(server: Any, allow_model_repository: bool) -> None:
    """Guard ``server``'s model repository and readiness (before ``server.start``)."""
    import kserve.protocol.grpc.server as grpc_server

    server.model_repository_extension = GuardedRepository(
        server.registered_models, allow_model_repository
    )
    grpc_server.InferenceServicer = ReadinessServicer  # read by GRPCServer.start()


class UnservedRoutes:
    """ASGI middleware: 404 with a message for KServe routes this server does not serve."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        message = unserved(scope["path"]) if scope["type"] == "http" else None
        if message is None:
            await self.app(scope, receive, send)
            return
        body = orjson.dumps({"error": message})
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 404, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def unserved(path: str) -> str | None:
    """Why ``path`` is not served here, or None when it is."""
    if ":explain" not in path and "/versions/" not in path:
        return None  # the common case, without a regular expression
    match = EXPLAIN.match(path)
    if match:
        return f"{path}: this server has no explainer; use POST /v1/models/{match.group(1)}:predict"
    match = VERSIONED.match(path)
    if match:
        rest = match.group(2) or ""
        return (
            f"{path}: versioned URLs are not served; use /v2/models/{match.group(1)}{rest} "
            "(the answer's model_version says which version answered)"
        )
    return None
