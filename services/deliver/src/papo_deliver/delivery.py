"""Delivering one reply exactly once per chunk, across redeliveries and replicas.

Under the reply's lock: fix how the reply is split (once, on its first delivery), read which chunks Evolution
already accepted, mark the answered messages as read before the first chunk, send the others in order, and
record each one the moment Evolution accepts it. Each chunk is marked in flight right before its `sendText`;
a redelivery that finds one in flight but not recorded (the previous holder was killed mid-send) waits up to
`echo_wait_seconds` for the evidence papo's own echo leaves (`OwnSends.sent_evidence`) and confirms the chunk
with it; only without evidence is the chunk sent again. A redelivery of a fully sent reply sends nothing and reports the
recorded ids again, so the `ReplySent` that may have been lost with a crash is published after all.

Replies of one conversation leave in the order the llm wrote them: a reply that `follows` another
(`Reply.follows`) waits until that one is settled (sent, withheld or dead-lettered), for up to
`order_hold_seconds` in the handler, then by redelivery with backoff (`EarlierReplyPending`), never into the
dead-letter queue for it. A predecessor still unsettled `order_horizon_seconds` after its successor first
waited is abandoned: the successor goes out, and a warning says so.

Before any of that, `handle` withholds an answer to a chat a human took over, and holds every reply of an
instance known to be disconnected (`connection.update` state `close`): it is redelivered later, with backoff,
instead of failing against a closed WhatsApp session.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from papo_common.contracts import Reply, ReplySent, utcnow
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.evolution import EvolutionClient, RetryPolicy, SentMessage, evolution_number
from papo_common.metrics import REPLIES
from papo_common.own_sends import OwnSends
from papo_common.privacy import conversation_ref
from papo_common.resilience import retry_transient
from papo_deliver.chunking import split_reply
from papo_deliver.courtesy import Courtesies
from papo_deliver.ledger import DeliveryLedger, Queue, ReplyLock, SentChunk
from papo_deliver.send_slots import SendSlots
from papo_deliver.sending import UNSPACED, Chat, TypingPace, send_texts

logger = logging.getLogger(__name__)

_RECORD_ATTEMPTS = 3
_EVIDENCE_POLL_SECONDS = 0.05
_ORDER_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class DeliveryOutcome:
    message_ids: tuple[str, ...]
    """WhatsApp's ids of the reply's chunks, in order."""
    sent_at: datetime
    """When the last chunk was accepted."""
    already_sent: bool
    """True when every chunk had been sent before this delivery (a redelivery or a duplicate)."""


class EarlierReplyPending(DependencyUnavailable):
    """An earlier reply of the conversation is not sent yet: this one waits (redelivered with backoff)."""


@dataclass(frozen=True)
class ReplyOrder:
    hold_seconds: float = 15.0
    """How long a reply waits in the handler for its predecessor before it is handed back for redelivery."""
    horizon_seconds: float = 600.0
    """How long a reply waits for its predecessor in all, after which the predecessor is abandoned."""
    clock: Callable[[], float] = time.time


class InstanceDisconnected(DependencyUnavailable):
    """The instance's WhatsApp session is closed: the reply waits (redelivered with backoff) until it opens."""


@dataclass(frozen=True)
class ChunkLimits:
    max_chars: int = 600
    max_chunks: int = 5


class ReplyDeliverer:
    def __init__(
        self,
        client: EvolutionClient,
        ledger: DeliveryLedger,
        *,
        pace: TypingPace,
        policy: RetryPolicy,
        lock_ttl_seconds: float,
        chunk_limits: ChunkLimits | None = None,
        slots: SendSlots = UNSPACED,
        mark_read: bool = False,
        courtesies: Courtesies | None = None,
        own_sends: OwnSends | None = None,
        echo_wait_seconds: float = 5.0,
        order: ReplyOrder | None = None,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._pace = pace
        self._policy = policy
        self._lock_ttl_seconds = lock_ttl_seconds
        self._chunk_limits = chunk_limits or ChunkLimits()
        self._slots = slots
        self._mark_read = mark_read
        self._courtesies = courtesies if courtesies is not None else Courtesies(client)
        self._own_sends = own_sends
        self._echo_wait_seconds = echo_wait_seconds
        self._order = order or ReplyOrder()

    async def handle(self, reply: Reply) -> ReplySent | None:
        """What deliver does with one `Reply`: None when it is withheld (a human took over the chat), else
        the `ReplySent` to publish once every chunk is out. Raises `InstanceDisconnected` while the
        instance is known to be closed, and what `deliver` raises."""
        instance = reply.conversation.instance
        paused, instance_state = await self._ledger.standing(reply)
        if reply.kind == "answer" and paused:
            # A human took over while the answer was being written: theirs is the answer now. Notices
            # ("a human will answer you") still go out.
            REPLIES.labels(instance=instance, outcome="withheld").inc()
            logger.info("reply withheld: the bot is paused", extra={"reply_id": reply.reply_id})
            await self._ledger.settle(reply, "withheld")
            return None
        if instance_state == "close":
            REPLIES.labels(instance=instance, outcome="held").inc()
            raise InstanceDisconnected(f"instance {instance!r} is disconnected from WhatsApp")
        await self._wait_for_predecessor(reply)
        try:
            outcome = await self.deliver(reply)
        except PermanentError:
            REPLIES.labels(instance=instance, outcome="failed").inc()
            # dead-lettered: the replies after it must not wait for it
            await self._ledger.settle(reply, "dead-lettered")
            raise
        except DependencyUnavailable:
            REPLIES.labels(instance=instance, outcome="failed").inc()
            raise
        await self._ledger.settle(reply, "sent")
        REPLIES.labels(instance=instance, outcome="duplicate" if outcome.already_sent else "sent").inc()
        # Published after the send is recorded: a crash in between redelivers the reply, which then sends
        # nothing and publishes this again.
        return ReplySent(
            reply_id=reply.reply_id,
            conversation=reply.conversation,
            whatsapp_message_ids=outcome.message_ids,
            sent_at=outcome.sent_at,
        )

    async def deliver(self, reply: Reply) -> DeliveryOutcome:
        """Send what of `reply` was not sent yet. Raises `PermanentError` when it can never be sent, and
        `DependencyUnavailable` (Evolution failing, another consumer sending it) when it may later."""
        chat = Chat(reply.conversation.instance, evolution_number(reply.chat_id), reply.chat_id)
        lock = self._ledger.lock(
            reply, ttl_seconds=self._lock_ttl_seconds, wait_seconds=self._lock_ttl_seconds
        )
        async with lock:
            limits = self._chunk_limits
            split = split_reply(reply.text, max_chars=limits.max_chars, max_chunks=limits.max_chunks)
            progress = await self._ledger.progress(reply, split)
            texts, sent = progress.texts, progress.sent
            already_sent = all(index in sent for index in range(len(texts)))

            own_sends = self._own_sends
            chat_jid = chat.jid or chat.number

            async def record(index: int, message: SentMessage) -> None:
                # With the chunk's record, in its transaction: from now on only the id is papo's, so an operator
                # who sends the same words later is still an operator.
                also = None
                if own_sends is not None:
                    also = functools.partial(
                        own_sends.record_on,
                        instance=chat.instance,
                        chat_jid=chat_jid,
                        message_id=message.message_id,
                        text=texts[index],
                    )
                sent[index] = SentChunk(message.message_id, utcnow())
                await self._record(reply, index, sent[index], also=also)

            async def mark_in_flight(index: int) -> None:
                # With the mark, in its transaction: Evolution may emit `send.message` before `sendText`
                # answers, and that echo must be known as papo's.
                also = None
                if own_sends is not None:
                    also = functools.partial(
                        own_sends.expect_on, instance=chat.instance, chat_jid=chat_jid, text=texts[index]
                    )
                await self._ledger.mark_in_flight(reply, index, utcnow(), also=also)

            async def echo_evidence(text: str) -> str | None:
                return (
                    None
                    if own_sends is None
                    else await own_sends.sent_evidence(chat.instance, chat_jid, text)
                )

            async def clear_in_flight(index: int) -> None:
                # A redelivery must not wait for the echo of a send Evolution refused: none can come.
                await self._ledger.clear_in_flight(reply, index)

            if not already_sent:
                for index in sorted(progress.in_flight - set(sent)):
                    evidence = await self._sent_evidence(chat, texts[index], lock)
                    if evidence is None:
                        break  # not sent, as far as papo can tell: it is sent again below
                    logger.info(
                        "a chunk sent before a crash is confirmed by its echo, not sent again",
                        extra={"reply_id": reply.reply_id, "chunk": index},
                    )
                    await record(index, SentMessage(evidence, None, None))
                already_sent = all(index in sent for index in range(len(texts)))

            if not already_sent:
                if self._mark_read and 0 not in sent:  # read once, before the first chunk
                    await lock.renew_before_call()
                    await self._courtesies.mark_read(chat.instance, reply.chat_id, reply.in_reply_to)
                await send_texts(
                    self._client,
                    chat,
                    texts,
                    pace=self._pace,
                    policy=self._policy,
                    on_sent=record,
                    on_sending=mark_in_flight,
                    on_not_sent=clear_in_flight,
                    already_sent=set(sent),
                    before_each_call=lock.renew_before_call,
                    slots=self._slots,
                    renew_every_seconds=self._lock_ttl_seconds / 3,
                    courtesies=self._courtesies,
                    evidence=echo_evidence,
                )
        chunks = [sent[index] for index in range(len(texts))]
        return DeliveryOutcome(
            message_ids=tuple(chunk.message_id for chunk in chunks),
            sent_at=max(chunk.sent_at for chunk in chunks),
            already_sent=already_sent,
        )

    async def _wait_for_predecessor(self, reply: Reply) -> None:
        """Return once the reply `reply` follows is settled or abandoned; raises `EarlierReplyPending` after
        `order.hold_seconds` of waiting here."""
        order = self._order
        if await self._ledger.predecessor_settled(reply):
            return
        since = await self._ledger.waiting_since(reply, order.clock())
        hold_until = time.monotonic() + order.hold_seconds
        while not await self._ledger.predecessor_settled(reply):
            if order.clock() - since >= order.horizon_seconds:
                logger.warning(
                    "an earlier reply of the conversation was never sent: sending the next one without it",
                    extra={"conversation": conversation_ref(reply.conversation.key)},
                )
                return
            if time.monotonic() >= hold_until:
                raise EarlierReplyPending("an earlier reply of this conversation is not sent yet")
            await asyncio.sleep(_ORDER_POLL_SECONDS)

    async def _sent_evidence(self, chat: Chat, text: str, lock: ReplyLock) -> str | None:
        """The message id papo's own echo left for `text`, waiting up to `echo_wait_seconds` for it."""
        if self._own_sends is None:
            return None
        deadline = time.monotonic() + self._echo_wait_seconds
        while (
            evidence := await self._own_sends.sent_evidence(chat.instance, chat.jid or chat.number, text)
        ) is None:
            if time.monotonic() >= deadline:
                return None
            await lock.renew()
            await asyncio.sleep(_EVIDENCE_POLL_SECONDS)
        return evidence

    async def _record(self, reply: Reply, index: int, chunk: SentChunk, *, also: Queue | None = None) -> None:
        # The message is out: losing this record would send it again on redelivery, so a Redis hiccup here
        # is worth a few quick retries before giving up.
        retrying = retry_transient(
            attempts=_RECORD_ATTEMPTS,
            base_wait=0.2,
            max_wait=1.0,
            transient=(RedisConnectionError, RedisTimeoutError),
            what="recording a sent chunk",
        )
        try:
            await retrying(self._ledger.record_sent, reply, index, chunk, also=also)
        except DependencyUnavailable:
            logger.error(
                "sent, but could not record it: a redelivery will send it again",
                extra={"reply_id": reply.reply_id, "chunk": index, "message_id": chunk.message_id},
            )
            raise
