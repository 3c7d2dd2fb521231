"""How late debounce flushes bursts past their quiet window with 10,000 conversations open at once: the service
as shipped against a raw peer (aio-pika and redis-py, no framework) running the same Lua.

New conversations write one message each at a steady rate, `conversations / window` per second, so that when
the last one has written all of them are open; each burst is due `window` seconds after its message reached
Redis. A plain consumer on `papo.llm`, in another process with the load, stamps every burst as it arrives: lateness = arrival - due. Every burst
must arrive exactly once. The peer consumes with the raw consumer of `debounce_drain.py` and flushes with the
same scan/claim/complete scripts and page size, publishing with aio-pika (confirmed). Needs the local RabbitMQ
and Redis (see libs/testing). Run from the repository root:

    .venv/bin/python bench/debounce_lateness.py                # 10,000 conversations, 15 s window
    .venv/bin/python bench/debounce_lateness.py --quick        # 2,000 conversations, 3 s window
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any

import aio_pika
from debounce_drain import forget, raw_peer

from papo_common.broker import make_broker, publish
from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.redis import make_redis
from papo_common.topology import EXCHANGE, LLM, RoutingKey, declare_topology
from papo_debounce.app import create_app
from papo_debounce.burst import build_burst
from papo_debounce.flusher import PAGE_SIZE
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore
from papo_testing import infra

Service = Callable[[DebounceSettings], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def papo(settings: DebounceSettings) -> AsyncIterator[None]:
    async with create_app(settings):
        yield


@asynccontextmanager
async def peer(settings: DebounceSettings) -> AsyncIterator[None]:
    """The raw consumer, and a flush loop of the same shape as papo's with no framework around it."""
    redis = make_redis(settings.redis_url.get_secret_value())
    store = DebounceStore(redis, settings)
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EXCHANGE.name)
    interval = settings.debounce_poll_interval_ms / 1000

    async def publish_one(flushing: Any) -> None:
        burst = build_burst(flushing)
        body = burst.model_dump_json().encode()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await exchange.publish(message, RoutingKey.BURST_READY, mandatory=True)

    async def flush_loop() -> None:
        while True:
            due, expired, wait = await store.scan(PAGE_SIZE)
            claimed = (await store.reclaim(expired) if expired else []) + (
                await store.claim(due) if due else []
            )
            if claimed:
                await asyncio.gather(*(publish_one(f) for f in claimed))
                await store.complete([(f, [i.message_id for i in f.items]) for f in claimed])
            if max(len(due), len(expired)) < PAGE_SIZE:
                await asyncio.sleep(interval if wait is None else min(interval, wait))

    async with raw_peer(settings, 0):
        task = asyncio.create_task(flush_loop())
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    await connection.close()
    await redis.aclose()


class Arrivals:
    """Every burst that reaches `papo.llm`, stamped as it arrives."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.lateness: list[float] = []
        self.per_conversation: Counter[str] = Counter()
        self.done = asyncio.Event()
        self.expected = 0

    async def __aenter__(self) -> Arrivals:
        self._connection = await aio_pika.connect(self._url)
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=500)
        queue = await channel.get_queue(LLM.name, ensure=False)
        await queue.consume(self._arrived, no_ack=True)
        return self

    def expect(self, count: int, window: float) -> None:
        self.expected, self._window = count, window

    async def _arrived(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        now = time.time()
        burst = json.loads(message.body)
        due = datetime.fromisoformat(burst["first_received_at"]).timestamp() + self._window
        self.lateness.append(now - due)
        self.per_conversation[burst["conversation"]["user_id"]] += 1
        if len(self.per_conversation) >= self.expected:
            self.done.set()

    async def __aexit__(self, *exc: object) -> None:
        await self._connection.close()


async def write_steadily(settings: DebounceSettings, instance: str, count: int, window: float) -> None:
    """`count` new conversations, one message each, spread evenly over `window` seconds."""
    broker = make_broker(settings)
    loop = asyncio.get_running_loop()
    async with broker:
        started = loop.time()
        sent = 0
        while sent < count:
            target = min(count, int((loop.time() - started) / window * count) + 1)
            batch = []
            for n in range(sent, target):
                user = f"55119{n:08d}@s.whatsapp.net"
                now = datetime.now(UTC)
                batch.append(
                    InboundMessage(
                        conversation=ConversationRef(instance=instance, user_id=user),
                        message_id=f"M{n}",
                        chat_id=user,
                        kind="text",
                        text="oi",
                        sent_at=now,
                        received_at=now,
                    )
                )
            sent = target
            await asyncio.gather(*(publish(broker, m) for m in batch))
            await asyncio.sleep(0.01)


def load_and_collect(url: str, prefix: str, count: int, window: float) -> dict[str, Any]:
    """The load and the stopwatch, in a process of their own so they take no CPU from the service."""

    async def main() -> dict[str, Any]:
        settings = DebounceSettings(rabbitmq_url=url, redis_key_prefix=prefix)  # type: ignore[arg-type]
        async with Arrivals(url) as arrivals:
            arrivals.expect(count, window)
            await write_steadily(settings, f"bench-{uuid.uuid4().hex[:8]}", count, window)
            await asyncio.wait_for(arrivals.done.wait(), window + 120)
            await asyncio.sleep(1.0)  # anything flushed twice arrives within this
        lateness = sorted(arrivals.lateness)
        return {
            "p50": statistics.median(lateness),
            "p99": lateness[int(len(lateness) * 0.99) - 1],
            "max": lateness[-1],
            "flushed": len(arrivals.per_conversation),
            "doubled": sum(1 for n in arrivals.per_conversation.values() if n > 1),
        }

    return asyncio.run(main())


async def measure(
    name: str, service: Service, url: str, count: int, window: float, pool: ProcessPoolExecutor
) -> dict[str, Any]:
    settings = DebounceSettings(
        rabbitmq_url=url,  # type: ignore[arg-type]
        redis_key_prefix=f"papo-bench-{uuid.uuid4().hex[:10]}",
        debounce_seconds=window,
        debounce_max_wait_seconds=max(60, window),
        log_level="WARNING",
    )
    loop = asyncio.get_running_loop()
    try:
        async with service(settings):
            cpu_started = time.process_time()
            result = await loop.run_in_executor(
                pool, load_and_collect, url, settings.redis_key_prefix, count, window
            )
            cpu = time.process_time() - cpu_started
    finally:
        await forget(settings)
    return {"service": name, **result, "cpu_s": cpu}


async def run(count: int, window: float, rounds: int, only: str | None = None) -> list[dict[str, Any]]:
    results = []
    with infra.rabbitmq_vhost() as url, ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        broker = make_broker(DebounceSettings(rabbitmq_url=url))  # type: ignore[arg-type]
        async with broker:
            await declare_topology(broker)
        for _ in range(rounds):
            for name, service in (("papo", papo), ("raw peer", peer)):
                if only and name != only:
                    continue
                results.append(await measure(name, service, url, count, window, pool))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--window", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="2,000 conversations, 3 s window")
    parser.add_argument("--only", choices=("papo", "raw peer"), help="run one side (to profile it)")
    options = parser.parse_args()
    count, window = (2_000, 3.0) if options.quick else (options.conversations, options.window)
    results = asyncio.run(run(count, window, options.rounds, options.only))
    if options.only:
        print(results)
        return
    for r in results:
        print(
            f"{r['service']:>9}: lateness p50 {r['p50'] * 1000:6.0f} ms, p99 {r['p99'] * 1000:6.0f} ms, "
            f"max {r['max'] * 1000:6.0f} ms; {r['flushed']}/{count} flushed, {r['doubled']} twice; "
            f"{r['cpu_s']:.1f} s CPU"
        )
    worst = {name: max(r["p99"] for r in results if r["service"] == name) for name in ("papo", "raw peer")}
    print(
        f"debounce lateness, {count} open conversations, {window:g} s window: p99 papo "
        f"{worst['papo'] * 1000:.0f} ms, raw peer {worst['raw peer'] * 1000:.0f} ms, "
        f"ratio {worst['papo'] / worst['raw peer']:.2f} (goal: papo <= 250 ms)"
    )


if __name__ == "__main__":
    main()
