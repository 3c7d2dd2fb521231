"""The admin API's connections, opened lazily so the webhook path never waits for or needs them.

PostgreSQL is used by the admin API only: its engine connects on first use, and a PostgreSQL outage makes
admin routes answer 503 while webhooks and readiness carry on. Dead letters use a RabbitMQ connection of
their own (see `dead_letters`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aio_pika.exceptions import AMQPError
from litestar.exceptions import ServiceUnavailableException
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from papo_ingest.admin.rabbit_link import DeadLetterLink

logger = logging.getLogger(__name__)

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
