"""Per-instance send slots over the real Redis: spaced across callers, independent across instances."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from redis.asyncio import Redis

from papo_deliver.send_slots import SendSlots, sleep_until

pytestmark = pytest.mark.integration  # a real HTTP server or Redis


async def test_concurrent_reservations_through_one_instance_are_spaced_by_the_interval(
    redis: Redis, redis_prefix: str
) -> None:
    # Two clients stand in for two replicas: the spacing lives in Redis, not in a process.
    replicas = [SendSlots(redis, redis_prefix, interval_ms=200) for _ in range(2)]
    slots = sorted(await asyncio.gather(*(replicas[n % 2].reserve("acme") for n in range(8))))

    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert all(gap >= 0.19 for gap in gaps), gaps
    assert slots[0] - time.monotonic() < 0.05, "an idle instance sends at once"


async def test_another_instance_is_not_delayed_by_a_busy_one(redis: Redis, redis_prefix: str) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=1000)
    for _ in range(5):
        await slots.reserve("busy")
    assert await slots.reserve("quiet") - time.monotonic() < 0.05


async def test_the_lead_time_is_honoured_and_counts_toward_the_interval(
    redis: Redis, redis_prefix: str
) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=200)
    typed = await slots.reserve("acme", lead_ms=500)  # typing for 500 ms first
    following = await slots.reserve("acme")
    assert typed - time.monotonic() == pytest.approx(0.5, abs=0.05)
    assert following - typed == pytest.approx(0.2, abs=0.02), "the next send is spaced from the typed one"


async def test_the_key_is_under_the_prefix_and_expires_once_idle(redis: Redis, redis_prefix: str) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=300)
    await slots.reserve("acme")
    key = f"{redis_prefix}:instance:{{acme}}:deliver:next-send"
    assert slots.key("acme") == key
    assert 0 < await redis.pttl(key) <= 300 + 60_000


async def test_an_interval_of_zero_spaces_nothing_and_needs_no_redis() -> None:
    slots = SendSlots(None, "unused", interval_ms=0)
    assert await slots.reserve("acme", lead_ms=100) - time.monotonic() == pytest.approx(0.1, abs=0.02)
    assert await slots.reserve("acme") - time.monotonic() < 0.01


def test_spacing_without_redis_is_refused() -> None:
    with pytest.raises(ValueError, match="Redis"):
        SendSlots(None, "p", interval_ms=100)


async def test_a_long_wait_renews_the_lease_between_naps() -> None:
    renewals: list[float] = []

    async def renew() -> None:
        renewals.append(time.monotonic())

    started = time.monotonic()
    await sleep_until(started + 0.35, renew=renew, renew_every_seconds=0.1)
    assert time.monotonic() - started >= 0.35
    assert len(renewals) == 3


async def test_a_claim_holds_back_a_send_that_comes_too_soon_after_the_last_one(
    redis: Redis, redis_prefix: str
) -> None:
    replicas = [SendSlots(redis, redis_prefix, interval_ms=300) for _ in range(2)]
    first, second = await asyncio.gather(replicas[0].claim("acme"), replicas[1].claim("acme"))

    assert sorted([first, second])[0] == 0, "one of them sends now"
    assert sorted([first, second])[1] == pytest.approx(0.3, abs=0.02), "the other waits the interval"
    assert await replicas[0].claim("other") == 0, "another instance is not held back"


async def test_a_claim_counts_the_typing_evolution_does_before_sending(
    redis: Redis, redis_prefix: str
) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=300)
    assert await slots.claim("acme", lead_ms=500) == 0  # Evolution sends 500 ms from now
    assert await slots.claim("acme") == pytest.approx(0.8, abs=0.02)


async def test_a_late_sender_pushes_the_next_one_back(redis: Redis, redis_prefix: str) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=300)
    await slots.reserve("acme")
    on_time = await slots.reserve("acme")  # 300 ms from now
    await asyncio.sleep(0.1)
    assert await slots.claim("acme") == 0  # the first one, 100 ms late
    await asyncio.sleep(max(0.0, on_time - time.monotonic()))
    assert await slots.claim("acme") == pytest.approx(0.1, abs=0.03)
