"""Gathers concurrent writes into one transaction, and releases each caller only once its item is durable.

Handlers run concurrently (up to the broker's prefetch); each hands its item to `Batcher.submit` and waits.
One loop takes up to `max_size` queued items, or whatever arrived within `max_wait` of the first, and hands
them to the writer as one transaction. While it commits, the next batch gathers in the queue.

A batch that fails is not allowed to fail its innocent neighbours: it is retried item by item, so only the
item that cannot be written gets an error. When the dependency itself is down (`DependencyUnavailable`) no
item is to blame: the whole batch is retried with backoff for a while, then every item gets the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from papo_common.errors import DependencyUnavailable
from papo_persist.retry import retry_while_unavailable

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Item_contra = TypeVar("Item_contra", contravariant=True)


class BatchWriter(Protocol[Item_contra]):
    async def write(self, items: Sequence[Item_contra]) -> None:
        """Write every item in one transaction, or none of them (raising)."""


@dataclass
class BatcherStats:
    batches: int = 0
    """Transactions committed, per-item fallbacks included."""
    items: int = 0
    """Items whose write committed."""
    fallbacks: int = 0
    """Batches that failed and were retried item by item."""


class Batcher(Generic[Item]):
    """Collects items from concurrent callers and writes them in batches through one writer."""

    def __init__(
        self,
        writer: BatchWriter[Item],
        *,
        max_size: int,
        max_wait_s: float,
        outage_retry_s: float = 0.0,
    ) -> None:
        self._writer = writer
        self._max_size = max_size
        self._max_wait_s = max_wait_s
        self._outage_retry_s = outage_retry_s
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[None]]] = asyncio.Queue()
        self._loop_task: asyncio.Task[None] | None = None
        self._in_flight: list[tuple[Item, asyncio.Future[None]]] = []
        self.stats = BatcherStats()

    async def start(self) -> None:
        """Start the writing loop (idempotent)."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="persist-batcher")

    async def stop(self) -> None:
        """Stop the loop. Callers still waiting get `DependencyUnavailable`; their messages are not acked."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        stranded = self._in_flight
        while not self._queue.empty():
            stranded.append(self._queue.get_nowait())
        for _, done in stranded:
            _fail(done, DependencyUnavailable("persist is shutting down"))
        self._in_flight = []

    async def submit(self, item: Item) -> None:
        """Queue `item` and return once the transaction holding it has committed; raise its write error."""
        if self._loop_task is None or self._loop_task.done():
            raise DependencyUnavailable("the persist batcher is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, done))
        await done

    async def _run(self) -> None:
        while True:
            self._in_flight = batch = await self._gather()
            try:
                await self._flush(batch)
            except Exception as error:  # a writer bug must not kill the loop: fail this batch only
                logger.exception("persist batch failed unexpectedly")
                for _, done in batch:
                    _fail(done, error)
            self._in_flight = []

    async def _gather(self) -> list[tuple[Item, asyncio.Future[None]]]:
        batch = [await self._queue.get()]
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while len(batch) < self._max_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    batch.append(await self._queue.get())
            except TimeoutError:
                break
        return batch

    async def _flush(self, batch: list[tuple[Item, asyncio.Future[None]]]) -> None:
        items = [item for item, _ in batch]
        try:
            await self._write_riding_out_outage(items)
        except DependencyUnavailable as error:
            for _, done in batch:
                _fail(done, error)
            return
        except Exception as error:
            if len(batch) == 1:
                _fail(batch[0][1], error)
                return
            logger.warning(
                "persist batch failed, retrying item by item",
                extra={"size": len(batch), "error": f"{type(error).__name__}: {error}"[:300]},
            )
            self.stats.fallbacks += 1
            await self._flush_one_by_one(batch)
            return
        self._committed(len(batch))
        for _, done in batch:
            _succeed(done)

    async def _flush_one_by_one(self, batch: list[tuple[Item, asyncio.Future[None]]]) -> None:
        for index, (item, done) in enumerate(batch):
            try:
                await self._write_riding_out_outage([item])
            except DependencyUnavailable as error:
                # the database went away meanwhile: riding out the outage once per item would hold the
                # rest of the batch for that many times as long
                for _, waiting in batch[index:]:
                    _fail(waiting, error)
                return
            except Exception as error:
                _fail(done, error)
            else:
                self._committed(1)
                _succeed(done)

    async def _write_riding_out_outage(self, items: Sequence[Item]) -> None:
        await retry_while_unavailable(lambda: self._writer.write(items), for_s=self._outage_retry_s)

    def _committed(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.items += size
        logger.debug("persist batch committed", extra={"size": size})


def _succeed(done: asyncio.Future[None]) -> None:
    # A caller that was cancelled (its handler timed out at shutdown) is redelivered; the write is idempotent.
    if not done.done():
        done.set_result(None)


def _fail(done: asyncio.Future[None], error: BaseException) -> None:
    if not done.done():
        done.set_exception(error)
