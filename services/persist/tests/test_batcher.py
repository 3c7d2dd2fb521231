"""The batcher with a fake writer: how batches form, who is released when, and what a failure costs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from papo_common.errors import DependencyUnavailable, PermanentError
from papo_persist.batcher import Batcher


class FakeWriter:
    """Records each committed batch; fails batches holding a `bad` item, or while `unavailable` is > 0."""

    def __init__(self) -> None:
        self.committed: list[list[str]] = []
        self.attempts = 0
        self.unavailable = 0
        self.gate: asyncio.Event | None = None

    async def write(self, items: Sequence[str]) -> None:
        self.attempts += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.unavailable:
            self.unavailable -= 1
            raise DependencyUnavailable("PostgreSQL unreachable")
        if "bad" in items:
            raise PermanentError("value too long")
        if "bug" in items:
            raise TypeError("a bug in the writer")
        self.committed.append(list(items))


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


async def started(batcher: Batcher[str]) -> Batcher[str]:
    await batcher.start()
    return batcher


@pytest.fixture
async def batcher(writer: FakeWriter) -> AsyncIterator[Batcher[str]]:
    batcher = await started(Batcher(writer, max_size=100, max_wait_s=0.05))
    yield batcher
    await batcher.stop()


async def submit_all(batcher: Batcher[str], items: Sequence[str]) -> list[BaseException | None]:
    return await asyncio.gather(*(batcher.submit(item) for item in items), return_exceptions=True)


async def test_a_batch_never_holds_more_than_max_size(batcher: Batcher[str], writer: FakeWriter) -> None:
    await submit_all(batcher, [f"m{i}" for i in range(250)])

    assert [len(batch) for batch in writer.committed] == [100, 100, 50]
    assert batcher.stats.batches == 3
    assert batcher.stats.items == 250


async def test_a_lone_item_is_written_after_max_wait_and_no_later(
    batcher: Batcher[str], writer: FakeWriter
) -> None:
    loop = asyncio.get_running_loop()
    started_at = loop.time()

    await batcher.submit("alone")

    assert 0.04 <= loop.time() - started_at < 0.5
    assert writer.committed == [["alone"]]


async def test_the_wait_counts_from_the_first_item_of_a_batch(writer: FakeWriter) -> None:
    batcher = await started(Batcher(writer, max_size=100, max_wait_s=0.3))
    try:
        first = asyncio.create_task(batcher.submit("first"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(batcher.submit("second"))
        await asyncio.sleep(0.5)  # past the first item's 300 ms: its batch has been cut
        third = asyncio.create_task(batcher.submit("third"))
        await asyncio.gather(first, second, third)
    finally:
        await batcher.stop()

    assert writer.committed == [["first", "second"], ["third"]]


async def test_each_caller_is_released_only_after_its_batch_commits(
    batcher: Batcher[str], writer: FakeWriter
) -> None:
    writer.gate = asyncio.Event()
    callers = [asyncio.create_task(batcher.submit(f"m{i}")) for i in range(5)]
    await asyncio.sleep(0.2)

    assert not any(caller.done() for caller in callers)
    assert writer.committed == []

    writer.gate.set()
    await asyncio.gather(*callers)
    assert writer.committed == [[f"m{i}" for i in range(5)]]


async def test_a_bad_item_fails_alone_and_its_batch_is_written_item_by_item(
    batcher: Batcher[str], writer: FakeWriter
) -> None:
    outcomes = await submit_all(batcher, ["a", "b", "bad", "c"])

    assert outcomes[:2] == [None, None]
    assert isinstance(outcomes[2], PermanentError)
    assert outcomes[3] is None
    assert writer.committed == [["a"], ["b"], ["c"]]
    assert batcher.stats.fallbacks == 1
    assert batcher.stats.items == 3


async def test_a_writer_bug_fails_its_item_and_the_loop_keeps_running(
    batcher: Batcher[str], writer: FakeWriter
) -> None:
    outcomes = await submit_all(batcher, ["bug"])
    assert isinstance(outcomes[0], TypeError)

    await batcher.submit("after")
    assert writer.committed == [["after"]]


async def test_a_short_outage_is_ridden_out_without_failing_anyone(writer: FakeWriter) -> None:
    batcher = await started(Batcher(writer, max_size=100, max_wait_s=0.01, outage_retry_s=5))
    writer.unavailable = 2
    try:
        outcomes = await submit_all(batcher, ["a", "b", "c"])
    finally:
        await batcher.stop()

    assert outcomes == [None, None, None]
    assert writer.committed == [["a", "b", "c"]]
    assert batcher.stats.fallbacks == 0


async def test_a_long_outage_fails_every_item_without_trying_them_one_by_one(writer: FakeWriter) -> None:
    batcher = await started(Batcher(writer, max_size=100, max_wait_s=0.01, outage_retry_s=0.3))
    writer.unavailable = 1_000
    try:
        outcomes = await submit_all(batcher, ["a", "b", "c"])
    finally:
        await batcher.stop()

    assert all(isinstance(outcome, DependencyUnavailable) for outcome in outcomes)
    assert writer.committed == []
    assert batcher.stats.fallbacks == 0
    assert writer.attempts < 20  # backoff, not a hot loop


async def test_submit_refuses_when_the_batcher_is_not_running(writer: FakeWriter) -> None:
    batcher: Batcher[str] = Batcher(writer, max_size=10, max_wait_s=0.01)

    with pytest.raises(DependencyUnavailable):
        await batcher.submit("early")


async def test_stop_fails_the_callers_still_waiting_so_their_messages_are_redelivered(
    writer: FakeWriter,
) -> None:
    batcher = await started(Batcher(writer, max_size=2, max_wait_s=0.01))
    writer.gate = asyncio.Event()  # the first batch never commits
    callers = [asyncio.create_task(batcher.submit(f"m{i}")) for i in range(4)]
    await asyncio.sleep(0.1)

    await batcher.stop()

    outcomes = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(outcome, DependencyUnavailable) for outcome in outcomes)
    assert writer.committed == []


async def test_an_outage_during_the_item_by_item_retry_fails_the_rest_at_once(writer: FakeWriter) -> None:
    class OutageAfterFirstItem(FakeWriter):
        async def write(self, items: Sequence[str]) -> None:
            if len(items) == 1 and self.committed:
                self.unavailable = 1_000
            await super().write(items)

    writer = OutageAfterFirstItem()
    batcher = await started(Batcher(writer, max_size=100, max_wait_s=0.01, outage_retry_s=0.2))
    try:
        outcomes = await submit_all(batcher, ["a", "bad", "c", "d"])
    finally:
        await batcher.stop()

    assert outcomes[0] is None
    assert all(isinstance(outcome, DependencyUnavailable) for outcome in outcomes[1:])
    assert writer.committed == [["a"]]
