"""Rows per second persist writes: batched (the service as shipped) against one transaction per message (the
peer: the same statements, run by a handler for each message as it arrives, as concurrent as the prefetch and
the connection pool allow). Both run in the same process against the same RabbitMQ and PostgreSQL.

Each run fills `papo.persist` first, then starts the consumer and times it from start until every row is in
PostgreSQL. Needs the local RabbitMQ and PostgreSQL (see libs/testing). Run from the repository root:

    .venv/bin/python bench/persist_throughput.py --messages 5000 --conversations 100
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from papo_common.broker import make_broker, publish, subscribe
from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.db.engine import make_engine
from papo_common.metrics import REGISTRY
from papo_common.service import consumer_app, make_service_broker
from papo_common.topology import PERSIST, declare_topology
from papo_persist.app import create_app
from papo_persist.batcher import Batcher
from papo_persist.handlers import register_handlers
from papo_persist.settings import PersistSettings
from papo_persist.writer import PostgresWriter
from papo_testing import infra

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def contracts(instance: str, count: int, conversations: int) -> list[InboundMessage]:
    return [
        InboundMessage(
            conversation=ConversationRef(
                instance=instance, user_id=f"55119{i % conversations:08d}@s.whatsapp.net"
            ),
            message_id=f"M{i}",
            chat_id=f"55119{i % conversations:08d}@s.whatsapp.net",
            push_name="Ana",
            kind="text",
            text=f"mensagem número {i}",
            sent_at=NOW + timedelta(milliseconds=i),
            received_at=NOW + timedelta(milliseconds=i),
        )
        for i in range(count)
    ]


Progress = Callable[[], Awaitable[int]]
"""How many of the run's rows are written so far."""
Consumer = Callable[[PersistSettings, Progress], AbstractAsyncContextManager[Progress]]


@asynccontextmanager
async def one_transaction_per_message(settings: PersistSettings, rows: Progress) -> AsyncIterator[Progress]:
    """The peer: persist's own writer called once per message, straight from the handler, on a broker with
    the same middlewares, prefetch and connection pool as the service."""
    broker = make_service_broker("persist", settings)
    engine = make_engine(settings.database_url.get_secret_value(), pool_size=settings.database_pool_size)
    writer = PostgresWriter(engine, timeout_s=settings.persist_write_timeout_s)

    @subscribe(broker, PERSIST)
    async def persist(message: InboundMessage) -> None:
        await writer.write([message])

    async with consumer_app(broker):
        yield rows
    await engine.dispose()


@asynccontextmanager
async def batched(settings: PersistSettings, rows: Progress) -> AsyncIterator[Progress]:
    """The service as shipped."""
    async with create_app(settings):
        yield rows


class DiscardingWriter:
    def __init__(self) -> None:
        self.items = 0

    async def write(self, items: Sequence[Any]) -> None:
        self.items += len(items)


@asynccontextmanager
async def no_database(settings: PersistSettings, rows: Progress) -> AsyncIterator[Progress]:
    """The service's consuming path with a writer that discards: the ceiling the broker side sets."""
    writer = DiscardingWriter()
    batcher: Batcher[Any] = Batcher(
        writer, max_size=settings.persist_batch_size, max_wait_s=settings.persist_batch_wait_ms / 1000
    )
    broker = make_service_broker("persist", settings)
    register_handlers(broker, batcher)
    await batcher.start()

    async def discarded() -> int:
        return writer.items

    async with consumer_app(broker):
        yield discarded
    await batcher.stop()


async def fill_queue(settings: PersistSettings, messages: list[InboundMessage]) -> None:
    broker = make_broker(settings)
    async with broker:
        await declare_topology(broker)
        for start in range(0, len(messages), 500):
            await asyncio.gather(*(publish(broker, m) for m in messages[start : start + 500]))


async def measure(
    name: str, consumer: Consumer, settings: PersistSettings, count: int, conversations: int
) -> dict[str, Any]:
    instance = f"bench-{uuid.uuid4().hex[:8]}"
    await fill_queue(settings, contracts(instance, count, conversations))
    db = await asyncpg.connect(settings.database_url.get_secret_value().replace("+asyncpg", ""))

    async def rows_visible() -> int:
        # a row counts once another connection can see it
        return int(await db.fetchval("SELECT count(*) FROM messages WHERE instance = $1", instance))

    try:
        deliveries_before = deliveries()
        started = time.perf_counter()
        async with consumer(settings, rows_visible) as progress:
            while await progress() < count:  # noqa: ASYNC110 - polling PostgreSQL is the measurement
                await asyncio.sleep(0.02)
            elapsed = time.perf_counter() - started
        transactions = await db.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM messages WHERE instance = $1", instance
        )
    finally:
        await db.close()
    return {
        "consumer": name,
        "seconds": elapsed,
        "rows_per_s": count / elapsed,
        "transactions": transactions,
        "deliveries": int(deliveries() - deliveries_before),
    }


def deliveries() -> float:
    """Messages handed to a handler so far (FastStream's own counter): above the message count means
    redeliveries, here of writes that gave up waiting for a pooled connection."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        if family.name == "faststream_received_messages"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


CONSUMERS: dict[str, Consumer] = {
    "one-per-message": one_transaction_per_message,
    "batched": batched,
    "no database": no_database,
}


async def writer_alone(settings: PersistSettings, count: int, conversations: int) -> dict[str, float]:
    """The writer without the broker: what PostgreSQL and SQLAlchemy allow, in batches and row by row."""
    engine = make_engine(settings.database_url.get_secret_value())
    writer = PostgresWriter(engine, timeout_s=30)
    figures = {}
    for name, size in (("batched", settings.persist_batch_size), ("one-per-message", 1)):
        messages = contracts(f"alone-{uuid.uuid4().hex[:8]}", count, conversations)
        started = time.perf_counter()
        for start in range(0, count, size):
            await writer.write(messages[start : start + size])
        figures[name] = count / (time.perf_counter() - started)
    await engine.dispose()
    return figures


async def run_rounds(
    settings: PersistSettings, count: int, conversations: int, rounds: int
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    results: list[dict[str, Any]] = []
    for _ in range(rounds):  # alternate, so neither side always runs on a warmer database
        for name, consumer in CONSUMERS.items():
            results.append(await measure(name, consumer, settings, count, conversations))
    return results, await writer_alone(settings, min(count, 2000), conversations)


def main(count: int, conversations: int, rounds: int) -> None:
    with infra.rabbitmq_vhost() as rabbitmq_url, infra.postgres_database() as database_url:
        settings = PersistSettings(rabbitmq_url=rabbitmq_url, database_url=database_url, log_level="WARNING")
        results, alone = asyncio.run(run_rounds(settings, count, conversations, rounds))
    print(
        f"{count} messages over {conversations} conversations, prefetch {settings.prefetch}, "
        f"batch {settings.persist_batch_size} / {settings.persist_batch_wait_ms} ms, "
        f"pool {settings.database_pool_size}+{settings.database_pool_size}, {os.cpu_count()} CPUs"
    )
    print(f"{'consumer':<18}{'seconds':>9}{'rows/s':>10}{'transactions':>14}{'deliveries':>12}")
    for r in results:
        transactions = r["transactions"] if r["consumer"] != "no database" else "-"
        print(
            f"{r['consumer']:<18}{r['seconds']:>9.2f}{r['rows_per_s']:>10.0f}{transactions:>14}"
            f"{r['deliveries']:>12}"
        )
    best = {name: max(r["rows_per_s"] for r in results if r["consumer"] == name) for name in CONSUMERS}
    print(f"batched / one-per-message, best of {rounds}: {best['batched'] / best['one-per-message']:.1f}x")
    print(
        f"writer alone, no broker: batched {alone['batched']:.0f} rows/s, "
        f"one-per-message {alone['one-per-message']:.0f} rows/s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    logging.disable(logging.CRITICAL)  # a benchmark's output is its figures
    main(arguments.messages, arguments.conversations, arguments.rounds)
