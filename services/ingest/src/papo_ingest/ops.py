"""Operations endpoints, outside authentication and tracing: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import prometheus_client
from litestar import Response, asgi, get
from litestar.datastructures import State
from litestar.types import Receive, Scope, Send
from prometheus_client import make_asgi_app
from prometheus_client.metrics_core import Metric

from papo_common.metrics import REGISTRY
from papo_common.service import run_checks

OPS_PATHS = ("/healthz", "/readyz", "/metrics")


class _PapoAndLitestar:
    """papo's registry and the default one, where Litestar's middleware (and the process collector) write."""

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
    """papo's registry (webhook outcomes, FastStream's publish metrics) and Litestar's HTTP metrics."""
    await _metrics_app(scope, receive, send)
