"""An in-process micro-batcher: concurrent handler calls queue their notes, and one worker runs them through
the model together, up to `max_size` notes or `max_wait` seconds after the oldest one arrived.

A GPU decodes eight notes in little more time than one, so batching multiplies throughput; the broker's
prefetch (at least the batch size) is what lets that many handler calls be in flight at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Pending(Generic[T, R]):
    item: T
    arrived: float
    future: asyncio.Future[R] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class MicroBatcher(Generic[T, R]):
    """Feeds `run` (blocking; called in `executor`, one batch at a time) with batches of submitted items."""

    def __init__(
        self,
        run: Callable[[Sequence[T]], list[R]],
        *,
        max_size: int,
        max_wait: float,
        executor: Executor,
    ) -> None:
        self._run = run
        self._max_size = max_size
        self._max_wait = max_wait
        self._executor = executor
        self._pending: list[_Pending[T, R]] = []
        self._wakeup = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Queue one item and wait for its own result (or its own exception)."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._work(), name="micro-batcher")
        pending: _Pending[T, R] = _Pending(item, asyncio.get_running_loop().time())
        self._pending.append(pending)
        self._wakeup.set()
        return await pending.future

    async def close(self) -> None:
        """Stop the worker; items still queued are cancelled, so their handlers fail and are redelivered."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        for pending in self._pending:
            pending.future.cancel()
        self._pending.clear()

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._pending[0].arrived + self._max_wait
            while len(self._pending) < self._max_size and (remaining := deadline - loop.time()) > 0:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
            batch = [pending for pending in self._pending[: self._max_size] if not pending.future.done()]
            del self._pending[: self._max_size]
            if batch:
                await self._run_batch(loop, batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Pending[T, R]]) -> None:
        logger.debug("running a batch", extra={"size": len(batch)})
        try:
            results = await loop.run_in_executor(self._executor, self._run, [p.item for p in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch of {len(batch)} returned {len(results)} results")
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0], error=error)
                return
            # One bad note (or a batch too big for GPU memory) must not fail its neighbours: retry alone.
            logger.warning("batch of %d failed (%r); running its notes one by one", len(batch), error)
            for pending in batch:
                await self._run_batch(loop, [pending])
            return
        for pending, result in zip(batch, results, strict=True):
            _settle(pending, result=result)


def _settle(pending: _Pending[T, R], *, result: R | None = None, error: BaseException | None = None) -> None:
    if pending.future.done():  # the caller went away (cancelled at shutdown)
        return
    if error is not None:
        pending.future.set_exception(error)
    else:
        pending.future.set_result(result)  # type: ignore[arg-type]
