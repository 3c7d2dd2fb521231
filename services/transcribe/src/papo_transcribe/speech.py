"""The loaded model of this process: loaded once, in the background, and fed through the micro-batcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from papo_common.heap import freeze_heap
from papo_transcribe.batcher import MicroBatcher
from papo_transcribe.engines import Engine, EngineResult

logger = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """The model is still loading, or failed to load. Retrying later (or on another replica) can help."""


class SpeechModel:
    """Owns the engine and the one thread that runs it (models are not thread-safe; a GPU runs one batch
    at a time anyway)."""

    def __init__(self, load: Callable[[], Engine], *, name: str, batch_size: int, batch_wait: float) -> None:
        self.name = name
        self._load = load
        self._engine: Engine | None = None
        self._error: BaseException | None = None
        self._loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        self._batcher: MicroBatcher[np.ndarray, EngineResult] = MicroBatcher(
            self._run, max_size=batch_size, max_wait=batch_wait, executor=self._executor
        )

    @property
    def language(self) -> str | None:
        return self._engine.language if self._engine is not None else None

    def start_loading(self) -> None:
        """Load in the background, so health and readiness answer while the weights are read."""
        if self._task is None:
            self._task = asyncio.create_task(self._load_in_thread(), name="load-speech-model")

    async def _load_in_thread(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._engine = await loop.run_in_executor(self._executor, self._load_and_warm_up)
            freeze_heap()  # what the model brought lives as long as the process: no collection walks it
            logger.info("speech model ready", extra={"engine": self.name, "language": self.language})
        except Exception as error:
            self._error = error
            logger.exception("speech model failed to load", extra={"engine": self.name})
        finally:
            self._loaded.set()

    def _load_and_warm_up(self) -> Engine:
        engine = self._load()
        engine.warm_up()
        return engine

    async def ready(self) -> None:
        """Readiness check: raises until the model has loaded."""
        if self._error is not None:
            raise ModelUnavailable(f"the speech model failed to load: {self._error!r}")
        if self._engine is None:
            raise ModelUnavailable("the speech model is loading")

    async def transcribe(self, samples: np.ndarray) -> EngineResult:
        """Transcribe one note, batched with whatever else is in flight; waits for the model to load."""
        self.start_loading()
        await self._loaded.wait()
        await self.ready()
        return await self._batcher.submit(samples)

    def _run(self, audios: Sequence[np.ndarray]) -> list[EngineResult]:
        assert self._engine is not None
        return self._engine.transcribe_batch(audios)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._batcher.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
