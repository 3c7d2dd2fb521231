"""The admin API under `/admin`: human takeover (pause, resume, status), history, erasure, dead letters.

Served by ingest on its one port, behind its own bearer token (`PAPO_ADMIN_TOKEN`); without that token it is
not mounted at all and its paths answer 404.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from litestar import Router
from redis.asyncio import Redis

from papo_common.db import make_engine
from papo_ingest.admin.conversations import ConversationController
from papo_ingest.admin.dead_letter_routes import DeadLetterController
from papo_ingest.admin.dependencies import (
    AdminAuthenticator,
    AdminDependencies,
    DeadLetterLink,
    require_admin_token,
)
from papo_ingest.openapi import ADMIN_SECURITY
from papo_ingest.settings import IngestSettings

logger = logging.getLogger(__name__)

ADMIN_PATH = "/admin"


@dataclass(frozen=True)
class AdminApi:
    router: Router
    authenticator: AdminAuthenticator
    dependencies: AdminDependencies


def admin_api(settings: IngestSettings, redis: Redis) -> AdminApi | None:
    """The admin router and what it needs, or None when `PAPO_ADMIN_TOKEN` is not set. Nothing connects
    here: PostgreSQL and the admin RabbitMQ connection open on first use."""
    if not settings.admin_enabled or settings.admin_token is None:
        return None
    dependencies = AdminDependencies(
        engine=make_engine(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size),
        redis=redis,
        redis_prefix=settings.redis_key_prefix,
        dead_letters=DeadLetterLink(settings.rabbitmq_url.get_secret_value()),
    )
    router = Router(
        ADMIN_PATH,
        route_handlers=[ConversationController, DeadLetterController],
        guards=[require_admin_token],
        security=[{ADMIN_SECURITY: []}],
        tags=["admin"],
    )
    return AdminApi(router, AdminAuthenticator(settings.admin_token), dependencies)


def announce(admin: AdminApi | None) -> None:
    """Say at start-up whether the admin API is served."""
    if admin is None:
        logger.info("admin API disabled: PAPO_ADMIN_TOKEN is not set, /admin answers 404")
    elif admin.authenticator.short:
        logger.warning("PAPO_ADMIN_TOKEN is shorter than 32 bytes; use a long random token")
    else:
        logger.info("admin API enabled under %s", ADMIN_PATH)


__all__ = ["ADMIN_PATH", "AdminApi", "admin_api", "announce"]
