"""One webhook's way through ingest: parse, claim the message id, publish with confirm, remember it.

No web framework here: the HTTP layer turns an `Outcome` into a status code. A message is acknowledged to
Evolution ("accepted") only after the broker confirmed it; anything that could lose it answers
"unavailable" instead, which Evolution retries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from redis.exceptions import RedisError

from papo_common.contracts import InboundMessage, utcnow
from papo_ingest.dedupe import ClaimOutcome, SeenMessages, new_claim_token
from papo_ingest.evolution import ConnectionUpdate, Ignored, IntakePolicy, MalformedWebhook, parse_webhook
from papo_ingest.instances import Instances
from papo_ingest.senders import OWN_SEND, Senders

logger = logging.getLogger(__name__)

Status = Literal["accepted", "duplicate", "ignored", "rejected", "unavailable"]
Publisher = Callable[[InboundMessage], Awaitable[None]]


@dataclass(frozen=True)
class Outcome:
    """What happened to one webhook. `reason` is a short fixed code (a metric label)."""

    status: Status
    reason: str = ""
    detail: str = ""


ACCEPTED = Outcome("accepted")
DUPLICATE = Outcome("duplicate")


class Intake:
    """Turns webhook bodies into confirmed, deduplicated publishes."""

    def __init__(
        self,
        *,
        publish: Publisher,
        seen: SeenMessages,
        policy: IntakePolicy,
        publish_timeout_seconds: float,
        broker_ready: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = utcnow,
        senders: Senders | None = None,
        instances: Instances | None = None,
    ) -> None:
        self._senders = senders
        self._instances = instances
        self._publish = publish
        self._seen = seen
        self._policy = policy
        self._timeout = publish_timeout_seconds
        self._broker_ready = broker_ready
        self._clock = clock

    async def receive(self, body: Any, *, path_event: str | None = None) -> Outcome:
        """Handle one decoded webhook body."""
        try:
            parsed = parse_webhook(
                body, received_at=self._clock(), policy=self._policy, path_event=path_event
            )
        except MalformedWebhook as error:
            return Outcome("rejected", error.reason, error.detail)
        except ValidationError as error:
            # a part of the message (its voice note, the message it quotes) that no consumer could take
            return Outcome("rejected", "invalid_message", first_error(error))
        if isinstance(parsed, Ignored):
            return Outcome("ignored", parsed.reason, parsed.detail)
        if isinstance(parsed, ConnectionUpdate):
            try:
                return await self._connection_changed(parsed)
            except (RedisError, OSError) as error:
                logger.warning("redis unavailable, asking for a retry", extra={"error": _describe(error)})
                return Outcome("unavailable", "redis", "Redis is unavailable")
        if not parsed.from_me and not self._broker_ready():
            # a person's message needs the broker; the business side's may be papo's own echo, which
            # does not (checked after the claim below)
            return Outcome("unavailable", "rabbitmq", "not connected to RabbitMQ")
        return await self._publish_once(parsed)

    async def _connection_changed(self, update: ConnectionUpdate) -> Outcome:
        if self._instances is None:
            return Outcome("ignored", "event_not_handled", "connection.update")
        await self._instances.changed(update)
        return ACCEPTED

    async def _publish_once(self, message: InboundMessage) -> Outcome:
        key = self._seen.key(message.conversation.instance, message.message_id)
        token = new_claim_token()
        # the person's identity is looked up in the claim's round trip: one round trip per webhook
        person = self._senders.lookup(message) if self._senders else None
        try:
            claim = await self._seen.claim(key, token, wait_seconds=self._timeout, person=person)
            if claim is ClaimOutcome.CLAIMED and person is not None:
                message = person.message
                if self._senders is not None and await self._senders.is_own(message):
                    # remembered like a published message, with the next claim's round trip: a repeat of
                    # the echo is a duplicate, and this one costs no round trip of its own
                    self._seen.confirm(key)
                    return Outcome("ignored", OWN_SEND.reason, OWN_SEND.detail)
        except (RedisError, OSError) as error:
            logger.warning("redis unavailable, asking for a retry", extra={"error": _describe(error)})
            return Outcome("unavailable", "redis", "Redis is unavailable")
        if claim is ClaimOutcome.DUPLICATE:
            return DUPLICATE
        if claim is ClaimOutcome.IN_FLIGHT:
            return Outcome(
                "unavailable", "in_flight", "the same message is being published by another request"
            )
        # after the own-send test: papo's own echo needs no broker, and answering it while the broker is
        # away leaves deliver the evidence that its send went out
        if not self._broker_ready():
            await self._release(key, token)
            return Outcome("unavailable", "rabbitmq", "not connected to RabbitMQ")
        try:
            # a timeout scope, not wait_for: no extra task per webhook
            async with asyncio.timeout(self._timeout):
                await self._publish(message)
        except BaseException as error:
            await self._release(key, token)
            if not isinstance(error, Exception):
                raise
            logger.warning(
                "publish failed, asking for a retry",
                extra={"message_id": message.message_id, "error": _describe(error)},
            )
            return Outcome("unavailable", "rabbitmq", "RabbitMQ did not confirm the message")
        self._seen.confirm(key)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "published inbound message",
                extra={"message_id": message.message_id, "kind": message.kind, "from_me": message.from_me},
            )
        return ACCEPTED

    async def _release(self, key: str, token: bytes) -> None:
        try:
            await self._seen.release(key, token)
        except (RedisError, OSError) as error:
            # The claim expires after its short TTL, so Evolution's later retries still get through.
            logger.warning("could not release a claim", extra={"error": _describe(error)})


def first_error(error: ValidationError) -> str:
    """Where and why a contract refused a value, never the value itself."""
    first = error.errors(include_input=False, include_url=False)[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"[:200]


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]
