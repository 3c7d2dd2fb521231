"""Helpers to drive and inspect the real RabbitMQ in tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import aio_pika
from faststream.rabbit import RabbitBroker

from papo_common.broker import publish
from papo_common.contracts import Contract
from papo_common.settings import PapoSettings
from papo_common.topology import DEAD_LETTER_EXCHANGE, SERVICE_QUEUES, ServiceQueue, declare_topology
from papo_testing import infra


@contextlib.asynccontextmanager
async def connected_broker(url: str) -> AsyncIterator[RabbitBroker]:
    """A plain publishing broker on `url` with papo's topology declared."""
    from papo_common.broker import make_broker

    broker = make_broker(PapoSettings(rabbitmq_url=url))  # type: ignore[arg-type]
    await broker.connect()
    await declare_topology(broker)
    try:
        yield broker
    finally:
        await broker.stop()


def module_vhost() -> Iterator[str]:
    """A RabbitMQ virtual host for one test module, as its `rabbitmq_url`:
    `rabbitmq_url = pytest.fixture(module_vhost, scope="module", name="rabbitmq_url")`.

    For the modules that run one service whose output is routed to other services' queues, which nothing
    there consumes. Left in the session's vhost (test_llm left 18 replies in `papo.deliver` and
    `papo.persist`, test_transcribe 22 transcripts in `papo.debounce` and `papo.persist`), they were work for
    the next stack that ran there, and an e2e test run after such a module never saw papo settle."""
    with infra.rabbitmq_vhost() as url:
        yield url


async def declare_service_queue(broker: RabbitBroker, queue: ServiceQueue) -> None:
    """Declare one service queue as the topology would: the queue, its retry queues, and its dead-letter queue
    bound to the dead-letter exchange."""
    dead_letter_exchange = await broker.declare_exchange(DEAD_LETTER_EXCHANGE)
    dead_letters = await broker.declare_queue(queue.dead_letter_queue)
    await dead_letters.bind(dead_letter_exchange, routing_key=queue.dead_letter_name)
    await broker.declare_queue(queue.queue)
    for retry_queue in queue.retry_queues:
        await broker.declare_queue(retry_queue)


class Startable(Protocol):
    async def start(self) -> Any: ...

    async def stop(self) -> Any: ...


@contextlib.asynccontextmanager
async def running(app: Startable) -> AsyncIterator[None]:
    """A service's app started (topology declared, subscribers consuming) for the block, stopped after."""
    await app.start()
    try:
        yield
    finally:
        await app.stop()


async def publish_all(url: str, *messages: Contract) -> None:
    async with connected_broker(url) as broker:
        for message in messages:
            await publish(broker, message)


async def take(url: str, queue: str, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Consume (and ack) exactly `count` JSON messages from `queue`, waiting up to `timeout` seconds."""
    connection = await aio_pika.connect(url)
    taken: list[dict[str, Any]] = []
    try:
        channel = await connection.channel()
        declared = await channel.get_queue(queue, ensure=True)
        deadline = asyncio.get_running_loop().time() + timeout
        while len(taken) < count:
            message = await declared.get(fail=False)
            if message is None:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{queue}: got {len(taken)} of {count} messages in {timeout}s")
                await asyncio.sleep(0.05)
                continue
            taken.append(json.loads(message.body))
            await message.ack()
    finally:
        await connection.close()
    return taken


async def depth(url: str, queue: str) -> int:
    """Messages ready in `queue` right now."""
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def depths(url: str) -> dict[str, int]:
    """Ready messages in every papo queue and dead-letter queue."""
    names = [q.name for q in SERVICE_QUEUES] + [q.dead_letter_name for q in SERVICE_QUEUES]
    return {name: await depth(url, name) for name in names}


async def bind_probe(url: str, routing_key: str) -> str:
    """Declare a throwaway quorum queue bound to `routing_key` on papo's exchange; returns its name, so a
    test can see what a service published without stealing messages from the real consumer queues."""
    from papo_common.topology import EXCHANGE

    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        name = f"probe.{routing_key}"
        queue = await channel.declare_queue(name, durable=True)
        await queue.bind(EXCHANGE.name, routing_key=routing_key)
        return name
    finally:
        await connection.close()
