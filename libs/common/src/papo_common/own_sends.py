"""What papo itself sent through Evolution API, so its echo is never taken for a human at the business.

Evolution may emit `send.message` (and other linked devices a `fromMe` upsert) before its `sendText` HTTP call
answers with the message id. So deliver first `expect`s the text (a hash, kept for a short while), then `record`s
the id; an echo is papo's own when either is known for that chat.

The match also leaves evidence that the send happened: the text's expectation, answered with the message id
(`sent_evidence`). deliver reads it when it finds a chunk it had started to send but never recorded (it was
killed mid-send), and confirms the chunk instead of sending it again: Evolution has no idempotency key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from papo_common.redis import Writes

EXPECTED_TEXT_TTL_SECONDS = 15 * 60


# KEYS: id, then (expected text, evidence) per chat. ARGV: id ttl, evidence ttl, message id.
# One expected text matches one echo (GETDEL): a second message with the same words is not papo's. Later
# echoes of the same message (send.message, then a linked device's upsert) match by id; the evidence tells a
# deliver killed mid-send that this text went out.
_IS_OWN = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 1 end
for i = 2, #KEYS, 2 do
  if redis.call('GETDEL', KEYS[i]) then
    redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
    redis.call('SET', KEYS[i + 1], ARGV[3], 'EX', ARGV[2])
    return 1
  end
end
return 0
"""


def _chat(chat_jid: str) -> str:
    """The user part of a JID: Evolution's channels spell one chat as `5511...@s.whatsapp.net`, bare digits, or
    with a device suffix."""
    return chat_jid.split("@", 1)[0].split(":", 1)[0]


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.strip().encode()).hexdigest()


class OwnSends:
    """Ids and pending texts of papo's own sends, per instance and chat, in Redis."""

    def __init__(self, redis: Redis, prefix: str, *, ttl_seconds: int = 7 * 24 * 3600) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl = ttl_seconds
        self._is_own: Any = redis.register_script(_IS_OWN)

    def _id_key(self, instance: str, message_id: str) -> str:
        # WhatsApp ids are unique per instance: an echo matches whichever spelling of the chat it carries
        return f"{self._prefix}:own:{instance}:id:{message_id}"

    def _text_key(self, instance: str, chat_jid: str, text: str) -> str:
        return f"{self._prefix}:own:{instance}:text:{_chat(chat_jid)}:{_text_hash(text)}"

    def _evidence_key(self, instance: str, chat_jid: str, text: str) -> str:
        return f"{self._prefix}:own:{instance}:sent:{_chat(chat_jid)}:{_text_hash(text)}"

    async def expect(self, instance: str, chat_jid: str, text: str) -> None:
        """Call before `sendText`: an echo with this text in this chat, seen before the id is known, is papo's.
        Evidence of an earlier send of the same words is forgotten: from now on it can only be this one's."""
        writes = Writes()
        self.expect_on(writes, instance, chat_jid, text)
        await writes.apply(self._redis)

    def expect_on(self, writes: Writes, instance: str, chat_jid: str, text: str) -> None:
        """`expect`, queued on the caller's writes (deliver writes it with the chunk's in-flight mark)."""
        writes.set(self._text_key(instance, chat_jid, text), b"1", ex=EXPECTED_TEXT_TTL_SECONDS)
        writes.delete(self._evidence_key(instance, chat_jid, text))

    async def sent_evidence(self, instance: str, chat_jid: str, text: str) -> str | None:
        """The message id of the expected `text`'s send, once its echo matched or its id was recorded; None
        while neither happened."""
        return _decoded(await self._redis.get(self._evidence_key(instance, chat_jid, text)))

    async def record(self, instance: str, chat_jid: str, message_id: str, *, text: str | None = None) -> None:
        """Call once `sendText` returned the message id (`key.id`). With the `text` that was expected, the
        expectation ends here: from now on only the id is papo's, so an operator who sends the same words
        later is still an operator."""
        writes = Writes()
        self.record_on(writes, instance, chat_jid, message_id, text=text)
        await writes.apply(self._redis)

    def record_on(
        self, writes: Writes, instance: str, chat_jid: str, message_id: str, *, text: str | None = None
    ) -> None:
        """`record`, queued on the caller's writes (deliver writes it with the chunk's sent record)."""
        writes.set(self._id_key(instance, message_id), b"1", ex=self._ttl)
        if text is not None:
            writes.delete(self._text_key(instance, chat_jid, text))
            writes.set(
                self._evidence_key(instance, chat_jid, text),
                message_id.encode(),
                ex=EXPECTED_TEXT_TTL_SECONDS,
            )

    async def is_own(self, instance: str, chat_jid: str, message_id: str, text: str | None) -> bool:
        """True when papo sent this message: its id was recorded, or its text was expected in this chat."""
        return await self.is_own_in(instance, (chat_jid,), message_id, text)

    async def is_own_in(
        self, instance: str, chat_jids: Iterable[str], message_id: str, text: str | None
    ) -> bool:
        """`is_own` for a message whose chat goes by several JIDs (a phone number and a LID), in one round
        trip: its id was recorded, or its text was expected under any of them."""
        keys = [self._id_key(instance, message_id)]
        if text is not None:
            for chat in dict.fromkeys(_chat(jid) for jid in chat_jids):
                keys += [self._text_key(instance, chat, text), self._evidence_key(instance, chat, text)]
        own = await self._is_own(keys=keys, args=[self._ttl, EXPECTED_TEXT_TTL_SECONDS, message_id.encode()])
        return bool(own)


def instance_state_key(prefix: str, instance: str) -> str:
    """Where ingest keeps the instance's last `connection.update` state."""
    return f"{prefix}:instance:{instance}:state"


def _instances_key(prefix: str) -> str:
    return f"{prefix}:instances"


async def instance_state(redis: Redis, prefix: str, instance: str) -> str | None:
    """The instance's last `connection.update` state (`open`, `connecting`, `close`), or None if never seen."""
    return _decoded(await redis.get(instance_state_key(prefix, instance)))


async def set_instance_state(redis: Redis, prefix: str, instance: str, state: str) -> str | None:
    """Written by ingest on each `connection.update`; deliver holds replies while it reads `close`. Returns the
    state it replaced."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.set(instance_state_key(prefix, instance), state.encode(), get=True)
        pipe.sadd(_instances_key(prefix), instance)
        previous, _ = await pipe.execute()
    return _decoded(previous)


async def instance_states(redis: Redis, prefix: str) -> dict[str, str]:
    """Every instance's last known state, for the gauge that each ingest replica serves alike."""
    names = sorted(_decoded(n) or "" for n in await redis.smembers(_instances_key(prefix)))
    if not names:
        return {}
    values = await redis.mget([instance_state_key(prefix, name) for name in names])
    return {name: state for name, raw in zip(names, values, strict=True) if (state := _decoded(raw))}


def _decoded(raw: object) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)
