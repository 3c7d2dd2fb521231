"""The message-by-message consumer on the real RabbitMQ: redelivery through the retry queues, and consuming
again after the broker dropped the connection."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import aio_pika.exceptions
import pytest
from faststream.rabbit import Channel, RabbitBroker
from pydantic import BaseModel

from papo_common.consuming import MessageConsumer
from papo_common.errors import DependencyUnavailable
from papo_common.topology import EXCHANGE, ServiceQueue
from papo_testing import infra
from papo_testing.chaos import drop_broker_connections
from papo_testing.rabbit import declare_service_queue

pytestmark = pytest.mark.integration


class Order(BaseModel):
    n: int


@asynccontextmanager
async def declared(url: str, queue: ServiceQueue) -> AsyncIterator[RabbitBroker]:
    """A broker that declared `queue`, its retry queues and its dead-letter queue, for publishing to it."""
    broker = RabbitBroker(url, default_channel=Channel(publisher_confirms=True))
    async with broker:
        await broker.connect()
        await declare_service_queue(broker, queue)
        yield broker


def consumer_of(
    url: str, queue: ServiceQueue, handled: asyncio.Queue[int], failures: int = 0
) -> MessageConsumer[Order]:
    left = failures

    async def handle(order: Order) -> None:
        nonlocal left
        await handled.put(order.n)
        if left:
            left -= 1
            raise DependencyUnavailable("the dependency is down")

    return MessageConsumer(
        url, queue, handle, contract=Order, prefetch=4, redelivery_horizon_seconds=60, app_name="papo-test"
    )


async def test_an_outage_is_redelivered_through_the_retry_queues_without_burning_the_delivery_limit(
    rabbitmq_url: str,
) -> None:
    # A delivery limit of 1 would dead-letter the first requeue: parking in a retry queue must not count.
    queue = ServiceQueue(
        f"consuming-{uuid.uuid4().hex[:8]}", binds=(), delivery_limit=1, retry_delays_seconds=(0.05, 0.1)
    )
    handled: asyncio.Queue[int] = asyncio.Queue()
    async with declared(rabbitmq_url, queue) as broker:
        consumer = consumer_of(rabbitmq_url, queue, handled, failures=4)
        await consumer.start()
        try:
            await broker.publish({"n": 1}, queue=queue.name, persist=True)
            attempts = [await asyncio.wait_for(handled.get(), 10) for _ in range(5)]
        finally:
            await consumer.stop()
        assert attempts == [1] * 5
        main = await broker.declare_queue(queue.queue)
        assert await main.get(fail=False) is None, "acked once handled"
        dead = await broker.declare_queue(queue.dead_letter_queue)
        assert await dead.get(fail=False) is None


async def test_a_body_that_is_no_contract_lands_in_the_dead_letter_queue(rabbitmq_url: str) -> None:
    queue = ServiceQueue(f"consuming-{uuid.uuid4().hex[:8]}", binds=())
    handled: asyncio.Queue[int] = asyncio.Queue()
    async with declared(rabbitmq_url, queue) as broker:
        consumer = consumer_of(rabbitmq_url, queue, handled)
        await consumer.start()
        try:
            await broker.publish({"n": "many"}, queue=queue.name, persist=True)
            await broker.publish({"n": 2}, queue=queue.name, persist=True)
            assert await asyncio.wait_for(handled.get(), 10) == 2
        finally:
            await consumer.stop()
        dead = await broker.declare_queue(queue.dead_letter_queue)
        async with dead.iterator() as parked:  # quorum queues dead-letter asynchronously: wait for it
            message = await asyncio.wait_for(anext(parked), 10)
        assert message.body == b'{"n":"many"}'


async def test_after_rabbitmq_drops_its_connection_the_consumer_consumes_again() -> None:
    """Deliveries come from the channel under aio-pika's robust one: once the connection is back, the reopened
    channel must be consumed again, or the queue would fill while the service looks healthy."""
    queue = ServiceQueue(f"consuming-{uuid.uuid4().hex[:8]}", binds=())
    handled: asyncio.Queue[int] = asyncio.Queue()
    with infra.rabbitmq_vhost() as own_url:  # closing connections must not touch other tests' vhost
        consumer = consumer_of(own_url, queue, handled)
        async with declared(own_url, queue) as broker:
            await consumer.start()
            try:
                await broker.publish({"n": 1}, queue=queue.name, persist=True)
                assert await asyncio.wait_for(handled.get(), 10) == 1
            finally:
                drop_broker_connections(own_url)
        try:
            async with declared(own_url, queue) as broker:
                await broker.publish({"n": 2}, queue=queue.name, persist=True)
                assert await asyncio.wait_for(handled.get(), 30) == 2
        finally:
            await consumer.stop()


async def test_after_its_queue_was_deleted_the_consumer_declares_it_again_and_consumes() -> None:
    """RabbitMQ cancels the consumers of a deleted queue (`basic.cancel`): without declaring the queue again
    and consuming it, the service would take nothing more while it looks healthy."""
    queue = ServiceQueue(f"consuming-{uuid.uuid4().hex[:8]}", binds=("cancel.test",))
    handled: asyncio.Queue[int] = asyncio.Queue()
    with infra.rabbitmq_vhost() as own_url:
        consumer = consumer_of(own_url, queue, handled)
        async with declared(own_url, queue) as broker:
            await consumer.start()
            try:
                await broker.publish({"n": 1}, queue=queue.name, persist=True)
                assert await asyncio.wait_for(handled.get(), 10) == 1
                deleted = await broker.declare_queue(queue.queue)
                await deleted.delete(if_unused=False, if_empty=False)
                await asyncio.wait_for(consumed_again(own_url, queue.name), 30)
                # declared as the topology has it: bound again, so a publish through the exchange arrives
                await broker.publish({"n": 2}, exchange=EXCHANGE, routing_key="cancel.test", persist=True)
                assert await asyncio.wait_for(handled.get(), 10) == 2
            finally:
                await consumer.stop()


async def consumed_again(url: str, name: str) -> None:
    """Return once the queue `name` exists and has a consumer (probing it passively, on a channel each time:
    a passive declare of a missing queue closes its channel)."""
    connection = await aio_pika.connect(url)
    try:
        while True:
            channel = await connection.channel()
            try:
                declared = await channel.declare_queue(name, passive=True)
                if declared.declaration_result.consumer_count:
                    return
            except aio_pika.exceptions.ChannelNotFoundEntity:
                pass
            finally:
                if not channel.is_closed:
                    await channel.close()
            await asyncio.sleep(0.05)  # polling RabbitMQ's state, not synchronising with the consumer
    finally:
        await connection.close()
