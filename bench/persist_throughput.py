"""Rows per second persist writes, against a raw consumer doing the same work, measured in the same run.

- papo: the persist service as shipped (`create_app`), consuming `papo.persist`.
- raw: a minimal aio-pika consumer with the same prefetch, the same batching (size and wait) and one
  `basic.ack(multiple=True)` per batch, writing each batch with plain asyncpg: COPY into a temporary table,
  then `INSERT ... ON CONFLICT DO NOTHING`. No contract validation, no conversation upsert, no metrics.

Each round fills `papo.persist` with the same number of inbound messages, then times a consumer from its
start until every row is visible to another connection; papo and raw alternate round by round. Needs the
local RabbitMQ and PostgreSQL (see libs/testing). From the repository root:

    .venv/bin/python bench/persist_throughput.py            # 10,000 rows, 3 rounds
    .venv/bin/python bench/persist_throughput.py --quick    # 2,000 rows, 1 round (what `make bench` runs)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg

from papo_common.broker import make_broker, publish
from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.db import asyncpg_dsn
from papo_common.topology import PERSIST, declare_topology
from papo_persist.app import create_app
from papo_persist.settings import PersistSettings
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


Consumer = Callable[[PersistSettings], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def papo(settings: PersistSettings) -> AsyncIterator[None]:
    async with create_app(settings):
        yield


RAW_STAGING = """
CREATE TEMPORARY TABLE IF NOT EXISTS raw_messages (
    conversation_id bigint, instance text, external_id text, role text, kind text, text text,
    sent_at timestamptz, received_at timestamptz
) ON COMMIT DELETE ROWS
"""
RAW_INSERT = """
INSERT INTO messages (conversation_id, instance, external_id, role, kind, text, sent_at, received_at)
SELECT conversation_id, instance, external_id, role, kind, text, sent_at, received_at FROM raw_messages
ORDER BY instance, external_id ON CONFLICT (instance, external_id) DO NOTHING
"""


@asynccontextmanager
async def raw(settings: PersistSettings) -> AsyncIterator[None]:
    """The peer: aio-pika and asyncpg, nothing else. Conversations are created once up front."""
    dsn = asyncpg_dsn(settings.database_url.get_secret_value())
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, init=lambda c: c.execute(RAW_STAGING))
    conversation_ids: dict[tuple[str, str], int] = {}
    connection = await aio_pika.connect_robust(settings.rabbitmq_url.get_secret_value())
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=settings.prefetch)
    queue = await channel.declare_queue(PERSIST.name, passive=True)
    inbox: asyncio.Queue[Any] = asyncio.Queue()

    async def conversation(instance: str, user_id: str) -> int:
        key = (instance, user_id)
        if key not in conversation_ids:
            conversation_ids[key] = await pool.fetchval(
                "INSERT INTO conversations (instance, user_id, chat_id) VALUES ($1, $2, $2) "
                "ON CONFLICT (instance, user_id) DO UPDATE SET chat_id = EXCLUDED.chat_id RETURNING id",
                instance,
                user_id,
            )
        return conversation_ids[key]

    async def batches() -> None:
        size, wait = settings.persist_batch_size, settings.persist_batch_wait_ms / 1000
        while True:
            batch = [await inbox.get()]
            deadline = time.monotonic() + wait
            while len(batch) < size and (remaining := deadline - time.monotonic()) > 0:
                try:
                    batch.append(await asyncio.wait_for(inbox.get(), remaining))
                except TimeoutError:
                    break
            records = []
            for message in batch:
                body = json.loads(message.body)
                ref = body["conversation"]
                records.append((
                    await conversation(ref["instance"], ref["user_id"]), ref["instance"], body["message_id"],
                    "user", body["kind"], body["text"], datetime.fromisoformat(body["sent_at"]),
                    datetime.fromisoformat(body["received_at"]),
                ))  # fmt: skip
            async with pool.acquire() as db, db.transaction():
                await db.copy_records_to_table("raw_messages", records=records)
                await db.execute(RAW_INSERT)
            await batch[-1].ack(multiple=True)

    writer = asyncio.create_task(batches())

    async def received(message: Any) -> None:
        inbox.put_nowait(message)

    tag = await queue.consume(received)
    try:
        yield
    finally:
        await queue.cancel(tag)
        writer.cancel()
        await connection.close()
        await pool.close()


CONSUMERS: dict[str, Consumer] = {"papo": papo, "raw": raw}


async def fill_queue(settings: PersistSettings, messages: list[InboundMessage]) -> None:
    broker = make_broker(settings)
    async with broker:
        await declare_topology(broker)
        for start in range(0, len(messages), 500):
            await asyncio.gather(*(publish(broker, m) for m in messages[start : start + 500]))


async def measure(
    name: str, settings: PersistSettings, count: int, conversations: int
) -> tuple[float, float]:
    """Rows per second, and this process's CPU microseconds per row (which a loaded machine disturbs less)."""
    instance = f"bench-{uuid.uuid4().hex[:8]}"
    await fill_queue(settings, contracts(instance, count, conversations))
    dsn = asyncpg_dsn(settings.database_url.get_secret_value())
    db = await asyncpg.connect(dsn)
    last = f"M{count - 1}"
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        async with CONSUMERS[name](settings):
            # A row counts once another connection can see it. Both consumers write one batch at a time in
            # queue order, so the last message is looked up (one index probe), and the count is checked
            # once it is there: counting every 10 ms would cost PostgreSQL more CPU than the inserts do.
            while True:
                if await db.fetchval(
                    "SELECT 1 FROM messages WHERE instance = $1 AND external_id = $2", instance, last
                ) and (
                    await db.fetchval("SELECT count(*) FROM messages WHERE instance = $1", instance) >= count
                ):
                    break
                await asyncio.sleep(0.01)  # polling PostgreSQL is the measurement
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await db.close()
    return count / elapsed, 1e6 * cpu / count


async def run_rounds(
    settings: PersistSettings, count: int, conversations: int, rounds: int
) -> dict[str, list[tuple[float, float]]]:
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in CONSUMERS}
    for round_ in range(rounds):  # alternate, so neither side always runs on a warmer database
        order = list(CONSUMERS) if round_ % 2 == 0 else list(reversed(CONSUMERS))
        for name in order:
            figures[name].append(await measure(name, settings, count, conversations))
    return figures


def main(count: int, conversations: int, rounds: int) -> None:
    with infra.rabbitmq_vhost() as rabbitmq_url, infra.postgres_database() as database_url:
        settings = PersistSettings(rabbitmq_url=rabbitmq_url, database_url=database_url, log_level="WARNING")
        figures = asyncio.run(run_rounds(settings, count, conversations, rounds))
    print(
        f"persist: {count} rows over {conversations} conversations, {rounds} round(s), prefetch "
        f"{settings.prefetch}, batch {settings.persist_batch_size} / {settings.persist_batch_wait_ms} ms, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    for name, values in figures.items():
        print(f"  {name:<5} rows/s:     " + "  ".join(f"{rate:8.0f}" for rate, _ in values))
        print(f"  {name:<5} CPU µs/row: " + "  ".join(f"{cpu:8.1f}" for _, cpu in values))
    best = {name: max(rate for rate, _ in values) for name, values in figures.items()}
    cpu = {name: min(cpu for _, cpu in values) for name, values in figures.items()}
    print(
        f"  best: papo {best['papo']:.0f} rows/s, raw {best['raw']:.0f} rows/s, ratio {best['papo'] / best['raw']:.2f}"
    )
    print(
        f"  CPU per row: papo {cpu['papo']:.1f} µs, raw {cpu['raw']:.1f} µs, ratio {cpu['raw'] / cpu['papo']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", default=bool(os.environ.get("PAPO_BENCH_QUICK")))
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.messages, arguments.rounds = min(arguments.messages, 2000), 1
    logging.disable(logging.CRITICAL)  # a benchmark's output is its figures
    main(arguments.messages, arguments.conversations, arguments.rounds)
