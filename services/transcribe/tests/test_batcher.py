"""The micro-batcher: concurrent callers share forward passes; each gets its own result or error."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from papo_transcribe.batcher import MicroBatcher


class Doubler:
    """Doubles each item; with `gated`, each batch signals `started` and waits for `release` first."""

    def __init__(self, *, gated: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not gated:
            self.release.set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        self.release.wait(10)
        if any(item < 0 for item in items):
            raise ValueError("negative")
        return [item * 2 for item in items]


@pytest.fixture
def executor() -> ThreadPoolExecutor:
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown()


async def test_concurrent_items_share_batches_and_keep_their_own_results(
    executor: ThreadPoolExecutor,
) -> None:
    run = Doubler()
    batcher = MicroBatcher(run, max_size=4, max_wait=0.2, executor=executor)
    results = await asyncio.gather(*(batcher.submit(n) for n in range(6)))
    assert results == [0, 2, 4, 6, 8, 10]
    assert [len(batch) for batch in run.batches] == [4, 2]
    await batcher.close()


async def test_a_lone_item_waits_at_most_max_wait(executor: ThreadPoolExecutor) -> None:
    batcher = MicroBatcher(Doubler(), max_size=8, max_wait=0.1, executor=executor)
    started = time.perf_counter()
    assert await batcher.submit(21) == 42
    assert time.perf_counter() - started < 1.0
    await batcher.close()


async def test_items_queued_during_a_batch_run_next_without_waiting_again(
    executor: ThreadPoolExecutor,
) -> None:
    run = Doubler(gated=True)
    batcher = MicroBatcher(run, max_size=8, max_wait=0.05, executor=executor)
    first = asyncio.create_task(batcher.submit(1))
    await asyncio.to_thread(run.started.wait, 10)  # the first batch is running
    rest = [asyncio.create_task(batcher.submit(n)) for n in (2, 3, 4)]
    await asyncio.sleep(0)  # they are queued
    run.release.set()
    assert await first == 2
    assert await asyncio.gather(*rest) == [4, 6, 8]
    assert run.batches == [[1], [2, 3, 4]]
    await batcher.close()


async def test_one_bad_item_fails_alone(executor: ThreadPoolExecutor) -> None:
    run = Doubler()
    batcher = MicroBatcher(run, max_size=4, max_wait=0.1, executor=executor)
    results = await asyncio.gather(*(batcher.submit(n) for n in (1, -1, 3)), return_exceptions=True)
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)
    assert run.batches[0] == [1, -1, 3]  # tried together first, then one by one
    await batcher.close()


async def test_a_cancelled_caller_is_skipped(executor: ThreadPoolExecutor) -> None:
    run = Doubler()
    batcher = MicroBatcher(run, max_size=4, max_wait=0.2, executor=executor)
    gone = asyncio.create_task(batcher.submit(1))
    kept = asyncio.create_task(batcher.submit(2))
    await asyncio.sleep(0)  # both are queued; the batch waits up to 0.2 s for more
    gone.cancel()
    assert await kept == 4
    assert run.batches == [[2]]
    await batcher.close()


async def test_close_cancels_what_is_still_queued(executor: ThreadPoolExecutor) -> None:
    batcher = MicroBatcher(Doubler(), max_size=4, max_wait=10, executor=executor)
    waiting = asyncio.create_task(batcher.submit(1))
    await asyncio.sleep(0)  # queued
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
