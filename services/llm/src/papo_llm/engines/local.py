"""A Hugging Face chat model run in this process with transformers, on CPU or GPU.

One model per process, loaded in the background at start (`/readyz` says "not ready" until it is). Every
generation runs on one dedicated worker thread, so the event loop keeps serving while the model works and
concurrent handlers queue for the model instead of running two generations on it at once. A completion has
one deadline, `PAPO_LLM_TIMEOUT_SECONDS`, for its wait in that queue and its generation together: the
generation stops itself at the deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from papo_common.errors import DependencyUnavailable
from papo_common.heap import freeze_heap
from papo_common.service import ReadinessCheck
from papo_llm.engines.base import ChatMessage, Completion
from papo_llm.engines.generation import GenerationTimedOut, generate_reply
from papo_llm.engines.model_loader import LoadedModel, default_cache_root, load_model
from papo_llm.engines.model_locator import locate_model
from papo_llm.settings import LlmSettings

logger = logging.getLogger(__name__)

LOCAL_MAX_TOKENS = 160
"""Most new tokens the local model writes, whatever `PAPO_LLM_MAX_TOKENS` says: a WhatsApp answer is short,
a small model rambles past that, and on 2 CPU cores 160 tokens already take about ten seconds."""


class ModelLoading(Exception):
    """The model is not loaded yet."""


class LocalChatEngine:
    """Answers with a local model: its chat template, at most `max_tokens` new tokens, greedy when the
    temperature is 0 and sampled otherwise; token usage is counted with its tokenizer."""

    def __init__(
        self,
        load: Callable[[], LoadedModel],
        *,
        model: str,
        temperature: float,
        max_tokens: int,
        timeout_seconds: float,
    ) -> None:
        self._load = load
        self._model_name = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._timeout = timeout_seconds
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="papo-llm-model")
        self._loading: asyncio.Future[LoadedModel] | None = None

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> LocalChatEngine:
        source = locate_model(settings)
        load = partial(
            load_model,
            source,
            device=settings.llm_device,
            cache_root=settings.llm_local_cache_dir or default_cache_root(),
        )
        return cls(
            load,
            model=source.display_name,
            temperature=settings.llm_temperature,
            max_tokens=min(settings.llm_max_tokens, LOCAL_MAX_TOKENS),
            timeout_seconds=settings.llm_timeout_seconds,
        )

    @property
    def model(self) -> str:
        return self._model_name

    async def start(self) -> None:
        """Start loading the model on the worker thread, and return at once."""
        self._load_once()

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        return {"model": self._check_loaded}

    async def complete(self, messages: list[ChatMessage]) -> Completion:
        """One completion, after the model has loaded; `GenerationTimedOut` past the deadline."""
        loaded = await self._loaded_model()
        deadline = time.monotonic() + self._timeout
        # Cancelling the await while the job is still queued cancels the job; a running one stops at its
        # deadline. Earlier jobs' deadlines come before ours, so the wait is bounded by ours too.
        generate = partial(
            generate_reply,
            loaded,
            messages,
            model_name=self._model_name,
            max_tokens=self._max_tokens,
            temperature=self._temperature,
            deadline=deadline,
            timeout_seconds=self._timeout,
        )
        return await asyncio.get_running_loop().run_in_executor(self._worker, generate)

    async def aclose(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _load_once(self) -> asyncio.Future[LoadedModel]:
        if self._loading is None:
            self._loading = asyncio.get_running_loop().run_in_executor(self._worker, self._timed_load)
        return self._loading

    def _timed_load(self) -> LoadedModel:
        started = time.perf_counter()
        try:
            loaded = self._load()
        except Exception:
            logger.exception("the local model failed to load", extra={"model": self._model_name})
            raise
        freeze_heap()  # what the model brought lives as long as the process: no collection walks it
        logger.info(
            f"local model {self._model_name} loaded on {loaded.device} in {time.perf_counter() - started:.1f}s"
        )
        return loaded

    async def _check_loaded(self) -> None:
        loading = self._loading
        if loading is None or not loading.done():
            raise ModelLoading(f"{self._model_name} is loading")
        loading.result()

    async def _loaded_model(self) -> LoadedModel:
        try:
            # Shielded: one handler giving up must not cancel the load every handler waits for.
            return await asyncio.shield(self._load_once())
        except Exception as error:
            raise DependencyUnavailable(f"the local model failed to load: {error}") from error


__all__ = ["GenerationTimedOut", "LocalChatEngine", "ModelLoading"]
