"""The start-up check that Redis keeps what papo's guarantees rest on.

Buffered bursts, dedupe marks, the delivery ledger and the hot history live in Redis. Without an append-only
file a Redis restart forgets all of them: buffered bursts are never answered and replayed webhooks are
answered again. With `appendonly yes` and `appendfsync everysec` a crash loses at most about a second.
"""

from __future__ import annotations

import logging
from typing import Any

from papo_common.settings import PapoSettings

logger = logging.getLogger(__name__)


class VolatileRedisError(RuntimeError):
    """Redis has no append-only file and the deployment is production."""


def persistence_of(info: dict[str, Any], save_schedule: str | None) -> str:
    """`aof`, `snapshots` (RDB only: minutes of writes lost on a crash), `none`, or `unknown` when the
    snapshot schedule cannot be read (managed Redis often disables CONFIG), from `INFO persistence` and
    `CONFIG GET save`."""
    if str(info.get("aof_enabled", "0")) == "1":
        return "aof"
    if save_schedule is None:
        return "unknown"
    return "snapshots" if save_schedule.strip() else "none"


def judge(persistence: str, settings: PapoSettings) -> None:
    """Warn about a Redis without an append-only file; refuse it in production unless allowed."""
    if persistence == "aof":
        logger.debug("redis persistence: append-only file")
        return
    if settings.environment == "production" and not settings.redis_allow_volatile:
        raise VolatileRedisError(
            f"Redis persistence is {persistence!r}, not an append-only file: a Redis restart would lose "
            "buffered messages and dedupe marks. Enable `appendonly yes` (appendfsync everysec), or set "
            "PAPO_REDIS_ALLOW_VOLATILE=true to accept that."
        )
    logger.warning(
        "redis persistence is %r, not an append-only file: a Redis restart loses buffered bursts, dedupe "
        "marks and the delivery ledger",
        persistence,
    )


def require_durable_redis(settings: PapoSettings) -> None:
    """Read Redis's persistence once at start-up and `judge` it. An unreachable Redis is left to the
    service's readiness check and reconnects: this check only speaks when it can see the settings."""
    import redis

    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=3,
        socket_connect_timeout=3,
        decode_responses=True,
    )
    try:
        info = client.info("persistence")
        save_schedule: str | None
        try:
            save_schedule = str(client.config_get("save").get("save", ""))
        except redis.ResponseError:
            save_schedule = None
    except redis.RedisError as error:
        logger.warning("could not read Redis persistence (%s); not checked", type(error).__name__)
        return
    finally:
        client.close()
    judge(persistence_of(info, save_schedule), settings)
