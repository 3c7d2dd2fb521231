"""`Periodic(delay=...)`: the loop waits as long as the tick's owner says, and backs off from the interval."""

from __future__ import annotations

import asyncio

import pytest

from papo_common import periodic
from papo_common.periodic import Periodic


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The delays the loop asked for; each wait only yields, so no test waits for real."""
    asked: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(periodic.asyncio, "sleep", sleep)
    return asked


async def test_the_owner_sets_the_wait_after_a_tick(waits: list[float]) -> None:
    done = asyncio.Event()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 4:
            done.set()

    loop = Periodic("test", tick, interval=0.2, delay=lambda: 0.0 if ticks < 3 else 0.05)
    await loop.start()
    await done.wait()
    await loop.stop()
    assert waits[:3] == [0.0, 0.0, 0.05]


async def test_failures_back_off_from_the_interval_even_after_no_wait(waits: list[float]) -> None:
    done = asyncio.Event()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        ticks += 1
        if ticks == 4:
            done.set()
        if ticks > 1:
            raise ConnectionError("Redis went away")

    loop = Periodic("test", tick, interval=0.2, max_backoff=1.0, delay=lambda: 0.0)
    await loop.start()
    await done.wait()
    await loop.stop()
    assert waits[:3] == [0.0, 0.4, 0.8]
