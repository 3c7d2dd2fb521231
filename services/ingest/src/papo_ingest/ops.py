"""Operations: liveness, readiness and Prometheus metrics endpoints, outside authentication and tracing, and the
HTTP request metrics of every other route."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import prometheus_client
from litestar import Response, asgi, get
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Gauge, Histogram, make_asgi_app
from prometheus_client.metrics_core import Metric

from papo_common.metrics import REGISTRY
from papo_common.service import run_checks

OPS_PATHS = ("/healthz", "/readyz", "/metrics")

_LABELS = ("method", "path", "status_code", "app_name")
REQUESTS = Counter("litestar_requests", "Total requests", _LABELS, registry=REGISTRY)
REQUEST_SECONDS = Histogram(
    "litestar_request_duration_seconds", "Request duration, in seconds", _LABELS, registry=REGISTRY
)
REQUESTS_IN_PROGRESS = Gauge(
    "litestar_requests_in_progress", "Total requests currently in progress", _LABELS, registry=REGISTRY
)
REQUEST_ERRORS = Counter("litestar_requests_error", "Total errors in requests", _LABELS, registry=REGISTRY)


class RequestMetrics:
    """The series of Litestar's Prometheus middleware (names, labels, and the path as its route template),
    with each label child made once and kept.

    Litestar's middleware builds a `Request` and four label children per request: about a tenth of a
    webhook's CPU. Use it as `DefineMiddleware(RequestMetrics, app_name=...)`.
    """

    def __init__(self, app: ASGIApp, *, app_name: str, exclude: Sequence[str] = ()) -> None:
        self._app = app
        self._app_name = app_name
        self._exclude = tuple(exclude)
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._in_progress: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # the route's template; a mounted app (/metrics) has none, and sees its own path, not the one requested
        path = scope.get("path_template") or (scope.get("raw_path") or b"").decode("latin-1") or scope["path"]
        if scope["type"] != ScopeType.HTTP or path.startswith(self._exclude):
            await self._app(scope, receive, send)
            return
        method = scope["method"]
        in_progress = self._in_progress.get((method, path))
        if in_progress is None:
            # like Litestar's: in progress is labelled with the status a request starts with
            in_progress = REQUESTS_IN_PROGRESS.labels(method, path, 200, self._app_name)
            self._in_progress[(method, path)] = in_progress
        status = 200
        started = time.perf_counter()
        ended = 0.0

        async def measured_send(message: Message) -> None:
            nonlocal status, ended
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                ended = time.perf_counter()
            await send(message)

        in_progress.inc()
        try:
            await self._app(scope, receive, measured_send)
        finally:
            in_progress.dec()
            count, seconds, errors = self._of(method, path, status)
            if status >= 500:
                errors.inc()
            count.inc()
            seconds.observe((ended or time.perf_counter()) - started)

    def _of(self, method: str, path: str, status: int) -> tuple[Any, Any, Any]:
        children = self._children.get((method, path, status))
        if children is None:
            values = (method, path, status, self._app_name)
            children = (
                REQUESTS.labels(*values),
                REQUEST_SECONDS.labels(*values),
                REQUEST_ERRORS.labels(*values),
            )
            self._children[(method, path, status)] = children
        return children


class _PapoAndLitestar:
    """papo's registry and the default one, where the process collector (and any library) writes."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from prometheus_client.REGISTRY.collect()


_metrics_app = make_asgi_app(_PapoAndLitestar())


@get("/healthz", include_in_schema=False)
async def liveness() -> dict[str, str]:
    """The process is alive and serving HTTP."""
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readiness(state: State) -> Response[dict[str, Any]]:
    """503 while RabbitMQ or Redis does not answer: webhooks would be answered 503 anyway."""
    results = await run_checks(state.readiness_checks)
    ready = all(result == "ok" for result in results.values())
    return Response(
        {"status": "ready" if ready else "not ready", "checks": results}, status_code=200 if ready else 503
    )


@asgi("/metrics", is_mount=True, copy_scope=True, include_in_schema=False)
async def metrics(scope: Scope, receive: Receive, send: Send) -> None:
    """papo's registry (webhook outcomes, FastStream's publish metrics, HTTP requests) and the default one."""
    await _metrics_app(scope, receive, send)
