"""What the admin API needs: its token, and connections opened lazily so the webhook path never waits for them.

Whoever presents `Authorization: Bearer <PAPO_ADMIN_TOKEN>` may use the admin API. The admin token is its own
secret, never the webhook token: Evolution holds that one, and the admin API can read people's messages, erase
them and replay dead letters.

PostgreSQL is used by the admin API only: its engine connects on first use, and a PostgreSQL outage makes admin
routes answer 503 while webhooks and readiness carry on. Dead letters use a RabbitMQ connection of their own:
admin work needs `basic.get`, `nack` and byte-exact republishing of someone else's message, which FastStream's
publish API does not offer (it would re-encode the body and set its own properties), and a channel error from
admin work must never close the channel webhooks are confirmed on. It too opens on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, ServiceUnavailableException
from litestar.handlers import BaseRouteHandler
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from papo_ingest.errors import loggable_path

logger = logging.getLogger(__name__)


RECOMMENDED_TOKEN_BYTES = 32


class AdminAuthenticator:
    """Compares a request's bearer token with the admin token in constant time."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token.get_secret_value().strip().encode()
        if not self._token:
            raise ValueError("the admin token must not be empty")

    @property
    def short(self) -> bool:
        """Whether the token is shorter than a 256-bit random secret."""
        return len(self._token) < RECOMMENDED_TOKEN_BYTES

    def allows(self, headers: Mapping[str, str]) -> bool:
        """True when the headers carry `Authorization: Bearer <admin token>`."""
        scheme, _, presented = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # compare_digest takes as long for a wrong token of any content; only the length may leak
        return hmac.compare_digest(presented.strip().encode(), self._token)


async def require_admin_token(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Guard of every admin route: 401 unless the request carries the admin bearer token."""
    authenticator: AdminAuthenticator = connection.app.state.admin_authenticator
    if not authenticator.allows(connection.headers):
        client = connection.client.host if connection.client else "unknown"
        logger.warning(
            "admin request refused", extra={"client": client, "path": loggable_path(connection.url.path)}
        )
        raise NotAuthorizedException(detail="send Authorization: Bearer <PAPO_ADMIN_TOKEN>")


_CONNECT_TIMEOUT_SECONDS = 5.0


class DeadLetterLink:
    """A RabbitMQ connection for admin work, opened on first use and reconnected by aio-pika after that."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: AbstractRobustConnection | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        """A fresh channel with publisher confirms and returns-as-errors; closing it (also on failure)
        requeues whatever it still holds unacknowledged."""
        connection = await self._connect()
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _connect(self) -> AbstractRobustConnection:
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(
                    self._url,
                    timeout=_CONNECT_TIMEOUT_SECONDS,
                    client_properties={"connection_name": "papo-ingest-admin"},
                )
            return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None


OPERATION_TIMEOUT_SECONDS = 15.0
"""Longest an admin call waits on a dependency before answering 503 (asyncpg alone would wait 60 s)."""


@dataclass(frozen=True)
class AdminDependencies:
    engine: AsyncEngine
    redis: Redis
    redis_prefix: str
    dead_letters: DeadLetterLink

    async def close(self) -> None:
        await self.dead_letters.close()
        await self.engine.dispose()


@contextlib.asynccontextmanager
async def available(dependency: str, *, seconds: float = OPERATION_TIMEOUT_SECONDS) -> AsyncIterator[None]:
    """Turn a dependency's outage (or a call that outlives `seconds`) into a 503."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except (SQLAlchemyError, RedisError, AMQPError, OSError, TimeoutError) as error:
        logger.warning(
            "admin request failed: %s unavailable",
            dependency,
            extra={"dependency": dependency, "error": f"{type(error).__name__}: {error}"[:300]},
        )
        raise ServiceUnavailableException(detail=f"{dependency} is unavailable") from error
