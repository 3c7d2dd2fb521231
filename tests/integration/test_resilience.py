"""The lease on the real Redis, and redelivery with backoff on the real RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from faststream import AckPolicy
from faststream.rabbit import Channel, RabbitBroker, RabbitMessage
from redis.asyncio import Redis

from papo_common.broker import PoisonMessageMiddleware
from papo_common.errors import DependencyUnavailable
from papo_common.resilience import (
    REDELIVERIES_HEADER,
    LeaseBusy,
    LeaseLost,
    hold_lease,
    redelivery_middleware,
)
from papo_common.topology import ServiceQueue
from papo_testing.rabbit import declare_service_queue

pytestmark = pytest.mark.integration


async def test_a_lease_is_exclusive_renewed_while_held_and_released_after(
    redis_client: Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:lease"
    async with hold_lease(redis_client, key, lease_seconds=0.3, wait_seconds=1) as lease:
        with pytest.raises(LeaseBusy):
            async with hold_lease(redis_client, key, lease_seconds=0.3, wait_seconds=0.1):
                pass
        # outlives its lease several times over: the keeper renews it
        for _ in range(4):
            await asyncio.wait_for(_ttl_refreshed(redis_client, key), 2)
        await lease.ensure_held()
    assert await redis_client.exists(key) == 0


async def test_each_lease_holds_a_random_token_of_its_own(redis_client: Redis, redis_prefix: str) -> None:
    """Not redis-py's uuid1, which carries the host's MAC address and clock into Redis."""
    key = f"{redis_prefix}:lease"
    tokens = []
    for _ in range(2):
        async with hold_lease(redis_client, key, lease_seconds=5, wait_seconds=1):
            tokens.append(await redis_client.get(key))
    assert all(len(token) == 32 and int(token, 16) >= 0 for token in tokens)
    assert tokens[0] != tokens[1]
    assert uuid.getnode().to_bytes(6, "big").hex().encode() not in tokens[0]


async def _ttl_refreshed(redis_client: Redis, key: str) -> None:
    """Returns once the lease's TTL went up again (a renewal), polling Redis."""
    last = await redis_client.pttl(key)
    while (ttl := await redis_client.pttl(key)) <= last:
        last = ttl
        await asyncio.sleep(0.01)


async def test_a_lost_lease_is_detected_and_never_releases_the_next_holders(
    redis_client: Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:lease"
    async with hold_lease(redis_client, key, lease_seconds=5, wait_seconds=1) as lease:
        lease.confirm(await redis_client.get(key))
        await redis_client.set(key, b"someone-else")  # our lease lapsed and another holder took it
        with pytest.raises(LeaseLost):
            lease.confirm(await redis_client.get(key))
        with pytest.raises(LeaseLost):
            await lease.ensure_held()
    assert await redis_client.get(key) == b"someone-else"


async def _broker(
    url: str, queue: ServiceQueue, horizon: float
) -> tuple[RabbitBroker, list[RabbitMessage], asyncio.Queue[int]]:
    broker = RabbitBroker(
        url, default_channel=Channel(publisher_confirms=True), middlewares=(PoisonMessageMiddleware,)
    )
    broker.add_middleware(redelivery_middleware(broker, (queue,), horizon_seconds=horizon))
    seen: list[RabbitMessage] = []
    attempts: asyncio.Queue[int] = asyncio.Queue()
    return broker, seen, attempts


async def test_a_lease_set_a_moment_ago_is_not_renewed_and_one_older_is(
    redis_client: Redis, redis_prefix: str
) -> None:
    """`renew_if_older_than` spares the round trip while the lease is young; past that age it renews, and
    finds out when the lease was lost (this process stalled past it and another holder took it)."""
    key = f"{redis_prefix}:lease-age"
    now = [100.0]
    async with hold_lease(redis_client, key, lease_seconds=30, wait_seconds=0, clock=lambda: now[0]) as lease:
        await redis_client.pexpire(key, 60_000)  # marks the lease: a renewal would set it back to 30 s
        now[0] += 9.9
        assert await lease.renew_if_older_than(10)
        assert await redis_client.pttl(key) > 30_000, "a young lease is not renewed"
        now[0] += 0.2
        assert await lease.renew_if_older_than(10)
        assert await redis_client.pttl(key) <= 30_000, "renewed once older than 10 s"
        await redis_client.set(key, b"someone-else")
        now[0] += 10
        assert not await lease.renew_if_older_than(10)
    assert await redis_client.get(key) == b"someone-else"


async def test_an_outage_is_redelivered_with_backoff_without_burning_the_delivery_limit(
    rabbitmq_url: str,
) -> None:
    # A delivery limit of 1 would dead-letter the first nack: redelivery must not count against it.
    queue = ServiceQueue(
        f"resilience-{uuid.uuid4().hex[:8]}", binds=(), delivery_limit=1, retry_delays_seconds=(0.05, 0.1)
    )
    broker, _, attempts = await _broker(rabbitmq_url, queue, horizon=60)
    failures_left = 4

    @broker.subscriber(queue.queue, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def handle(body: dict[str, Any], message: RabbitMessage) -> None:
        nonlocal failures_left
        await attempts.put(int((message.headers or {}).get(REDELIVERIES_HEADER) or 0))
        if failures_left:
            failures_left -= 1
            raise DependencyUnavailable("the model server is down")

    async with broker:
        await broker.connect()
        await declare_service_queue(broker, queue)
        await broker.start()
        await broker.publish({"n": 1}, queue=queue.name, persist=True)
        seen = [await asyncio.wait_for(attempts.get(), 10) for _ in range(5)]
        assert seen == [0, 1, 2, 3, 4]
        dead = await broker.declare_queue(queue.dead_letter_queue)
        assert await dead.get(fail=False) is None


async def test_an_outage_past_the_horizon_dead_letters(rabbitmq_url: str) -> None:
    queue = ServiceQueue(f"resilience-{uuid.uuid4().hex[:8]}", binds=(), retry_delays_seconds=(0.05,))
    broker, _, attempts = await _broker(rabbitmq_url, queue, horizon=0.3)

    @broker.subscriber(queue.queue, ack_policy=AckPolicy.NACK_ON_ERROR)
    async def handle(body: dict[str, Any]) -> None:
        await attempts.put(1)
        raise DependencyUnavailable("still down")

    dead_lettered: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    @broker.subscriber(queue.dead_letter_queue)
    async def parked(message: RabbitMessage) -> None:
        dead_lettered.set_result(message.body)

    async with broker:
        await broker.connect()
        await declare_service_queue(broker, queue)
        await broker.start()
        await broker.publish({"n": 1}, queue=queue.name, persist=True)
        assert await asyncio.wait_for(dead_lettered, 15) == b'{"n":1}'
    assert attempts.qsize() >= 2
