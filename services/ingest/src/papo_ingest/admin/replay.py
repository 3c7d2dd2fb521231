"""Replaying dead letters: each goes back to the `papo` exchange with the routing key it had when it died.

A message is acknowledged (removed from its dead-letter queue) only after RabbitMQ confirmed the
republished copy, so a replay that fails halfway loses nothing: what was not confirmed stays in, or is
requeued to, the dead-letter queue. A crash between the confirm and the ack leaves both copies, which the
consumers' deduplication absorbs. Republishing to the exchange, not to the queue, keeps the routing key the
consumers see; every queue bound to that key gets a copy again, and each deduplicates it.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractIncomingMessage
from aio_pika.exceptions import PublishError

from papo_common.topology import EXCHANGE
from papo_ingest.admin.dead_letters import open_queue, original_route, requeue_all, take

logger = logging.getLogger(__name__)

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
