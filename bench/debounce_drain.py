"""Messages per second one debounce process drains from `papo.debounce`: the service as shipped against a raw
peer (aio-pika and redis-py, no framework) running the same Lua on the same Redis keys.

Each run fills `papo.debounce` first (10 messages per conversation), then starts the consumer and times it
until every message is in its burst in Redis. Both sides validate each body against the same contract, check
staleness and run `ADD_MESSAGE` once; the window is long enough that nothing flushes during the run, so the
figure is the consuming path alone. Rounds alternate, so neither side always runs on a warmer broker. Also
printed: papo's Redis round trips per message. Needs the local RabbitMQ and Redis (see libs/testing):

    .venv/bin/python bench/debounce_drain.py                # 10,000 messages, 3 rounds
    .venv/bin/python bench/debounce_drain.py --quick        # 2,000 messages, 1 round
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
from pydantic import TypeAdapter
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from papo_common.broker import ConfirmedPublisher, make_broker, publish
from papo_common.contracts import ConversationRef, InboundMessage, Transcript
from papo_common.redis import make_redis
from papo_common.service import consumer_app, make_service_broker
from papo_common.topology import DEBOUNCE, declare_topology
from papo_debounce.debouncer import Debouncer
from papo_debounce.handlers import DebounceInput, consume, declare_output
from papo_debounce.scripts import ADD_MESSAGE
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore, _Keys, member_of
from papo_testing import infra

SENT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PER_CONVERSATION = 10

Counter = Callable[[], int]
Consumer = Callable[[DebounceSettings, int], AbstractAsyncContextManager[Counter]]


def contracts(instance: str, count: int) -> list[InboundMessage]:
    conversations = max(1, count // PER_CONVERSATION)
    messages = []
    for i in range(count):
        user = f"55119{i % conversations:08d}@s.whatsapp.net"
        messages.append(
            InboundMessage(
                conversation=ConversationRef(instance=instance, user_id=user),
                message_id=f"M{i}",
                chat_id=user,
                push_name="Ana",
                kind="text",
                text=f"mensagem número {i}",
                sent_at=SENT + timedelta(milliseconds=i),
                received_at=SENT + timedelta(milliseconds=i + 500),
            )
        )
    return messages


@asynccontextmanager
async def papo(settings: DebounceSettings, count: int) -> AsyncIterator[Counter]:
    """The service as `create_app` wires it, with a counter behind the domain object."""
    handled = 0

    class Counting(Debouncer):
        async def handle(self, message: InboundMessage | Transcript) -> None:
            nonlocal handled
            await super().handle(message)
            handled += 1

    from papo_common.periodic import Periodic
    from papo_debounce.flusher import Flusher

    broker = make_service_broker("debounce", settings)
    redis = make_redis(settings.redis_url.get_secret_value())
    store = DebounceStore(redis, settings)
    consumer = consume(settings, Counting(store, redis, settings))
    publish_burst = ConfirmedPublisher(broker, declared=declare_output(broker))
    interval = settings.debounce_poll_interval_ms / 1000
    flusher = Flusher(store, publish_burst, poll_interval=interval)
    loop = Periodic("debounce-flusher", flusher.flush_due, interval=interval, delay=flusher.next_delay)
    app = consumer_app(
        broker, after_startup=[consumer.start, loop.start], on_shutdown=[consumer.stop, loop.stop]
    )
    async with app:
        yield lambda: handled
    await redis.aclose()


@asynccontextmanager
async def raw_peer(settings: DebounceSettings, count: int) -> AsyncIterator[Counter]:
    """aio-pika and redis-py: the same contract validation, staleness check and Lua, as many messages at once
    as the same prefetch allows, each acked after Redis answered."""
    handled = 0
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    add = redis.register_script(ADD_MESSAGE)
    parse = TypeAdapter(DebounceInput).validate_json
    connection = await aio_pika.connect(settings.rabbitmq_url.get_secret_value())
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=settings.prefetch)
    queue = await channel.get_queue(DEBOUNCE.name, ensure=False)

    async def consume(incoming: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal handled
        message = parse(incoming.body)
        assert isinstance(message, InboundMessage)
        if (message.received_at - message.sent_at).total_seconds() <= settings.stale_message_seconds:
            k = _Keys(settings.redis_key_prefix, message.conversation)
            await add(
                keys=[
                    k.seen,
                    k.items,
                    k.meta,
                    k.pending,
                    k.texts,
                    k.inbound_seq,
                    k.answered_seq,
                    f"{settings.redis_key_prefix}:debounce:due",
                    k.paused,
                ],
                args=[
                    "",
                    message.message_id,
                    json.dumps(
                        {
                            "message_id": message.message_id,
                            "kind": message.kind,
                            "text": message.text,
                            "sent_at": message.sent_at.isoformat(),
                        },
                        ensure_ascii=False,
                    ),
                    "0",
                    message.chat_id,
                    message.push_name or "",
                    member_of(message.conversation),
                    settings.debounce_seconds,
                    settings.debounce_max_wait_seconds,
                    settings.debounce_max_messages,
                    settings.debounce_transcription_timeout_seconds,
                    settings.debounce_seen_ttl_seconds,
                    "",
                ],
            )
        await incoming.ack()
        handled += 1

    # like FastStream's subscriber: each delivery is its own task, up to the prefetch at once
    await queue.consume(consume)
    try:
        yield lambda: handled
    finally:
        await connection.close()
        await redis.aclose()


class RoundTrips:
    """Counts papo's Redis round trips: each command sent alone, and each pipeline sent as one."""

    def __init__(self) -> None:
        self.count = 0
        self._command = Redis.execute_command
        self._pipeline = Pipeline.execute

    def __enter__(self) -> RoundTrips:
        counter, command, pipeline = self, self._command, self._pipeline

        async def counted_command(client: Any, *args: Any, **options: Any) -> Any:
            counter.count += 1
            return await command(client, *args, **options)

        async def counted_pipeline(pipe: Any, raise_on_error: bool = True) -> Any:
            counter.count += 1
            return await pipeline(pipe, raise_on_error)

        Redis.execute_command = counted_command  # type: ignore[method-assign]
        Pipeline.execute = counted_pipeline  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Redis.execute_command = self._command  # type: ignore[method-assign]
        Pipeline.execute = self._pipeline  # type: ignore[method-assign]


async def fill_queue(settings: DebounceSettings, messages: list[InboundMessage]) -> None:
    broker = make_broker(settings)
    async with broker:
        await declare_topology(broker)
        for start in range(0, len(messages), 500):
            await asyncio.gather(*(publish(broker, m) for m in messages[start : start + 500]))


async def measure(name: str, consumer: Consumer, settings: DebounceSettings, count: int) -> dict[str, Any]:
    await fill_queue(settings, contracts(f"bench-{uuid.uuid4().hex[:8]}", count))
    with RoundTrips() as trips:
        async with consumer(settings, count) as handled:
            # timed from the end of start-up: what is measured is draining, not connecting
            started, cpu_started, trips_started = time.perf_counter(), time.process_time(), trips.count
            already = handled()
            while handled() < count:  # noqa: ASYNC110 - the counter is the measurement
                await asyncio.sleep(0.01)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            round_trips = trips.count - trips_started
        count -= already
    return {
        "consumer": name,
        "msg_per_s": count / elapsed,
        "cpu_ms_per_msg": cpu * 1000 / count,
        "redis_round_trips_per_msg": round_trips / count if name == "papo" else None,
    }


async def run(count: int, rounds: int, only: str | None = None) -> list[dict[str, Any]]:
    results = []
    with infra.rabbitmq_vhost() as url:
        for _ in range(rounds):
            for name, consumer in (("papo", papo), ("raw peer", raw_peer)):
                if only and name != only:
                    continue
                settings = DebounceSettings(
                    rabbitmq_url=url,  # type: ignore[arg-type]
                    redis_key_prefix=f"papo-bench-{uuid.uuid4().hex[:10]}",
                    debounce_seconds=600,
                    debounce_max_wait_seconds=600,
                    log_level="WARNING",
                )
                try:
                    results.append(await asyncio.wait_for(measure(name, consumer, settings, count), 300))
                finally:
                    await forget(settings)
    return results


async def forget(settings: DebounceSettings) -> None:
    redis = make_redis(settings.redis_url.get_secret_value())
    async for key in redis.scan_iter(match=f"{settings.redis_key_prefix}:*", count=1000):
        await redis.delete(key)
    await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 messages, one round")
    parser.add_argument("--only", choices=("papo", "raw peer"), help="run one side (to profile it)")
    options = parser.parse_args()
    count, rounds = (2_000, 1) if options.quick else (options.messages, options.rounds)
    results = asyncio.run(run(count, rounds, options.only))
    if options.only:
        print(results)
        return
    for result in results:
        trips = result["redis_round_trips_per_msg"]
        print(
            f"{result['consumer']:>9}: {result['msg_per_s']:7.0f} msg/s, {result['cpu_ms_per_msg']:.2f} ms CPU/msg"
            + (f", {trips:.2f} Redis round trips/msg" if trips is not None else "")
        )
    papo_rounds = [r for r in results if r["consumer"] == "papo"]
    peer_rounds = [r for r in results if r["consumer"] == "raw peer"]
    best_papo = max(r["msg_per_s"] for r in papo_rounds)
    best_peer = max(r["msg_per_s"] for r in peer_rounds)
    paired = sorted(a["msg_per_s"] / b["msg_per_s"] for a, b in zip(papo_rounds, peer_rounds, strict=True))
    cpu = min(r["cpu_ms_per_msg"] for r in peer_rounds) / min(r["cpu_ms_per_msg"] for r in papo_rounds)
    print(
        f"debounce drain, {count} messages, best of {rounds}: papo {best_papo:.0f} msg/s, "
        f"raw peer {best_peer:.0f} msg/s, ratio {best_papo / best_peer:.2f} "
        f"(median of paired rounds {paired[len(paired) // 2]:.2f}; CPU per message, peer/papo {cpu:.2f})"
    )


if __name__ == "__main__":
    main()
