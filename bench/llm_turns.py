"""Time per llm turn against raw round trips to the same fake model, measured in one run, round by round.

- papo: the llm service in this process (`create_app`: its consumer, the lease, Redis, the openai SDK, the
  confirmed publish), consuming bursts queued in a private RabbitMQ vhost beforehand, against
  `papo_testing.fake_openai.FakeOpenAI` answering at once; timed from its first reply to its last;
- peer: the same number of raw `httpx` POSTs of a chat completion to that same fake, as many in flight.

The fake runs in a process of its own, as a model server would (in a thread of this process, the two event
loops hand each request over slowly enough to hide everything else). Each round uses fresh conversations that already had one turn (their state is
in Redis), `--per-conversation` turns each, published round-robin. Run from the repository root with
RabbitMQ, Redis and PostgreSQL up:

    .venv/bin/python bench/llm_turns.py --turns 500 --in-flight 16 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import uvloop

from papo_common.broker import make_broker, publish
from papo_common.contracts import Burst, BurstItem, ConversationRef
from papo_common.topology import EXCHANGE, LLM, RoutingKey, declare_topology
from papo_llm.app import create_app
from papo_llm.settings import LlmSettings
from papo_testing import infra

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def bursts(round_id: str, conversations: int, per_conversation: int, first_seq: int) -> list[Burst]:
    people = [
        ConversationRef(instance="bench", user_id=f"{round_id}-{n}@s.whatsapp.net")
        for n in range(conversations)
    ]
    made = []
    for seq in range(first_seq, first_seq + per_conversation):
        for who in people:
            item = BurstItem(
                message_id=f"{who.user_id}-{seq}",
                kind="text",
                text=f"pergunta {seq}",
                sent_at=T0 + timedelta(seconds=seq),
            )
            made.append(
                Burst(
                    burst_id=f"{who.key}:{seq}",
                    conversation=who,
                    chat_id=who.user_id,
                    items=(item,),
                    inbound_seq=seq,
                    reason="quiet",
                    first_received_at=item.sent_at,
                    flushed_at=item.sent_at,
                )
            )
    return made


class ReplyCounter:
    """A queue bound to `reply.ready`; counted by the broker, so counting costs this process nothing."""

    def __init__(self, channel: aio_pika.abc.AbstractChannel, queue: aio_pika.abc.AbstractQueue) -> None:
        self.channel = channel
        self.queue = queue

    @classmethod
    async def bind(cls, connection: aio_pika.abc.AbstractConnection) -> ReplyCounter:
        channel = await connection.channel()
        queue = await channel.declare_queue(f"bench-replies-{uuid.uuid4().hex[:8]}", auto_delete=False)
        await queue.bind(EXCHANGE.name, routing_key=RoutingKey.REPLY_READY)
        return cls(channel, queue)

    async def count(self) -> int:
        declared = await self.channel.declare_queue(self.queue.name, passive=True)
        return int(declared.declaration_result.message_count or 0)

    async def wait_for(self, count: int, poll: float = 0.05) -> float:
        # polls the broker's count: consuming the replies here would add their cost to papo's figure
        while await self.count() < count:  # noqa: ASYNC110
            await asyncio.sleep(poll)
        return time.perf_counter()

    async def drain(self) -> None:
        await self.queue.purge()


async def papo_round(
    settings: LlmSettings, publisher, connection, round_id: str, args: argparse.Namespace
) -> tuple[float, float]:
    counter = await ReplyCounter.bind(connection)
    conversations = args.turns // args.per_conversation
    for burst in bursts(round_id, conversations, 1, 1):  # warm: every conversation had a turn
        await publish(publisher, burst)
    measured = bursts(round_id, conversations, args.per_conversation, 2)
    warm = create_app(settings)
    await warm.start()
    await counter.wait_for(conversations)
    await warm.stop()
    await counter.drain()
    for burst in measured:
        await publish(publisher, burst)
    app = create_app(settings)
    await app.start()
    try:
        # queued beforehand: from the first reply to the last, with nothing else running
        first = await counter.wait_for(1, poll=0.0005)
        cpu = time.process_time()
        last = await counter.wait_for(len(measured))
        cpu = time.process_time() - cpu
    finally:
        await app.stop()
        await counter.queue.delete(if_unused=False, if_empty=False)
        await counter.channel.close()
    turns = len(measured) - 1
    return (last - first) / turns, cpu / turns


async def peer_round(base_url: str, args: argparse.Namespace) -> tuple[float, float]:
    body = {
        "model": "gpt-bench",
        "messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "pergunta"}],
        "temperature": 0.4,
        "max_tokens": 400,
    }
    limit = asyncio.Semaphore(args.in_flight)
    async with httpx.AsyncClient(
        base_url=base_url + "/", headers={"Authorization": "Bearer sk-bench"}
    ) as client:
        await client.post("chat/completions", json=body)

        async def one() -> None:
            async with limit:
                response = await client.post("chat/completions", json=body)
                response.json()

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one() for _ in range(args.turns)))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return wall / args.turns, cpu / args.turns


def main(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as stack:
        rabbitmq_url = args.rabbitmq_url or stack.enter_context(infra.rabbitmq_vhost())
        database_url = stack.enter_context(infra.postgres_database())
        # the event loop the service runs on: uvicorn picks uvloop, a dependency of papo-llm
        uvloop.run(run(args, rabbitmq_url, database_url))


_FAKE = """
import sys
from papo_testing.fake_openai import FakeOpenAI
with FakeOpenAI(api_key="sk-bench") as ai:
    print(ai.base_url, flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def fake_model_server() -> Iterator[str]:
    """FakeOpenAI in a process of its own; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-c", _FAKE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait()


async def run(args: argparse.Namespace, rabbitmq_url: str, database_url: str) -> None:
    with fake_model_server() as base_url:
        if True:
            settings = LlmSettings(
                rabbitmq_url=rabbitmq_url,
                database_url=database_url,
                redis_key_prefix=f"bench-{uuid.uuid4().hex[:8]}",
                llm_base_url=base_url,
                llm_api_key="sk-bench",
                llm_model="gpt-bench",
                prefetch=args.in_flight,
                llm_turns_in_flight=args.in_flight,
                log_level="WARNING",
                log_format="text",
            )
            publisher = make_broker(settings, app_id="bench-debounce")
            await publisher.connect()
            await declare_topology(publisher)
            connection = await aio_pika.connect(rabbitmq_url)
            papo, peer = [], []
            for round_number in range(args.rounds):
                papo.append(await papo_round(settings, publisher, connection, f"r{round_number}", args))
                peer.append(await peer_round(base_url, args))
                print(
                    f"round {round_number + 1}: papo {papo[-1][0] * 1000:.2f} ms/turn "
                    f"({papo[-1][1] * 1000:.2f} ms CPU), raw httpx {peer[-1][0] * 1000:.2f} ms "
                    f"({peer[-1][1] * 1000:.2f} ms CPU), ratio {papo[-1][0] / peer[-1][0]:.2f}"
                )
            await connection.close()
            await publisher.stop()
    papo_ms = statistics.median(wall for wall, _ in papo) * 1000
    peer_ms = statistics.median(wall for wall, _ in peer) * 1000
    papo_cpu = statistics.median(cpu for _, cpu in papo) * 1000
    peer_cpu = statistics.median(cpu for _, cpu in peer) * 1000
    print(
        f"\nllm, {args.turns} turns, {args.in_flight} in flight, median of {args.rounds} rounds:\n"
        f"  papo (queue -> turn -> reply.ready): {papo_ms:.2f} ms per turn, {papo_cpu:.2f} ms CPU\n"
        f"  raw httpx round trip to the same fake: {peer_ms:.2f} ms, {peer_cpu:.2f} ms CPU\n"
        f"  ratio papo / raw: {papo_ms / peer_ms:.2f} (CPU {papo_cpu / peer_cpu:.2f})"
    )
    assert LLM.name  # the queue the bursts were published to


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--turns", type=int, default=500)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--per-conversation", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rabbitmq-url",
        help="a broker (vhost) of the bench's own; default: a fresh vhost on the local RabbitMQ",
    )
    parser.add_argument("--quick", action="store_true", help="200 turns, one round (for `make bench`)")
    options = parser.parse_args()
    if options.quick:
        options.turns, options.rounds = min(options.turns, 200), 1
    main(options)
