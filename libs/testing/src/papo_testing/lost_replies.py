"""A TCP proxy in front of Redis that loses one answer: the command reaches Redis and runs, then the client's
connection breaks before the answer comes back. redis-py retries such a command on a new connection, not
knowing that it ran; this is how a test checks that what papo sends Redis is safe to repeat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit


class LostReplyProxy:
    """Forwards every connection to Redis; the first command whose bytes contain `marker` (a script's SHA,
    a key) runs on Redis, and its answer is dropped with the connection."""

    def __init__(self, redis_url: str, marker: bytes) -> None:
        target = urlsplit(redis_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 6379)
        self._template = target
        self._marker = marker
        self._server: asyncio.Server | None = None
        self.lost = asyncio.Event()
        """Set once an answer was lost."""

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return urlunsplit(self._template._replace(netloc=f"127.0.0.1:{port}"))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(65536):
                writer.write(chunk)
                await writer.drain()
        writer.close()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        redis_reader, redis_writer = await asyncio.open_connection(*self._target)
        answers = asyncio.create_task(self._pipe(redis_reader, client_writer))
        try:
            while chunk := await client_reader.read(65536):
                if not self.lost.is_set() and self._marker in chunk:
                    self.lost.set()
                    answers.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await answers
                    redis_writer.write(chunk)
                    await redis_writer.drain()
                    await redis_reader.read(65536)  # Redis ran it and answered: the answer goes nowhere
                    break
                redis_writer.write(chunk)
                await redis_writer.drain()
        except ConnectionError:
            pass
        finally:
            answers.cancel()
            client_writer.close()
            redis_writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LostReplyProxy]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        try:
            yield self
        finally:
            self._server.close()
            await self._server.wait_closed()
