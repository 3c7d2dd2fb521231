"""Reads what papo recorded about each active chat from ingest's admin API (PostgreSQL rows written by
persist: transcripts of voice notes, the model's answers with their times), for the timeline."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import httpx

from papo_simulator.world import Chat, World

logger = logging.getLogger(__name__)

ACTIVE_SECONDS = 300.0
"""How long after its last message a chat's history keeps being refreshed."""


class HistoryReader:
    def __init__(self, world: World, admin_url: str, admin_token: str | None, *, every: float = 1.0) -> None:
        self._world = world
        self._admin_url = admin_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {admin_token}"} if admin_token else {}
        self._every = every
        self._client = httpx.AsyncClient(timeout=5.0)
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._headers)

    async def start(self) -> None:
        if self.enabled:
            self._task = asyncio.create_task(self._run(), name="simulator-history")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def refresh(self, chat: Chat) -> None:
        conversation = f"{self._admin_url}/admin/instances/{chat.instance}/conversations/{chat.contact.jid}"
        status = await self._client.get(f"{conversation}/status", headers=self._headers)
        status.raise_for_status()
        self._world.set_paused(chat, status.json()["reason"] if status.json()["paused"] else None)
        response = await self._client.get(
            f"{conversation}/messages", params={"limit": 100}, headers=self._headers
        )
        if response.status_code == 404:  # nothing persisted yet
            return
        response.raise_for_status()
        rows: list[dict[str, Any]] = response.json()["messages"]
        self._world.set_history(chat, list(reversed(rows)))

    async def _run(self) -> None:
        while True:
            now = time.time()
            for chat in self._world.chats():
                if chat.messages and now - chat.messages[-1].at < ACTIVE_SECONDS:
                    try:
                        await self.refresh(chat)
                    except (httpx.HTTPError, ValueError, KeyError) as error:
                        logger.debug("history not read", extra={"error": type(error).__name__})
            await asyncio.sleep(self._every)
