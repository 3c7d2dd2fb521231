"""Burst state in Redis: every change is one Lua script (see `scripts.py`), so concurrent handlers and
replicas can neither lose nor double a message."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, InboundMessage, Transcript
from papo_common.redis import ConversationKeys
from papo_debounce import scripts
from papo_debounce.settings import DebounceSettings


@dataclass(frozen=True)
class StoredItem:
    message_id: str
    kind: str
    text: str | None
    sent_at: datetime
    arrival: int


@dataclass(frozen=True)
class Flushing:
    """A claimed burst, as read back for publishing."""

    conversation: ConversationRef
    items: tuple[StoredItem, ...]
    transcripts: dict[str, dict[str, str | None]]
    chat_id: str
    push_name: str | None
    inbound_seq: int
    reason: str
    first_at: float
    claimed_at: float
    traceparent: str | None = None


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
        self.seen = shared.scoped("debounce:seen")
        self.items = shared.scoped("debounce:items")
        self.meta = shared.scoped("debounce:meta")
        self.pending = shared.scoped("debounce:pending")
        self.texts = shared.scoped("debounce:texts")
        self.flushing_items = shared.scoped("debounce:flushing:items")
        self.flushing_meta = shared.scoped("debounce:flushing:meta")


class DebounceStore:
    def __init__(self, redis: Redis, settings: DebounceSettings) -> None:
        self._redis = redis
        self._settings = settings
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

    def _window_args(self) -> list[float | int]:
        s = self._settings
        return [s.debounce_seconds, s.debounce_max_wait_seconds, s.debounce_max_messages]

    async def add_message(self, message: InboundMessage, traceparent: str = "") -> int | None:
        """Add a message to its conversation's burst; returns its inbound sequence number, or None when the
        message was seen before (a redelivery or a duplicate)."""
        k = self._keys(message.conversation)
        item = {
            "message_id": message.message_id,
            "kind": message.kind,
            "text": message.text if message.kind == "text" else None,
            "sent_at": message.sent_at.isoformat(),
        }
        s = self._settings
        added, seq = await self._add(
            keys=[k.seen, k.items, k.meta, k.pending, k.texts, k.inbound_seq, k.answered_seq, self.due_key],
            args=[
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
        return int(seq) if added else None

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
                transcript.message_id,
                payload,
                member_of(transcript.conversation),
                *self._window_args(),
                self._settings.debounce_seen_ttl_seconds,
            ],
        )
        return bool(filled)

    async def scan(self, limit: int = 100) -> tuple[list[bytes], list[bytes]]:
        """Conversations whose burst is due, and claims whose publisher's lease ran out."""
        due, expired = await self._scan(keys=[self.due_key, self.claims_key], args=[limit])
        return list(due), list(expired)

    async def claim(self, member: bytes | str) -> bool:
        conversation = conversation_of(member)
        k = self._keys(conversation)
        s = self._settings
        claimed = await self._claim(
            keys=[
                self.due_key,
                self.claims_key,
                k.items,
                k.meta,
                k.pending,
                k.flushing_items,
                k.flushing_meta,
                k.inbound_seq,
            ],
            args=[
                member,
                s.debounce_claim_lease_seconds,
                s.debounce_max_messages,
                s.debounce_seconds,
                s.debounce_seen_ttl_seconds,
            ],
        )
        return bool(claimed)

    async def reclaim(self, member: bytes | str) -> bool:
        return bool(
            await self._reclaim(
                keys=[self.claims_key], args=[member, self._settings.debounce_claim_lease_seconds]
            )
        )

    async def read_flushing(self, conversation: ConversationRef) -> Flushing | None:
        k = self._keys(conversation)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.flushing_items)
            pipe.hgetall(k.flushing_meta)
            raw_items, meta = await pipe.execute()
        if not raw_items or not meta:
            return None
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
                )
            )
        audio_ids = [i.message_id for i in items if i.kind == "audio"]
        transcripts: dict[str, dict[str, str | None]] = {}
        if audio_ids:
            for message_id, raw in zip(audio_ids, await self._redis.hmget(k.texts, audio_ids), strict=True):
                if raw is not None:
                    transcripts[message_id] = json.loads(raw)
        push_name = meta.get(b"push_name")
        traceparent = meta.get(b"traceparent")
        return Flushing(
            conversation=conversation,
            items=tuple(items),
            transcripts=transcripts,
            chat_id=meta[b"chat_id"].decode(),
            push_name=push_name.decode() if push_name else None,
            inbound_seq=int(meta[b"inbound_seq"]),
            reason=meta[b"reason"].decode(),
            first_at=float(meta[b"first_at"]),
            claimed_at=float(meta[b"claimed_at"]),
            traceparent=traceparent.decode() if traceparent else None,
        )

    async def complete(self, conversation: ConversationRef, message_ids: list[str]) -> None:
        k = self._keys(conversation)
        await self._complete(
            keys=[self.claims_key, k.flushing_items, k.flushing_meta, k.texts],
            args=[member_of(conversation), *message_ids],
        )
