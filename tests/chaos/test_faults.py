"""Hundreds of conversations typing in bursts while every process is killed, the broker drops its connections
and Redis cuts its clients: nothing is lost, nothing is doubled, nothing is reordered.

Each message carries a token `q<conversation>m<index>`; the fake model answers with the tokens of the turn it
was asked about (the user messages after the last assistant message), so every `sendText` says exactly which
messages it answered. Evolution's side is played as Evolution plays it: duplicates, arrival order shuffled,
and each webhook retried on 5xx and timeouts with backoff.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from papo_testing import infra
from papo_testing.chaos import (
    ChaosStack,
    drop_broker_connections,
    kill_redis_clients,
    private_redis,
    queue_totals,
)
from papo_testing.fake_evolution import FakeEvolution
from papo_testing.fake_openai import FakeOpenAI
from papo_testing.webhooks import text_webhook

pytestmark = [pytest.mark.chaos, pytest.mark.e2e]

CONVERSATIONS = int(os.environ.get("PAPO_CHAOS_CONVERSATIONS", "300"))
DUPLICATE_RATE = 0.05
SEED = int(os.environ.get("PAPO_CHAOS_SEED", "20261201"))
INSTANCES = {"loja": "evolution-key-loja", "padaria": "evolution-key-padaria"}
WEBHOOK_TOKEN = "webhook-token-chaos"
SERVICES = ("persist", "deliver", "llm", "transcribe", "debounce", "ingest")
TOKEN = re.compile(r"\bq(\d+)m(\d+)\b")
SETTLE_TIMEOUT = float(os.environ.get("PAPO_CHAOS_SETTLE_SECONDS", "240"))


def answer_with_tokens(messages: list[dict[str, Any]]) -> str:
    """The fake model's answer: the tokens of the new turn, in the order the prompt gave them."""
    turn: list[str] = []
    for message in messages:
        if message.get("role") == "assistant":
            turn = []
        elif message.get("role") == "user":
            turn.append(str(message.get("content") or ""))
    tokens = [match.group(0) for match in TOKEN.finditer("\n".join(turn))]
    return "ok " + " ".join(tokens)


@dataclass(frozen=True)
class Message:
    conversation: int
    index: int
    instance: str
    number: str
    message_id: str
    timestamp: int

    @property
    def token(self) -> str:
        return f"q{self.conversation}m{self.index}"

    def webhook(self) -> dict[str, Any]:
        return text_webhook(
            self.instance,
            self.message_id,
            f"pergunta {self.token} sobre o pedido",
            self.timestamp,
            number=self.number,
        )


@dataclass
class Load:
    """What the fake Evolution posted and what ingest answered."""

    bursts: dict[int, list[list[Message]]]
    posted: int = 0
    accepted: set[str] = field(default_factory=set)
    accepted_at: dict[str, float] = field(default_factory=dict)
    """When ingest first accepted each token (monotonic): a webhook retried after a 503 arrives late."""
    rejected: list[tuple[str, int, str]] = field(default_factory=list)
    gave_up: list[str] = field(default_factory=list)
    retries: int = 0
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total(self) -> int:
        return sum(len(b) for bursts in self.bursts.values() for b in bursts)


def plan(rng: random.Random, conversations: int, now: int) -> dict[int, list[list[Message]]]:
    """Each conversation: one to three bursts of one to four messages, strictly increasing timestamps."""
    planned: dict[int, list[list[Message]]] = {}
    for conversation in range(conversations):
        instance = list(INSTANCES)[conversation % len(INSTANCES)]
        number = f"55119{conversation:08d}"
        timestamp = now - 900 + rng.randrange(0, 300)
        index = 0
        bursts: list[list[Message]] = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            burst = []
            for _ in range(rng.randint(1, 4)):
                burst.append(
                    Message(
                        conversation,
                        index,
                        instance,
                        number,
                        f"3EB0{uuid.uuid4().hex[:16].upper()}",
                        timestamp,
                    )
                )
                index += 1
                timestamp += rng.randint(1, 3)
            bursts.append(burst)
            timestamp += 5
        planned[conversation] = bursts
    return planned


async def post_like_evolution(client: httpx.AsyncClient, url: str, message: Message, load: Load) -> None:
    """Evolution 2.3's webhook retries: 5xx, 429 and timeouts are retried with backoff; 4xx is final."""
    for attempt in range(14):
        try:
            answer = await client.post(url, json=message.webhook(), timeout=10)
        except httpx.TransportError:
            load.statuses[0] += 1
        else:
            load.statuses[answer.status_code] += 1
            if answer.status_code == 200:
                load.accepted.add(message.token)
                load.accepted_at.setdefault(message.token, time.monotonic())
                return
            if answer.status_code < 500 and answer.status_code != 429:
                load.rejected.append((message.token, answer.status_code, answer.text[:200]))
                return
        load.retries += 1
        await asyncio.sleep(min(0.25 * 2**attempt, 4.0) * random.uniform(0.8, 1.2))  # Evolution's own backoff
    load.gave_up.append(message.token)


async def converse(
    client: httpx.AsyncClient, url: str, bursts: list[list[Message]], rng: random.Random, load: Load
) -> None:
    """One person: each burst typed quickly and delivered shuffled, 5 % of messages delivered twice, then
    either a pause shorter than the window (the bursts merge) or longer (two turns)."""
    late_duplicates: list[Message] = []
    for burst in bursts:
        arrival = burst[:]
        rng.shuffle(arrival)
        for message in arrival:
            await post_like_evolution(client, url, message, load)
            load.posted += 1
            if rng.random() < DUPLICATE_RATE:
                if rng.random() < 0.5:
                    await post_like_evolution(client, url, message, load)
                else:
                    late_duplicates.append(message)
            await asyncio.sleep(rng.uniform(0, 0.2))  # typing speed, not synchronisation
        await asyncio.sleep(rng.choice((0.3, 2.5, 4.0)))
    for message in late_duplicates:
        await post_like_evolution(client, url, message, load)


async def run_faults(
    stack: ChaosStack, load: Load, redis_url: str, rabbitmq_url: str, log: list[str]
) -> None:
    """Each fault fires once the load has reached its share of the messages."""

    async def at(fraction: float) -> None:
        while load.posted < fraction * load.total:
            await asyncio.sleep(0.1)

    async def kill_and_restart(name: str) -> None:
        stack.kill(name)
        log.append(f"{time.monotonic():.1f} kill -9 {name}")
        await asyncio.to_thread(stack.restart, name)
        log.append(f"{time.monotonic():.1f} {name} ready again")

    schedule: list[tuple[float, Any]] = [
        (0.08, lambda: kill_and_restart("llm")),
        (0.16, lambda: kill_and_restart("debounce")),
        (0.24, lambda: asyncio.to_thread(drop_broker_connections, rabbitmq_url)),
        (0.32, lambda: asyncio.to_thread(kill_redis_clients, redis_url)),
        (0.40, lambda: kill_and_restart("persist")),
        (0.48, lambda: kill_and_restart("deliver")),
        (0.56, lambda: kill_and_restart("transcribe")),
        (0.64, lambda: kill_and_restart("ingest")),
        (0.72, lambda: kill_and_restart("llm#2")),
        (0.80, lambda: kill_and_restart("debounce#2")),
        (0.88, lambda: asyncio.to_thread(drop_broker_connections, rabbitmq_url)),
        (0.94, lambda: asyncio.to_thread(kill_redis_clients, redis_url)),
    ]
    for fraction, fault in schedule:
        await at(fraction)
        log.append(f"{time.monotonic():.1f} fault at {fraction:.0%}")
        await fault()


@pytest.fixture
def chaos_env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with (
        infra.rabbitmq_vhost() as rabbitmq_url,
        infra.postgres_database() as database_url,
        private_redis(tmp_path) as redis_url,
        FakeEvolution(api_keys=INSTANCES) as evolution,
        FakeOpenAI(responder=answer_with_tokens) as openai,
    ):
        env = {
            **os.environ,
            "PAPO_RABBITMQ_URL": rabbitmq_url,
            "PAPO_REDIS_URL": redis_url,
            "PAPO_REDIS_KEY_PREFIX": f"papo-chaos-{uuid.uuid4().hex[:8]}",
            "PAPO_DATABASE_URL": database_url,
            "PAPO_EVOLUTION_URL": evolution.url,
            "PAPO_EVOLUTION_API_KEYS": json.dumps(INSTANCES),
            "PAPO_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "PAPO_DEBOUNCE_SECONDS": "1",
            "PAPO_DEBOUNCE_CLAIM_LEASE_SECONDS": "5",
            "PAPO_LLM_BASE_URL": openai.base_url,
            "PAPO_LLM_API_KEY": "sk-chaos",
            "PAPO_LOG_FORMAT": "json",
            "PAPO_LOG_LEVEL": "INFO",
            "PAPO_DELIVER_TYPING_MIN_MS": "0",
            "PAPO_DELIVER_TYPING_MAX_MS": "0",
            "PAPO_DELIVER_MIN_SEND_INTERVAL_MS": "0",
            "PAPO_DELIVER_MARK_READ": "false",
            "PAPO_DELIVER_ECHO_WAIT_SECONDS": "8",  # the fake's echo retries: 0.5 + 1 + 2 + 4 s
            "HF_HUB_OFFLINE": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",
        }
        yield {
            "env": env,
            "rabbitmq_url": rabbitmq_url,
            "database_url": database_url,
            "redis_url": redis_url,
            "evolution": evolution,
            "openai": openai,
        }


class Crossings:
    """Every burst and reply crossing papo's exchange, with when and (for replies) which reply each follows,
    read by a probe queue of the test's own: what a reorder's report needs to say where it happened."""

    KEYS = ("burst.ready", "reply.ready")

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, str, str | None, list[str]]] = []
        self._connection: Any = None

    async def start(self, rabbitmq_url: str) -> None:
        import aio_pika

        self._connection = await aio_pika.connect_robust(rabbitmq_url)
        channel = await self._connection.channel()
        exchange = await channel.get_exchange("papo")
        queue = await channel.declare_queue("chaos.crossings", durable=True)
        for key in self.KEYS:
            await queue.bind(exchange, routing_key=key)
        await queue.consume(self._record, no_ack=True)

    async def _record(self, message: Any) -> None:
        body = json.loads(message.body)
        text = body.get("text") or " ".join(item.get("text") or "" for item in body.get("items", []))
        self.seen.append(
            (
                time.monotonic(),
                message.routing_key,
                body.get("reply_id") or body.get("burst_id"),
                body.get("follows"),
                TOKEN.findall(text) and [f"q{c}m{i}" for c, i in TOKEN.findall(text)],
            )
        )

    def of(self, conversation: int) -> list[str]:
        prefix = f"q{conversation}m"
        return [
            f"{at:.1f} {key} {ident} follows={follows} {tokens}"
            for at, key, ident, follows, tokens in self.seen
            if any(token.startswith(prefix) for token in tokens)
        ]

    def replied_out_of_order(self, conversation: int) -> bool:
        """Whether the llm itself published the conversation's replies out of message order."""
        prefix = f"q{conversation}m"
        indexes = [
            int(token[len(prefix) :])
            for _, key, _, _, tokens in sorted(self.seen)
            if key == "reply.ready"
            for token in tokens
            if token.startswith(prefix)
        ]
        first_seen = list(dict.fromkeys(indexes))  # a reply published twice counts once
        return first_seen != sorted(first_seen)

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()


def delivered_turns(evolution: FakeEvolution) -> dict[int, list[list[tuple[int, int]]]]:
    """Per conversation, the (conversation, index) tokens of each sendText, in the order Evolution got them."""
    turns: dict[int, list[list[tuple[int, int]]]] = defaultdict(list)
    for sent in evolution.sent_texts():
        tokens = [(int(m.group(1)), int(m.group(2))) for m in TOKEN.finditer(sent.text or "")]
        if tokens:
            turns[tokens[0][0]].append(tokens)
    return turns


async def settle(chaos: dict[str, Any], load: Load, deadline: float) -> dict[str, int]:
    """Wait for the event: every accepted token answered and every queue empty, ready and unacked alike."""
    totals: dict[str, int] = {}
    while time.monotonic() < deadline:
        answered = {
            f"q{c}m{i}" for turns in delivered_turns(chaos["evolution"]).values() for t in turns for c, i in t
        }
        everywhere = await asyncio.to_thread(queue_totals, chaos["rabbitmq_url"])
        totals = {name: n for name, n in everywhere.items() if not name.startswith("chaos.")}  # the probe
        if load.accepted <= answered and not any(totals.values()):
            return totals
        await asyncio.sleep(1.0)  # each look boots a rabbitmqctl VM
    return totals


async def test_nothing_lost_doubled_or_reordered_under_faults(chaos_env: dict[str, Any]) -> None:
    rng = random.Random(SEED)
    load = Load(plan(rng, CONVERSATIONS, int(time.time())))
    faults: list[str] = []
    stack = ChaosStack(SERVICES, chaos_env["env"])
    with stack:
        stack.add_replica("debounce")
        stack.add_replica("llm")
        stack.wait_ready(120)
        url = stack.url("ingest", "/webhook/evolution")
        # As in production, Evolution announces each sendText to ingest (`send.message`): the evidence a
        # deliver killed mid-send reads to confirm a chunk instead of sending it again.
        # Evolution retries an echo ingest could not take (5 s base in production; shortened here)
        chaos_env["evolution"].set_webhook(
            url, headers={"x-papo-token": WEBHOOK_TOKEN}, retry_base_seconds=0.5
        )
        limits = httpx.Limits(max_connections=24, max_keepalive_connections=24)
        async with httpx.AsyncClient(headers={"x-papo-token": WEBHOOK_TOKEN}, limits=limits) as client:

            async def person(conversation: int) -> None:
                await asyncio.sleep(conversation * 0.08)  # people start writing over ~25 s
                await converse(
                    client, url, load.bursts[conversation], random.Random(SEED + conversation), load
                )

            crossings = Crossings()
            await crossings.start(chaos_env["rabbitmq_url"])
            fault_task = asyncio.create_task(
                run_faults(stack, load, chaos_env["redis_url"], chaos_env["rabbitmq_url"], faults)
            )
            await asyncio.gather(*(person(c) for c in load.bursts))
            await fault_task
        totals = await settle(chaos_env, load, time.monotonic() + SETTLE_TIMEOUT)
        await crossings.stop()
        logs = stack.all_logs()

    summary = (
        f"posted {load.posted}, accepted {len(load.accepted)}, retries {load.retries}, statuses {dict(load.statuses)}, "
        f"faults {faults}"
    )
    assert not load.rejected, f"valid webhooks refused: {load.rejected[:5]}; {summary}"
    assert not load.gave_up, f"webhooks never accepted: {load.gave_up[:5]}; {summary}"
    assert len(load.accepted) == load.total, summary

    turns = delivered_turns(chaos_env["evolution"])
    answered: defaultdict[str, int] = defaultdict(int)
    reordered: list[str] = []
    for conversation, replies in turns.items():
        earlier: list[int] = []  # the messages answered by the replies before this one
        for reply in replies:
            indexes = [index for _, index in reply]
            # Within a reply: timestamp order. Across replies: an older message answered after a newer one is
            # out of order unless it reached papo after that newer one (Evolution retried it after a 503):
            # papo cannot answer what it has not received yet.
            overtaken = [
                (newer, older)
                for older in indexes
                for newer in earlier
                if older < newer
                and load.accepted_at[f"q{conversation}m{older}"]
                < load.accepted_at[f"q{conversation}m{newer}"]
            ]
            if indexes != sorted(indexes) or overtaken:
                sends = [
                    f"{sent.received_monotonic:.1f} sendText {sent.text}"
                    for sent in chaos_env["evolution"].sent_texts()
                    if f"q{conversation}m" in (sent.text or "")
                ]
                where = (
                    "the llm published" if crossings.replied_out_of_order(conversation) else "deliver sent"
                )
                reordered.append(
                    f"q{conversation} ({where} them out of order): {replies} overtaken {overtaken}; crossings "
                    f"{crossings.of(conversation)}; sends {sends}"
                )
            earlier.extend(indexes)
            for _, index in reply:
                answered[f"q{conversation}m{index}"] += 1
    lost = sorted(load.accepted - set(answered))
    doubled = sorted(token for token, count in answered.items() if count > 1)
    assert not lost, f"{len(lost)} lost, e.g. {lost[:10]}; {summary}\n{logs[-20000:]}"
    doubled_conversations = {int(TOKEN.match(token).group(1)) for token in doubled}  # type: ignore[union-attr]
    doubled_sends = [
        f"{sent.received_monotonic:.1f} {sent.text}"
        for sent in chaos_env["evolution"].sent_texts()
        if (match := TOKEN.search(sent.text or "")) and int(match.group(1)) in doubled_conversations
    ]
    echoes = Counter(w.status for w in chaos_env["evolution"].delivered_webhooks("send.message"))
    assert not doubled, (
        f"{len(doubled)} answered twice, e.g. {doubled[:10]}; sends {doubled_sends}; echoes answered "
        f"{dict(echoes)}; {summary}\n{logs[-20000:]}"
    )
    assert not reordered, (
        f"{len(reordered)} conversations out of order, e.g. {reordered[:3]}; {summary}\n{logs[-20000:]}"
    )
    stuck = {name: n for name, n in totals.items() if n}
    assert not stuck, f"queues not empty: {stuck}"

    connection = await asyncpg.connect(chaos_env["database_url"].replace("+asyncpg", ""))
    try:
        rows = await connection.fetch("SELECT role, text, delivered_at FROM messages")
    finally:
        await connection.close()
    stored_user = [TOKEN.search(r["text"] or "") for r in rows if r["role"] == "user"]
    stored_tokens = [m.group(0) for m in stored_user if m]
    assert sorted(stored_tokens) == sorted(load.accepted), "every message exactly once in PostgreSQL"
    delivered_rows = [r for r in rows if r["role"] == "assistant" and r["delivered_at"] is not None]
    assert len(delivered_rows) == sum(len(r) for r in turns.values()), (
        "every delivered reply stored as delivered"
    )
