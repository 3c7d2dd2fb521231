"""The admin API's own RabbitMQ connection.

Admin work does not use the webhook broker's connection: it needs `basic.get`, `nack` and byte-exact
republishing of someone else's message, which FastStream's publish API does not offer (it would re-encode
the body and set its own properties), and a channel error from admin work must never close the channel
webhooks are confirmed on. The connection opens on first use, so ingest starts and serves webhooks without
it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection

_CONNECT_TIMEOUT_SECONDS = 5.0


class DeadLetterLink:
    """A RabbitMQ connection for admin work, opened on first use and reconnected by aio-pika after that."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._connection: AbstractRobustConnection | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def channel(self) -> AsyncIterator[AbstractChannel]:
        """A fresh channel with publisher confirms and returns-as-errors; closing it (also on failure)
        requeues whatever it still holds unacknowledged."""
        connection = await self._connect()
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        try:
            yield channel
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _connect(self) -> AbstractRobustConnection:
        async with self._lock:
            if self._connection is None or self._connection.is_closed:
                self._connection = await aio_pika.connect_robust(
                    self._url,
                    timeout=_CONNECT_TIMEOUT_SECONDS,
                    client_properties={"connection_name": "papo-ingest-admin"},
                )
            return self._connection

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
