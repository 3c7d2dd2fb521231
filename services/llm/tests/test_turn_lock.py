"""The per-conversation turn lock against a real Redis: exclusive, renewed while held, released by its owner."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from redis.asyncio import Redis

from papo_llm.turn_lock import TurnBusy, TurnLockLost, acquire_turn


async def test_the_lock_is_taken_and_released(redis: Redis, prefix: str) -> None:
    key = f"{prefix}:lock"
    async with acquire_turn(redis, key, lease_seconds=5, wait_seconds=1) as lock:
        assert await redis.exists(key)
        assert 0 < await redis.pttl(key) <= 5000
        await lock.ensure_held()
    assert not await redis.exists(key)


async def test_a_second_turn_waits_for_the_first_without_overlapping(redis: Redis, prefix: str) -> None:
    key = f"{prefix}:lock"
    spans: list[tuple[str, float, float]] = []
    loop = asyncio.get_running_loop()

    async def turn(name: str) -> None:
        async with acquire_turn(redis, key, lease_seconds=5, wait_seconds=5):
            start = loop.time()
            await asyncio.sleep(0.3)
            spans.append((name, start, loop.time()))

    await asyncio.gather(turn("a"), turn("b"), turn("c"))

    spans.sort(key=lambda span: span[1])
    assert all(earlier[2] <= later[1] for earlier, later in itertools.pairwise(spans))


async def test_waiting_longer_than_the_limit_is_busy(redis: Redis, prefix: str) -> None:
    key = f"{prefix}:lock"
    async with acquire_turn(redis, key, lease_seconds=5, wait_seconds=1):
        with pytest.raises(TurnBusy):
            async with acquire_turn(redis, key, lease_seconds=5, wait_seconds=0.3):
                pass


async def test_the_watchdog_renews_the_lease_while_the_turn_runs(redis: Redis, prefix: str) -> None:
    key = f"{prefix}:lock"
    async with acquire_turn(redis, key, lease_seconds=0.3, wait_seconds=1) as lock:
        await asyncio.sleep(1.0)  # three leases
        with pytest.raises(TurnBusy):
            async with acquire_turn(redis, key, lease_seconds=0.3, wait_seconds=0.2):
                pass
        await lock.ensure_held()


async def test_a_holder_whose_lease_lapsed_cannot_release_the_next_holders_lock(
    redis: Redis, prefix: str
) -> None:
    key = f"{prefix}:lock"
    async with acquire_turn(redis, key, lease_seconds=5, wait_seconds=1) as stale:
        await redis.set(key, "someone-else")  # as if the lease lapsed and another replica took the turn
        assert not await stale.renew()
        with pytest.raises(TurnLockLost):
            await stale.ensure_held()
    assert await redis.get(key) == b"someone-else"


async def test_the_lock_is_released_when_the_turn_fails(redis: Redis, prefix: str) -> None:
    key = f"{prefix}:lock"
    with pytest.raises(RuntimeError):
        async with acquire_turn(redis, key, lease_seconds=5, wait_seconds=1):
            raise RuntimeError("the model failed")
    assert not await redis.exists(key)
