"""Waiting for papo to have nothing left to do, so a test can assert that something did NOT happen without
sleeping and hoping: when no burst is buffered or being flushed and every queue is empty, acknowledged
messages included, no further reply can come."""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from papo_testing.chaos import queue_totals


async def nothing_in_flight(amqp_url: str, redis_url: str, prefix: str, *, queues: str = "papo.") -> bool:
    """True when debounce holds no due or claimed burst and every papo queue whose name starts with `queues`
    (retry queues too, dead-letter queues aside) is empty, unacknowledged messages included."""
    redis = Redis.from_url(redis_url)
    try:
        buffered = await redis.zcard(f"{prefix}:debounce:due") + await redis.zcard(
            f"{prefix}:debounce:claims"
        )
    finally:
        await redis.aclose()
    if buffered:
        return False
    totals = await asyncio.to_thread(queue_totals, amqp_url)
    return not any(n for name, n in totals.items() if name.startswith(queues) and not name.endswith(".dlq"))


async def settled(
    amqp_url: str, redis_url: str, prefix: str, *, queues: str = "papo.", timeout: float = 60.0
) -> None:
    """Wait until `nothing_in_flight` holds twice in a row (a message moving between two queues is in
    neither for an instant). A test running one service narrows `queues` to that service's own (e.g.
    `papo.deliver`): what it publishes waits in queues nobody consumes there."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        streak = streak + 1 if await nothing_in_flight(amqp_url, redis_url, prefix, queues=queues) else 0
        if streak >= 2:
            return
        await asyncio.sleep(0.5)  # each look boots a rabbitmqctl VM: look twice a second at most
    raise AssertionError(f"papo still had work in flight after {timeout}s")
