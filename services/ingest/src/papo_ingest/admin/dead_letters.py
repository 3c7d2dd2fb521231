"""Looking into dead-letter queues without taking anything out of them.

RabbitMQ has no "peek": the listing takes messages with `basic.get` without acknowledging them, holds them
all (so none is seen twice), and requeues them all at the end; closing the channel would requeue them too
if the request died halfway. The dead-letter queues are quorum queues with no delivery limit, so a requeue
cannot drop a message; it only raises the queue's own `x-delivery-count`. While a listing holds them (a few
milliseconds) a concurrent listing or replay does not see those messages.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from papo_common.topology import SERVICE_QUEUES

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
