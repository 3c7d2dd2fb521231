"""Keeping ingest's broker connected without making RabbitMQ a start-up precondition.

If RabbitMQ is down when ingest starts, ingest still starts and answers webhooks 503 (Evolution retries)
while it keeps trying to connect in the background. Once connected, aio-pika's robust connection
reconnects by itself; a publish during an outage fails fast and is answered 503 too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from faststream.rabbit import RabbitBroker

from papo_common.topology import declare_topology

logger = logging.getLogger(__name__)

_CONNECT_TIMEOUT_SECONDS = 10.0


class BrokerLink:
    """The broker plus whether it has been connected and the topology declared."""

    def __init__(self, broker: RabbitBroker, *, max_retry_seconds: float = 30.0) -> None:
        self.broker = broker
        self._max_retry = max_retry_seconds
        self._connected = asyncio.Event()
        self._retrying: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Connect and declare the topology now, or keep trying in the background."""
        if not await self._attempt():
            self._retrying = asyncio.create_task(self._keep_trying(), name="papo-ingest-broker-connect")

    async def wait_connected(self, seconds: float) -> bool:
        """Wait up to `seconds` for the connection (for tests and the benchmark)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._connected.wait()
        return self.connected

    async def stop(self) -> None:
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        await self.broker.stop()

    async def _attempt(self) -> bool:
        try:
            await asyncio.wait_for(self._connect(), _CONNECT_TIMEOUT_SECONDS)
        except Exception as error:  # every failure means "not yet"; the loop retries
            logger.warning(
                "RabbitMQ not reachable yet", extra={"error": f"{type(error).__name__}: {error}"[:300]}
            )
            return False
        self._connected.set()
        logger.info("connected to RabbitMQ and declared the topology")
        return True

    async def _connect(self) -> None:
        await self.broker.connect()
        await declare_topology(self.broker)

    async def _keep_trying(self) -> None:
        delay = 1.0
        while True:
            await asyncio.sleep(delay)
            if await self._attempt():
                return
            delay = min(delay * 2, self._max_retry)
