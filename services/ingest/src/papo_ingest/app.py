"""The ingest service: a Litestar app that receives Evolution API webhooks and publishes InboundMessages.

It owns no queue; it publishes with confirms to the `papo` exchange. Webhook, health, readiness and metrics
share one HTTP port (`PAPO_INGEST_PORT`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import jwt
from litestar import Litestar
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from opentelemetry.sdk.trace import TracerProvider
from pydantic import ValidationError

from papo_common.broker import ConfirmedPublisher
from papo_common.heap import freeze_heap, serve_process
from papo_common.own_sends import OwnSends
from papo_common.periodic import Periodic
from papo_common.redis import make_redis
from papo_common.redis_durability import require_durable_redis
from papo_common.service import make_service_broker
from papo_common.telemetry import setup_tracing, tracing_enabled
from papo_ingest.admin import admin_api, announce
from papo_ingest.auth import RECOMMENDED_TOKEN_BYTES, WebhookAuthenticator
from papo_ingest.broker_link import BrokerLink
from papo_ingest.dedupe import SeenMessages
from papo_ingest.errors import http_error, internal_error
from papo_ingest.evolution import IntakePolicy
from papo_ingest.handlers import evolution_webhook, evolution_webhook_by_event
from papo_ingest.instances import Instances
from papo_ingest.intake import Intake
from papo_ingest.openapi import openapi_config
from papo_ingest.ops import OPS_PATHS, RequestMetrics, liveness, metrics, readiness
from papo_ingest.senders import Senders
from papo_ingest.settings import IngestSettings

logger = logging.getLogger(__name__)

# PyJWT warns on every decode with a key under 32 bytes; ingest says so once, at start-up.
warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)


_SHUTDOWN_STEP_SECONDS = 5.0


def create_app(settings: IngestSettings | None = None) -> Litestar:
    """Build the ingest app; connections open when it starts."""
    settings = settings or IngestSettings()
    broker = make_service_broker("ingest", settings)
    publisher = ConfirmedPublisher(broker)
    link = BrokerLink(broker)
    redis = make_redis(settings.redis_url.get_secret_value())
    token = (
        settings.webhook_token.get_secret_value()
        if settings.auth_required and settings.webhook_token
        else None
    )
    authenticator = WebhookAuthenticator(token, leeway_seconds=settings.webhook_jwt_leeway_seconds)
    instances = Instances(redis, settings.redis_key_prefix)
    instance_gauge = Periodic("instance-gauge", instances.refresh_gauge, interval=15.0, max_backoff=60.0)
    seen = SeenMessages(
        redis,
        settings.redis_key_prefix,
        published_ttl_seconds=settings.ingest_dedupe_ttl_seconds,
        claim_ttl_seconds=settings.ingest_claim_ttl_seconds,
    )
    intake = Intake(
        publish=publisher,
        seen=seen,
        policy=IntakePolicy(
            accept_groups=settings.ingest_accept_groups,
            accept_status=settings.ingest_accept_status,
            accept_newsletters=settings.ingest_accept_newsletters,
        ),
        publish_timeout_seconds=settings.ingest_publish_timeout_seconds,
        broker_ready=lambda: link.connected,
        senders=Senders(settings.redis_key_prefix, OwnSends(redis, settings.redis_key_prefix)),
        instances=instances,
    )

    admin = admin_api(settings, redis)

    async def rabbitmq_ready() -> None:
        if not link.connected or not await broker.ping(timeout=2.0):
            raise ConnectionError("RabbitMQ did not answer")

    async def redis_ready() -> None:
        await redis.ping()

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        _warn_about_auth(token)
        announce(admin)
        await link.start()
        await instance_gauge.start()
        freeze_heap()  # started: what start-up made lives as long as the process (papo_common.heap)
        try:
            yield
        finally:
            steps = [
                instance_gauge.stop,
                *([admin.dependencies.close] if admin else []),
                link.stop,
                seen.flush,
            ]
            for step in [*steps, redis.aclose]:
                # a dependency that never answers must not hold the process: each step is bounded
                try:
                    async with asyncio.timeout(_SHUTDOWN_STEP_SECONDS):
                        await step()
                except Exception as error:
                    logger.warning("shutdown step did not finish", extra={"error": type(error).__name__})

    tracer_provider = setup_tracing("ingest", track=settings.service_track)
    # no exporter, no spans: building spans nobody receives was a fifth of a webhook's cost
    plugins = [OpenTelemetryPlugin(_tracing(tracer_provider))] if tracing_enabled() else []
    state = {
        "intake": intake,
        "authenticator": authenticator,
        "broker_link": link,
        # PostgreSQL is the admin API's alone: the webhook stays ready while it is down
        "readiness_checks": {"rabbitmq": rabbitmq_ready, "redis": redis_ready},
    }
    if admin is not None:
        state |= {"admin": admin.dependencies, "admin_authenticator": admin.authenticator}
    return Litestar(
        route_handlers=[
            evolution_webhook,
            evolution_webhook_by_event,
            liveness,
            readiness,
            metrics,
            *([admin.router] if admin is not None else []),
        ],
        state=State(state),
        lifespan=[lifespan],
        plugins=plugins,
        # HTTP metrics (requests, latency, in progress by route and status), served on /metrics with papo's
        middleware=[DefineMiddleware(RequestMetrics, app_name="papo-ingest", exclude=list(OPS_PATHS))],
        request_max_body_size=settings.ingest_max_body_bytes,
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        openapi_config=openapi_config(),
        logging_config=None,
        debug=False,
    )


def _tracing(tracer_provider: TracerProvider) -> OpenTelemetryConfig:
    return OpenTelemetryConfig(
        tracer_provider=tracer_provider,
        exclude=list(OPS_PATHS),
        # the per-message ASGI receive/send spans triple the cost of a request and say nothing new
        exclude_spans=["receive", "send"],
    )


def _warn_about_auth(token: str | None) -> None:
    if token is None:
        logger.error(
            "WEBHOOK AUTHENTICATION IS OFF: PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED=true and no PAPO_WEBHOOK_TOKEN; "
            "anyone who can reach this port can inject messages. Development only."
        )
    elif len(token.encode()) < RECOMMENDED_TOKEN_BYTES:
        logger.warning(
            "PAPO_WEBHOOK_TOKEN is shorter than %d bytes; use a long random token", RECOMMENDED_TOKEN_BYTES
        )


def main() -> None:
    """Run ingest the way its container does: uvicorn on PAPO_INGEST_PORT, graceful shutdown on SIGTERM, the heap
    frozen once it has started (`papo_common.heap`)."""
    import uvicorn

    try:
        settings = IngestSettings()
    except ValidationError as error:
        # Print only the messages: pydantic's default rendering includes the input, secrets and all.
        for problem in error.errors(include_input=False, include_url=False):
            print(f"papo-ingest: invalid settings: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
    app = create_app(settings)
    require_durable_redis(settings)
    serve_process()
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.ingest_port,
        log_config=None,
        access_log=False,
        loop="uvloop",
        http="httptools",
        timeout_graceful_shutdown=30,
    )
