from __future__ import annotations

import asyncio

from papo_common.periodic import Periodic


async def test_ticks_until_stopped_and_survives_failures() -> None:
    calls: list[int] = []

    async def tick() -> None:
        calls.append(len(calls))
        if len(calls) == 2:
            raise ConnectionError("Redis went away")

    loop = Periodic("test-loop", tick, interval=0.01, max_backoff=0.05)
    await loop.start()
    await asyncio.sleep(0.2)
    await loop.stop()
    stopped_at = len(calls)
    assert stopped_at > 3, "a failing tick neither kills the loop nor stops later ticks"
    await asyncio.sleep(0.05)
    assert len(calls) == stopped_at
