"""What the deliver tests share: deliver's settings as the tests run it (fast retries, short typing), the app
running as in production, and a second broker connection standing in for llm (publishing replies) and persist
(reading `reply.sent`)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from faststream.rabbit import RabbitBroker, RabbitQueue
from pydantic import SecretStr

from papo_common.contracts import ConversationRef, Reply
from papo_common.topology import EXCHANGE, RoutingKey
from papo_deliver.app import create_app
from papo_deliver.settings import DeliverSettings
from papo_testing.rabbit import running as running_app

SettingsFactory = Callable[..., DeliverSettings]

INSTANCE, API_KEY = "acme", "acme-key"
CHAT = "5511987654321@s.whatsapp.net"


def make_reply(text: str = "Oi! Tudo bem?", *, follows: str | None = None, chat: str = CHAT) -> Reply:
    """A reply of the llm to one person of `INSTANCE`, answering one message."""
    return Reply(
        reply_id=f"reply:{uuid.uuid4().hex[:10]}",
        follows=follows,
        burst_id="burst",
        conversation=ConversationRef(instance=INSTANCE, user_id=chat),
        chat_id=chat,
        text=text,
        in_reply_to=("3A0000000000000001",),
        model="test-model",
        created_at=datetime.now(UTC),
    )


def settings_factory(
    rabbitmq_url: str, redis_url: str, redis_prefix: str, **defaults: Any
) -> SettingsFactory:
    """`build(evolution_url, **overrides)`: deliver's settings for one test, `defaults` over the shared ones."""

    def build(evolution_url: str, **overrides: Any) -> DeliverSettings:
        values: dict[str, Any] = {
            "rabbitmq_url": SecretStr(rabbitmq_url),
            "redis_url": SecretStr(redis_url),
            "redis_key_prefix": redis_prefix,
            "evolution_url": evolution_url,
            "evolution_timeout_seconds": 2.0,
            "deliver_typing_min_ms": 20,
            "deliver_typing_max_ms": 100,
            "deliver_retry_attempts": 2,
            "deliver_retry_base_seconds": 0.01,
            "deliver_retry_max_seconds": 0.05,
            "deliver_min_send_interval_ms": 100,
            "log_format": "text",
        }
        return DeliverSettings(**(values | defaults | overrides))

    return build


def running(settings: DeliverSettings) -> contextlib.AbstractAsyncContextManager[None]:
    return running_app(create_app(settings))


@contextlib.asynccontextmanager
async def probe_broker(rabbitmq_url: str) -> AsyncIterator[RabbitBroker]:
    broker = RabbitBroker(rabbitmq_url)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.stop()


async def reply_sent_queue(probe: RabbitBroker) -> AbstractQueue:
    queue = await probe.declare_queue(
        RabbitQueue(f"test.reply-sent.{uuid.uuid4().hex[:8]}", auto_delete=True)
    )
    await queue.bind(await probe.declare_exchange(EXCHANGE), routing_key=RoutingKey.REPLY_SENT)
    return queue


async def collect(
    queue: AbstractQueue, wanted: Callable[[AbstractIncomingMessage], bool], *, count: int, timeout: float
) -> list[AbstractIncomingMessage]:
    """Up to `count` messages of `queue` that are `wanted` (shared queues carry other tests' messages too),
    waiting at most `timeout` seconds for them."""
    found: list[AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(found) < count and asyncio.get_running_loop().time() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is None:
            await asyncio.sleep(0.05)
        elif wanted(message):
            found.append(message)
    return found


def free_port_url() -> str:
    """An address nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"
