"""Posting Evolution's webhooks to papo, one at a time and in order, retried while papo is unreachable or
answers 5xx/429 (Evolution retries failed webhooks too)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_exponential

from papo_simulator.world import Chat, World

logger = logging.getLogger(__name__)

TOKEN_HEADER = "x-papo-token"  # noqa: S105 - a header name, not a secret


class _Retryable(Exception):
    pass


@dataclass(frozen=True)
class Outgoing:
    chat: Chat
    body: dict[str, Any]
    message_id: str | None


def _retryable(error: BaseException) -> bool:
    return isinstance(error, _Retryable | httpx.TransportError)


class WebhookPoster:
    """Posts each queued webhook with the configured auth header and records how papo answered."""

    def __init__(
        self, world: World, url: str, token: str | None, *, give_up_after_seconds: float = 120.0
    ) -> None:
        self._world = world
        self._url = url
        self._headers = {TOKEN_HEADER: token} if token else {}
        self._give_up_after = give_up_after_seconds
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue()
        self._client = httpx.AsyncClient(timeout=30.0)
        self._worker: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self._url

    def post(self, chat: Chat, body: dict[str, Any], message_id: str | None = None) -> None:
        self._queue.put_nowait(Outgoing(chat, body, message_id))

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._run(), name="simulator-webhooks")

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        await self._client.aclose()

    async def _run(self) -> None:
        while True:
            outgoing = await self._queue.get()
            try:
                await self._deliver(outgoing)
            except Exception as error:
                logger.warning("webhook not delivered", extra={"event": outgoing.body.get("event")})
                self._world.observe(
                    outgoing.chat, "webhook failed", type(error).__name__, message_id=outgoing.message_id
                )
                if outgoing.message_id:
                    self._world.set_status(outgoing.chat, outgoing.message_id, "failed")

    async def _deliver(self, outgoing: Outgoing) -> None:
        event = outgoing.body["event"]
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(_retryable),
            wait=wait_exponential(multiplier=0.2, max=5),
            stop=stop_after_delay(self._give_up_after),
            reraise=True,
        ):
            with attempt:
                started = time.perf_counter()
                response = await self._client.post(self._url, json=outgoing.body, headers=self._headers)
                if response.status_code >= 500 or response.status_code == 429:
                    raise _Retryable(str(response.status_code))
        elapsed_ms = (time.perf_counter() - started) * 1000
        detail = f"{event} → {response.status_code} in {elapsed_ms:.0f} ms"
        self._world.observe(outgoing.chat, "webhook", detail, message_id=outgoing.message_id)
        if outgoing.message_id and response.status_code < 300:
            self._world.set_status(outgoing.chat, outgoing.message_id, "delivered")
        elif outgoing.message_id:
            self._world.set_status(outgoing.chat, outgoing.message_id, "failed")
