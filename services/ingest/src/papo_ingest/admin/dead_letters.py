"""Dead-letter queues: looking into them without taking anything out, and replaying what is in them.

RabbitMQ has no "peek": the listing takes messages with `basic.get` without acknowledging them, holds them
all (so none is seen twice), and requeues them all at the end; closing the channel would requeue them too
if the request died halfway. The dead-letter queues are quorum queues with no delivery limit, so a requeue
cannot drop a message; it only raises the queue's own `x-delivery-count`. While a listing holds them (a few
milliseconds) a concurrent listing or replay does not see those messages.

A replay sends each message back to the `papo` exchange with the routing key it had when it died. It is
acknowledged (removed from its dead-letter queue) only after RabbitMQ confirmed the republished copy, so a
replay that fails halfway loses nothing: what was not confirmed stays in, or is requeued to, the dead-letter
queue. A crash between the confirm and the ack leaves both copies, which the consumers' deduplication absorbs.
Republishing to the exchange, not to the queue, keeps the routing key the consumers see; every queue bound to
that key gets a copy again, and each deduplicates it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import PublishError

from papo_common.topology import EXCHANGE, SERVICE_QUEUES

logger = logging.getLogger(__name__)


DEAD_LETTER_QUEUES: frozenset[str] = frozenset(queue.dead_letter_name for queue in SERVICE_QUEUES)
MAX_LISTED = 100
MAX_BODY_SHOWN = 64 * 1024
"""Larger bodies (a voice note's bytes) are summarised by size instead of shown."""

_GET_TIMEOUT_SECONDS = 5.0


async def open_queue(channel: AbstractChannel, name: str) -> AbstractQueue:
    """The existing queue `name` (passively declared: never created with other arguments)."""
    return await channel.declare_queue(name, passive=True)


async def take(queue: AbstractQueue) -> AbstractIncomingMessage | None:
    """The next message, unacknowledged, or None when the queue has no more ready."""
    return await queue.get(no_ack=False, fail=False, timeout=_GET_TIMEOUT_SECONDS)


async def peek(channel: AbstractChannel, queue_name: str, limit: int) -> tuple[int, list[dict[str, Any]]]:
    """The queue's depth and up to `limit` of its messages, described; all of them stay in the queue."""
    queue = await open_queue(channel, queue_name)
    depth = int(queue.declaration_result.message_count or 0)
    held: list[AbstractIncomingMessage] = []
    try:
        while len(held) < limit and (message := await take(queue)) is not None:
            held.append(message)
        return depth, [describe(message) for message in held]
    finally:
        await requeue_all(held)


async def requeue_all(messages: list[AbstractIncomingMessage]) -> None:
    """Put held messages back. If the channel is already broken, RabbitMQ requeues them when it closes."""
    for message in messages:
        with contextlib.suppress(Exception):
            await message.nack(requeue=True)


def original_route(headers: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(routing key, queue) of the message before its most recent death, from `x-death[0]`."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list) or not deaths or not isinstance(deaths[0], Mapping):
        return None, None
    last = deaths[0]
    keys = last.get("routing-keys")
    routing_key = keys[0] if isinstance(keys, list) and keys and isinstance(keys[0], str) else None
    queue = last.get("queue")
    return routing_key, queue if isinstance(queue, str) else None


def describe(message: AbstractIncomingMessage) -> dict[str, Any]:
    """What an operator needs to judge a dead letter: why and where it died, and what it says."""
    headers = dict(message.headers or {})
    routing_key, queue = original_route(headers)
    deaths = headers.pop("x-death", None)
    return {
        "message_id": message.message_id,
        "type": message.type,
        "original_routing_key": routing_key,
        "original_queue": queue,
        "deaths": jsonable(deaths or []),
        "headers": jsonable(headers),
        "content_type": message.content_type,
        "timestamp": jsonable(message.timestamp),
        "body_bytes": len(message.body),
        "body": _body(message.body),
    }


def _body(raw: bytes) -> Any:
    if len(raw) > MAX_BODY_SHOWN:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return {"base64": base64.b64encode(raw).decode()}


def jsonable(value: Any) -> Any:
    """AMQP header values (bytes, timestamps, decimals, nested tables) as JSON values."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


MAX_SCANNED = 1000
"""Most messages one replay looks through to find the `message_ids` asked for."""

REPLAYED_FROM_HEADER = "x-papo-replayed-from"
_BROKER_HEADERS = ("x-death", "x-delivery-count", "x-first-death-", "x-last-death-")


@dataclass
class ReplayReport:
    queue: str
    replayed: int = 0
    no_original_route: int = 0
    """Left in the queue: no `x-death` routing key to send them back with."""
    unroutable: int = 0
    """Left in the queue: no queue is bound to their routing key any more (the publish was returned)."""
    not_found: list[str] = field(default_factory=list)
    """Asked-for message ids not among the first `MAX_SCANNED` messages of the queue."""
    error: str | None = None
    """Why the replay stopped early; what was not confirmed is still in the queue."""


async def replay(
    channel: AbstractChannel, queue_name: str, *, limit: int, message_ids: Collection[str] = ()
) -> ReplayReport:
    """Replay up to `limit` messages from the head of the queue, or exactly those with `message_ids`."""
    wanted = set(message_ids)
    report = ReplayReport(queue=queue_name)
    queue = await open_queue(channel, queue_name)
    exchange = await channel.get_exchange(EXCHANGE.name, ensure=False)
    held: list[AbstractIncomingMessage] = []
    try:
        for _ in range(MAX_SCANNED):
            if (not message_ids and report.replayed >= limit) or (message_ids and not wanted):
                break
            message = await take(queue)
            if message is None:
                break
            # held until the end, acknowledged only by a confirmed replay: never lost, never seen twice
            held.append(message)
            if message_ids and message.message_id not in wanted:
                continue
            wanted.discard(message.message_id or "")
            if await _replay_one(exchange, message, queue_name, report):
                held.remove(message)
    except Exception as error:
        report.error = f"{type(error).__name__}: {error}"[:300]
        logger.warning("dead-letter replay stopped", extra={"queue": queue_name, "error": report.error})
    finally:
        await requeue_all(held)
    report.not_found = sorted(wanted)
    logger.info(
        "replayed dead letters",
        extra={"queue": queue_name, "replayed": report.replayed, "error": report.error},
    )
    return report


async def _replay_one(
    exchange: AbstractExchange, message: AbstractIncomingMessage, queue_name: str, report: ReplayReport
) -> bool:
    """Republish and then acknowledge one message; False when it must stay in the queue."""
    routing_key, _ = original_route(message.headers or {})
    if routing_key is None:
        report.no_original_route += 1
        return False
    try:
        # with publisher confirms on the channel this returns only once RabbitMQ has the message
        await exchange.publish(_copy(message, queue_name), routing_key=routing_key, mandatory=True)
    except PublishError:
        report.unroutable += 1
        return False
    await message.ack()
    report.replayed += 1
    return True


def _copy(message: AbstractIncomingMessage, queue_name: str) -> aio_pika.Message:
    headers: dict[str, Any] = {
        key: value
        for key, value in (message.headers or {}).items()
        if not any(key == name or key.startswith(name) for name in _BROKER_HEADERS)
    }
    headers[REPLAYED_FROM_HEADER] = queue_name
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )
