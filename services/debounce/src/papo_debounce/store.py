"""Burst state in Redis: every change is one Lua script (see `scripts.py`), so concurrent handlers and
replicas can neither lose nor double a message."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, InboundMessage, Transcript
from papo_common.redis import ConversationKeys, run_script_many
from papo_debounce import scripts
from papo_debounce.settings import DebounceSettings

Clock = Callable[[], float]
"""Seconds since the epoch. Without one the scripts read Redis `TIME`, which every replica shares."""


class Added(Enum):
    BUFFERED = 1
    DUPLICATE = 0
    PAUSED = 2


@dataclass(frozen=True)
class StoredItem:
    message_id: str
    kind: str
    text: str | None
    sent_at: datetime
    arrival: int
    """Its place in Redis's count of the conversation's messages: the order debounce took them in, which
    concurrent handlers and replicas may have interleaved."""
    received_at: float = 0.0
    """When ingest received its webhook (epoch seconds; 0 for an item buffered before it was recorded)."""


@dataclass(frozen=True)
class Flushing:
    """A claimed burst, as read in the same step as its claim."""

    conversation: ConversationRef
    token: str
    burst_id: str
    items: tuple[StoredItem, ...]
    transcripts: dict[str, dict[str, str | None]]
    chat_id: str
    push_name: str | None
    inbound_seq: int
    reason: str
    first_at: float
    claimed_at: float
    paused: str | None
    traceparent: str | None = None
    previous_seq: int | None = None
    """The inbound counter at the conversation's previous burst (None: the first, or cut by an older version)."""


def member_of(conversation: ConversationRef) -> str:
    return json.dumps([conversation.instance, conversation.user_id], separators=(",", ":"))


def conversation_of(member: bytes | str) -> ConversationRef:
    instance, user_id = json.loads(member)
    return ConversationRef(instance=instance, user_id=user_id)


class _Keys:
    def __init__(self, prefix: str, conversation: ConversationRef) -> None:
        shared = ConversationKeys(prefix, conversation)
        self.inbound_seq = shared.inbound_seq
        self.answered_seq = shared.answered_seq
        self.paused = shared.paused
        self.seen = shared.scoped("debounce:seen")
        self.items = shared.scoped("debounce:items")
        self.meta = shared.scoped("debounce:meta")
        self.pending = shared.scoped("debounce:pending")
        self.texts = shared.scoped("debounce:texts")
        self.flushing_items = shared.scoped("debounce:flushing:items")
        self.flushing_meta = shared.scoped("debounce:flushing:meta")
        self.last_cut = shared.scoped("debounce:last-cut")
        """The inbound counter at the conversation's last claimed burst: the next burst names it."""


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _flushing(conversation: ConversationRef, token: str, reply: list[Any]) -> Flushing | None:
    """Decode a CLAIM/RECLAIM reply: `{1, items, meta, texts, paused}`, or `{0}` when nothing was claimed."""
    if int(reply[0]) != 1:
        return None
    raw_items, meta, texts = _pairs(reply[1]), _pairs(reply[2]), _pairs(reply[3])
    items = []
    for value in raw_items.values():
        arrival, _, body = value.decode().partition("|")
        data = json.loads(body)
        items.append(
            StoredItem(
                data["message_id"],
                data["kind"],
                data["text"],
                datetime.fromisoformat(data["sent_at"]),
                int(arrival),
                float(data.get("received_at") or 0.0),
            )
        )
    transcripts = {
        item.message_id: json.loads(texts[item.message_id.encode()])
        for item in items
        if item.kind == "audio" and item.message_id.encode() in texts
    }
    push_name, traceparent = meta.get(b"push_name"), meta.get(b"traceparent")
    previous = meta.get(b"previous_seq")
    return Flushing(
        conversation=conversation,
        token=token,
        # a burst claimed by a replica of the version before ids were given at the claim gets a fresh one
        burst_id=meta[b"burst_id"].decode() if b"burst_id" in meta else token,
        items=tuple(items),
        transcripts=transcripts,
        chat_id=meta[b"chat_id"].decode(),
        push_name=push_name.decode() if push_name else None,
        inbound_seq=int(meta[b"inbound_seq"]),
        previous_seq=int(previous) or None if previous else None,
        reason=meta[b"reason"].decode(),
        first_at=float(meta[b"first_at"]),
        claimed_at=float(meta[b"claimed_at"]),
        paused=reply[4].decode() or None,
        traceparent=traceparent.decode() if traceparent else None,
    )


class DebounceStore:
    def __init__(self, redis: Redis, settings: DebounceSettings, *, clock: Clock | None = None) -> None:
        self._redis = redis
        self._settings = settings
        self._clock = clock
        self._prefix = settings.redis_key_prefix
        self.due_key = f"{self._prefix}:debounce:due"
        self.claims_key = f"{self._prefix}:debounce:claims"
        self._add = redis.register_script(scripts.ADD_MESSAGE)
        self._transcript = redis.register_script(scripts.ADD_TRANSCRIPT)
        self._scan = redis.register_script(scripts.SCAN)
        self._claim = redis.register_script(scripts.CLAIM)
        self._reclaim = redis.register_script(scripts.RECLAIM)
        self._complete = redis.register_script(scripts.COMPLETE)
        self._drop = redis.register_script(scripts.DROP_BURST)

    def _keys(self, conversation: ConversationRef) -> _Keys:
        return _Keys(self._prefix, conversation)

    def _now(self) -> str:
        return "" if self._clock is None else repr(self._clock())

    def _window_args(self) -> list[float | int]:
        s = self._settings
        return [s.debounce_seconds, s.debounce_max_wait_seconds, s.debounce_max_messages]

    async def add_message(self, message: InboundMessage, traceparent: str = "") -> tuple[Added, int]:
        """Add a message to its conversation's burst, in one round trip. Returns BUFFERED with its inbound
        sequence number; DUPLICATE when it was seen before (a redelivery or a duplicate webhook); PAUSED when the
        bot is paused for the conversation (the message is remembered, so it never joins a later burst)."""
        k = self._keys(message.conversation)
        item = {
            "message_id": message.message_id,
            "kind": message.kind,
            "text": message.text if message.kind == "text" else None,
            "sent_at": message.sent_at.isoformat(),
            "received_at": message.received_at.timestamp(),
        }
        s = self._settings
        added, seq = await self._add(
            keys=[
                k.seen,
                k.items,
                k.meta,
                k.pending,
                k.texts,
                k.inbound_seq,
                k.answered_seq,
                self.due_key,
                k.paused,
            ],
            args=[
                self._now(),
                message.message_id,
                json.dumps(item, ensure_ascii=False),
                "1" if message.kind == "audio" else "0",
                message.chat_id,
                message.push_name or "",
                member_of(message.conversation),
                *self._window_args(),
                s.debounce_transcription_timeout_seconds,
                s.debounce_seen_ttl_seconds,
                traceparent,
            ],
        )
        return Added(int(added)), int(seq)

    async def remember(self, message: InboundMessage) -> bool:
        """Mark a message as seen without buffering it (it will never be answered); False if seen before."""
        k = self._keys(message.conversation)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(k.seen, message.message_id)
            pipe.expire(k.seen, self._settings.debounce_seen_ttl_seconds)
            added, _ = await pipe.execute()
        return bool(added)

    async def drop_burst(self, conversation: ConversationRef) -> None:
        """Forget the burst being collected for a conversation (a human took over)."""
        k = self._keys(conversation)
        await self._drop(
            keys=[k.items, k.meta, k.pending, self.due_key, k.inbound_seq, k.answered_seq],
            args=[member_of(conversation), self._settings.debounce_seen_ttl_seconds],
        )

    async def add_transcript(self, transcript: Transcript) -> bool:
        """Record a transcript; True when it completed a voice note its burst was waiting for."""
        k = self._keys(transcript.conversation)
        payload = json.dumps({"text": transcript.text, "failure": transcript.failure}, ensure_ascii=False)
        filled = await self._transcript(
            keys=[k.meta, k.pending, k.texts, self.due_key],
            args=[
                self._now(),
                transcript.message_id,
                payload,
                member_of(transcript.conversation),
                *self._window_args(),
                self._settings.debounce_seen_ttl_seconds,
            ],
        )
        return bool(filled)

    async def scan(self, limit: int) -> tuple[list[bytes], list[bytes], float | None]:
        """Conversations whose burst is due, claims whose publisher's lease ran out, and the seconds until the
        next of either (None when nothing is waiting)."""
        due, expired, wait = await self._scan(keys=[self.due_key, self.claims_key], args=[self._now(), limit])
        seconds = float(wait)
        return list(due), list(expired), None if seconds < 0 else seconds

    async def claim(self, members: Sequence[bytes | str]) -> list[Flushing]:
        """Claim the due bursts of these conversations (one round trip for all of them). A claimed burst leaves
        the collecting keys at once, so the conversation's next burst starts while this one is published."""
        s = self._settings
        now = self._now()
        tokens = [secrets.token_hex(16) for _ in members]
        conversations = [conversation_of(member) for member in members]
        calls = []
        for member, conversation, token in zip(members, conversations, tokens, strict=True):
            k = self._keys(conversation)
            keys = [
                self.due_key,
                self.claims_key,
                k.items,
                k.meta,
                k.pending,
                k.flushing_items,
                k.flushing_meta,
                k.inbound_seq,
                k.texts,
                k.paused,
                k.last_cut,
            ]
            args = [
                now,
                member,
                s.debounce_claim_lease_seconds,
                s.debounce_max_messages,
                s.debounce_seconds,
                s.debounce_seen_ttl_seconds,
                token,
                secrets.token_hex(16),
            ]
            calls.append((keys, args))
        replies = await run_script_many(self._redis, self._claim, calls)
        return self._decoded(conversations, tokens, replies)

    async def reclaim(self, members: Sequence[bytes | str]) -> list[Flushing]:
        """Take over claims whose publisher's lease ran out; the same burst (same `burst_id`) is published
        again, and the stalled publisher can no longer complete it."""
        now = self._now()
        tokens = [secrets.token_hex(16) for _ in members]
        conversations = [conversation_of(member) for member in members]
        lease = self._settings.debounce_claim_lease_seconds
        calls = []
        for member, conversation, token in zip(members, conversations, tokens, strict=True):
            k = self._keys(conversation)
            keys = [self.claims_key, k.flushing_items, k.flushing_meta, k.texts, k.paused]
            calls.append((keys, [now, member, lease, token]))
        replies = await run_script_many(self._redis, self._reclaim, calls)
        return self._decoded(conversations, tokens, replies)

    @staticmethod
    def _decoded(
        conversations: list[ConversationRef], tokens: list[str], replies: list[Any]
    ) -> list[Flushing]:
        claimed = (
            _flushing(conversation, token, reply)
            for conversation, token, reply in zip(conversations, tokens, replies, strict=True)
        )
        return [flushing for flushing in claimed if flushing is not None]

    async def complete(self, finished: Sequence[tuple[Flushing, Sequence[str]]]) -> int:
        """Forget published (or dropped) bursts, with the transcripts they used, in one round trip. A burst
        whose claim was taken over meanwhile is left to its new holder; returns how many were forgotten."""
        calls = []
        for flushing, message_ids in finished:
            k = self._keys(flushing.conversation)
            keys = [self.claims_key, k.flushing_items, k.flushing_meta, k.texts]
            calls.append((keys, [member_of(flushing.conversation), flushing.token, *message_ids]))
        replies = await run_script_many(self._redis, self._complete, calls)
        return sum(int(reply) for reply in replies)
