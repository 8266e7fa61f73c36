"""V1 predictions straight to KServe's dataplane, without FastAPI's routing.

A single-row V1 request spends about as long in FastAPI (routing, dependency
solving, the endpoint wrapper) as in the model. :class:`FastLane` is an ASGI
middleware that answers ``POST /v1/models/<name>:predict`` with the same calls
KServe's V1 endpoint makes, in the same order:

    dataplane.model_ready -> dataplane.decode -> dataplane.infer -> dataplane.encode

so the model, its pre/post-processing, KServe's Prometheus histograms and the
response body are KServe's own. A raised exception goes to the handler the
FastAPI app has registered for its type (KServe's and ours), so an error answer is
the one the full stack would give. Every other request (V2, health, metadata,
``/metrics``, docs) passes through to the app unchanged. ``tests/test_serving.py``
sends the same requests through both and compares the answers.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

V1_PREDICT = re.compile(r"^/v1/models/([^/]+):predict$")


class FastLane:
    """ASGI middleware: V1 ``:predict`` through KServe's dataplane (see the module doc)."""

    def __init__(self, app: Any, dataplane: Any, handlers: Callable[[], dict]) -> None:
        self.app = app
        self.dataplane = dataplane
        self.handlers = handlers  # the FastAPI app's exception handlers, read per error

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = V1_PREDICT.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        try:
            response = await self._predict(match.group(1), scope, receive)
        except Exception as exc:
            response = await self._error(scope, exc)
        await response(scope, receive, send)

    async def _predict(self, model_name: str, scope: dict, receive: Any) -> Any:
        from kserve.errors import InvalidInput, ModelNotReady
        from starlette.responses import Response, StreamingResponse

        if not await self.dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        body = await _read_body(receive)
        if not body:  # KServe reads a CloudEvent (ce-* headers) without data as None: a 500
            raise InvalidInput('body: is empty; send a JSON object such as {"instances": [...]}')
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request, attributes = self.dataplane.decode(body=body, headers=headers)
        response, response_headers = await self.dataplane.infer(
            model_name=model_name, request=request, headers=headers
        )
        response, more_headers = self.dataplane.encode(
            model_name=model_name, response=response, headers=headers, req_attributes=attributes
        )
        response_headers.update(more_headers)
        response_headers.pop("content-length", None)
        if isinstance(response, bytes | str):
            return Response(content=response, headers=response_headers)
        if isinstance(response, AsyncIterator):
            return StreamingResponse(content=response)
        # what KServe's ORJSONResponse renders, without its per-request deprecation warning
        content = orjson.dumps(
            response, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
        )
        return Response(content, headers=response_headers, media_type="application/json")

    async def _error(self, scope: dict, exc: Exception) -> Any:
        from starlette.requests import Request

        handlers = self.handlers()
        for kind in type(exc).__mro__:
            handler = handlers.get(kind)
            if handler is not None:
                return await handler(Request(scope), exc)
        raise exc  # nothing registered: the server's own error middleware answers 500


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)
