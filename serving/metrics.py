"""Request metrics for ``/metrics``: every HTTP request counted, timed and classified.

KServe's own histograms (``request_predict_seconds`` and friends) time the model's
steps; they do not see a request the model never got (a 400 from validation before
it, a 404, a 413) and carry no status. :class:`RequestMetrics` is the outermost
ASGI middleware and records, per route template (never the raw path, so a scanner
cannot grow the label set):

* ``esteira_requests_total{role, route, method, code}``
* ``esteira_request_duration_seconds{role, route}`` (buckets from 0.5 ms)
* ``esteira_request_errors_total{role, route, kind}``: ``kind`` is ``client`` (4xx)
  or ``server`` (5xx)

It replaces KServe's ``TimingMiddleware``, which only feeds the ``kserve.trace``
log (kept when the server runs with ``--access-log``) and matched every request
against every route a second time to name it: about a tenth of a predictor's time
per single-row request.
"""

from __future__ import annotations

import time
from typing import Any

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_FIXED = {
    "/": "/",
    "/metrics": "/metrics",
    "/v1/models": "/v1/models",
    "/v2": "/v2",
    "/v2/health/live": "/v2/health/live",
    "/v2/health/ready": "/v2/health/ready",
    "/v2/models": "/v2/models",
}
_V1_VERBS = (":predict", ":explain")
_V2_TAILS = ("/infer", "/ready", "/explain")


def route_of(path: str) -> str:
    """The route template of ``path`` (``/v1/models/{model}:predict``), or ``other``."""
    fixed = _FIXED.get(path)
    if fixed is not None:
        return fixed
    for prefix in ("/v1/models/", "/v2/models/"):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix) :]
        if prefix == "/v1/models/":
            verb = next((v for v in _V1_VERBS if rest.endswith(v)), "")
            name = rest[: len(rest) - len(verb)]
        else:
            verb = next((t for t in _V2_TAILS if rest.endswith(t)), "")
            name = rest[: len(rest) - len(verb)]
        if name and "/" not in name and ":" not in name:
            return f"{prefix}{{model}}{verb}"
    return "other"


class _Metrics:
    """The three metric families, made once per process (prometheus names are global)."""

    _instance: _Metrics | None = None

    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "esteira_requests", "HTTP requests answered", ["role", "route", "method", "code"]
        )
        self.duration = Histogram(
            "esteira_request_duration_seconds",
            "time from request to the last byte of the answer",
            ["role", "route"],
            buckets=BUCKETS,
        )
        self.errors = Counter(
            "esteira_request_errors",
            "answers with a 4xx (client) or 5xx (server) status",
            ["role", "route", "kind"],
        )

    @classmethod
    def get(cls) -> _Metrics:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance


class RequestMetrics:
    """ASGI middleware recording the metrics above for every HTTP request."""

    def __init__(self, app: Any, role: str) -> None:
        self.app = app
        self.role = role
        self.metrics = _Metrics.get()
        self._children: dict[tuple, tuple] = {}  # labelled children, looked up once

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app fails before answering

        async def observed(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed)
        finally:
            self._record(scope, status, time.perf_counter() - started)

    def _record(self, scope: dict, status: int, seconds: float) -> None:
        key = (scope["path"], scope["method"], status)
        children = self._children.get(key)
        if children is None:
            route = route_of(scope["path"])
            kind = "client" if 400 <= status < 500 else "server" if status >= 500 else None
            children = (
                self.metrics.requests.labels(self.role, route, scope["method"], str(status)),
                self.metrics.duration.labels(self.role, route),
                self.metrics.errors.labels(self.role, route, kind) if kind else None,
            )
            if len(self._children) < 1024:  # raw paths are unbounded; the cache is not
                self._children[key] = children
        requests, duration, errors = children
        requests.inc()
        duration.observe(seconds)
        if errors is not None:
            errors.inc()
