"""Delivering one reply exactly once per chunk, across redeliveries and replicas.

Under the reply's lock: read which chunks Evolution already accepted, send the others in order, and record
each one the moment Evolution accepts it. A redelivery of a fully sent reply sends nothing and reports the
recorded ids again, so the `ReplySent` that may have been lost with a crash is published after all.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from papo_common.contracts import Reply, utcnow
from papo_deliver.evolution import EvolutionClient, SentMessage, evolution_number
from papo_deliver.ledger import DeliveryLedger, SentChunk
from papo_deliver.pacing import TypingPace
from papo_deliver.retry import RetryPolicy
from papo_deliver.sending import Chat, send_texts

logger = logging.getLogger(__name__)

_RECORD_ATTEMPTS = 3


@dataclass(frozen=True)
class DeliveryOutcome:
    message_ids: tuple[str, ...]
    """WhatsApp's ids of the reply's chunks, in order."""
    sent_at: datetime
    """When the last chunk was accepted."""
    already_sent: bool
    """True when every chunk had been sent before this delivery (a redelivery or a duplicate)."""


def chunks_of(reply: Reply) -> tuple[str, ...]:
    """The messages a reply is sent as. One today; splitting a reply into several is a later change, and the
    ledger is keyed per chunk index already."""
    return (reply.text,)


class ReplyDeliverer:
    def __init__(
        self,
        client: EvolutionClient,
        ledger: DeliveryLedger,
        *,
        pace: TypingPace,
        policy: RetryPolicy,
        lock_ttl_seconds: float,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._pace = pace
        self._policy = policy
        self._lock_ttl_seconds = lock_ttl_seconds

    async def deliver(self, reply: Reply) -> DeliveryOutcome:
        """Send what of `reply` was not sent yet. Raises `PermanentError` when it can never be sent, and
        `DependencyUnavailable` (Evolution failing, another consumer sending it) when it may later."""
        texts = chunks_of(reply)
        chat = Chat(reply.conversation.instance, evolution_number(reply.chat_id))
        lock = self._ledger.lock(
            reply, ttl_seconds=self._lock_ttl_seconds, wait_seconds=self._lock_ttl_seconds
        )
        async with lock:
            sent = await self._ledger.sent_chunks(reply)
            already_sent = all(index in sent for index in range(len(texts)))

            async def record(index: int, message: SentMessage) -> None:
                sent[index] = SentChunk(message.message_id, utcnow())
                await self._record(reply, index, sent[index])

            if not already_sent:
                await send_texts(
                    self._client,
                    chat,
                    texts,
                    pace=self._pace,
                    policy=self._policy,
                    on_sent=record,
                    already_sent=set(sent),
                    before_each_call=lock.renew,
                )
        chunks = [sent[index] for index in range(len(texts))]
        return DeliveryOutcome(
            message_ids=tuple(chunk.message_id for chunk in chunks),
            sent_at=max(chunk.sent_at for chunk in chunks),
            already_sent=already_sent,
        )

    async def _record(self, reply: Reply, index: int, chunk: SentChunk) -> None:
        # The message is out: losing this record would send it again on redelivery, so a Redis hiccup here
        # is worth a few quick retries before giving up.
        for attempt in range(1, _RECORD_ATTEMPTS + 1):
            try:
                await self._ledger.record_sent(reply, index, chunk)
                return
            except (RedisConnectionError, RedisTimeoutError):
                if attempt == _RECORD_ATTEMPTS:
                    logger.error(
                        "sent, but could not record it: a redelivery will send it again",
                        extra={"reply_id": reply.reply_id, "chunk": index, "message_id": chunk.message_id},
                    )
                    raise
                await asyncio.sleep(0.2 * attempt)
