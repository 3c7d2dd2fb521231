"""The skeleton every consumer service shares: logging, tracing, metrics, topology, health and readiness.

A service's `create_app()` builds its broker with `make_service_broker`, registers its handlers, and wraps
it with `consumer_app`, adding the readiness checks of whatever it depends on (Redis, PostgreSQL, a model).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream.asgi import AsgiFastStream, AsgiResponse, get
from faststream.rabbit import RabbitBroker
from faststream.rabbit.opentelemetry import RabbitTelemetryMiddleware
from prometheus_client import make_asgi_app

from papo_common.broker import BrokerMetrics, make_broker
from papo_common.heap import freeze_heap, serve_process
from papo_common.logging import configure_logging
from papo_common.metrics import REGISTRY
from papo_common.settings import PapoSettings
from papo_common.telemetry import setup_tracing, tracing_enabled
from papo_common.topology import declare_topology

logger = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[Any]]
"""Raises (or times out) when a dependency is not ready."""

_CHECK_TIMEOUT_SECONDS = 2.0


def make_service_broker(service: str, settings: PapoSettings) -> RabbitBroker:
    """The service's broker, with logging configured and FastStream's Prometheus series counted, and the tracing
    middleware too when tracing is on (without an exporter it would only make spans nobody receives)."""
    configure_logging(
        service, level=settings.log_level, fmt=settings.log_format, track=settings.service_track
    )
    provider = setup_tracing(service, track=settings.service_track)
    tracing = (RabbitTelemetryMiddleware(tracer_provider=provider),) if tracing_enabled() else ()
    return make_broker(
        settings,
        app_id=f"papo-{service}",
        middlewares=(
            *tracing,
            BrokerMetrics(f"papo-{service}"),
        ),
    )


async def run_checks(checks: dict[str, ReadinessCheck]) -> dict[str, str]:
    """Run readiness checks concurrently; each one's outcome is "ok" or the error it raised."""

    async def one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(), _CHECK_TIMEOUT_SECONDS)
        except Exception as error:
            return f"error: {type(error).__name__}: {error}"[:300]
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(one(checks[name]) for name in names))
    return dict(zip(names, results, strict=True))


def ops_routes(broker: RabbitBroker, checks: dict[str, ReadinessCheck]) -> list[tuple[str, Any]]:
    """`/healthz` (the process is alive), `/readyz` (every dependency answers) and `/metrics`."""

    async def broker_ready() -> None:
        if not await broker.ping(timeout=_CHECK_TIMEOUT_SECONDS):
            raise ConnectionError("RabbitMQ did not answer")

    all_checks = {"rabbitmq": broker_ready, **checks}

    @get(include_in_schema=False)
    async def liveness(scope: Any) -> AsgiResponse:
        return AsgiResponse(b'{"status":"ok"}', status_code=200, headers={"content-type": "application/json"})

    @get(include_in_schema=False)
    async def readiness(scope: Any) -> AsgiResponse:
        results = await run_checks(all_checks)
        ready = all(result == "ok" for result in results.values())
        body = json.dumps({"status": "ready" if ready else "not ready", "checks": results}).encode()
        return AsgiResponse(
            body, status_code=200 if ready else 503, headers={"content-type": "application/json"}
        )

    return [("/healthz", liveness), ("/readyz", readiness), ("/metrics", make_asgi_app(REGISTRY))]


def consumer_app(
    broker: RabbitBroker,
    *,
    checks: dict[str, ReadinessCheck] | None = None,
    on_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    after_startup: Sequence[Callable[[], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
    after_shutdown: Sequence[Callable[[], Awaitable[None]]] = (),
) -> AsgiFastStream:
    """Wrap a service's broker in an ASGI app that declares the topology before consuming.

    `on_shutdown` runs before the broker drains in-flight messages; close what handlers still use (HTTP
    clients, Redis, the database) in `after_shutdown`.
    """

    async def declare() -> None:
        await broker.connect()
        await declare_topology(broker)

    async def freeze_once_consuming() -> None:
        # the last hook: the app has started and its consumers run (papo_common.heap)
        freeze_heap()

    return AsgiFastStream(
        broker,
        asgi_routes=ops_routes(broker, checks or {}),
        on_startup=[*on_startup, declare],
        after_startup=[*after_startup, freeze_once_consuming],
        on_shutdown=list(on_shutdown),
        after_shutdown=list(after_shutdown),
    )


def declaring_broker(settings: PapoSettings, *declarations: Callable[[RabbitBroker], object]) -> RabbitBroker:
    """A broker that only carries a service's declared subscribers and publishers, for its AsyncAPI document:
    the services that consume below FastStream (`papo_common.consuming`) declare their input here, where no
    subscriber is ever started."""
    broker = make_broker(settings)
    for declare in declarations:
        declare(broker)
    return broker


def serve(app: Any, settings: PapoSettings) -> None:
    """Run an ASGI app the way a container does: one process, uvicorn, graceful shutdown on SIGTERM, the heap
    frozen once it has started (`papo_common.heap`)."""
    import uvicorn

    serve_process()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
    )
