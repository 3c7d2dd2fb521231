"""What was already sent, and who is sending it now: the Redis state that makes a reply go out once.

Per reply, in the conversation's key space (`{prefix}:conv:{<instance>:<user>}:deliver:<reply_id>:…`):
- `…:chunks`, the texts the reply is sent as, fixed by its first delivery: a redelivery handled by a replica
  with other chunk settings (a canary, a config change) still resumes against the same split;
- `…:sent`, a hash: chunk index → `{"id": <WhatsApp message id>, "at": <ISO time>}`, written right after
  Evolution accepted that chunk, kept `deliver_sent_ttl_seconds`;
- `…:in-flight`, a hash: chunk index → ISO time, written right before that chunk's `sendText`: a redelivery that
  finds a chunk in flight but not sent knows the previous holder may have sent it (it was killed mid-send), and
  looks for the evidence papo's own echo left (`OwnSends.sent_evidence`) before sending it again;
- `…:settled`, written once the reply is done with: `sent`, `withheld` or `dead-lettered`; the reply that
  `follows` it (`Reply.follows`) is sent only after that, or after waiting `deliver_order_horizon_seconds`
  since `…:waiting-since` (the predecessor is then abandoned);
- `…:lock`, papo's one lease primitive (`papo_common.resilience.hold_lease`, redis-py's token-checked
  `Lock`), held while the reply is being sent, so two replicas handed the same reply (a redelivery racing a
  slow first delivery, or a duplicate publish) never both send. It is renewed (before a call to
  Evolution when less than two thirds of it are left, and every third of its lease in the background) and released only by its holder, so a short
  lease frees in seconds when its holder is killed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis

from papo_common.contracts import Reply
from papo_common.own_sends import instance_state_key
from papo_common.redis import ConversationKeys, Writes
from papo_common.resilience import Lease, LeaseBusy, LeaseLost, hold_lease

_POLL_SECONDS = 0.1

Queue = Callable[[Writes], None]
"""Queues more writes on ones that are about to be applied together."""

logger = logging.getLogger(__name__)


class DeliveryInProgress(LeaseBusy):
    """Another consumer holds this reply's lock: retry later, by which time it is sent or given up."""


class LockLost(LeaseLost):
    """Our lease expired and may be someone else's now: stop sending; a redelivery sees what was sent."""


@dataclass(frozen=True)
class SentChunk:
    message_id: str
    sent_at: datetime


@dataclass(frozen=True)
class Progress:
    texts: tuple[str, ...]
    """The chunks the reply is sent as."""
    sent: dict[int, SentChunk]
    """Chunks Evolution accepted, by index."""
    in_flight: set[int]
    """Chunks whose `sendText` was started, whether or not they were recorded as sent."""


def _text(raw: object) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else None if raw is None else str(raw)


def _sent_chunks(raw: Mapping[Any, Any]) -> dict[int, SentChunk]:
    chunks = {}
    for index, value in raw.items():
        record = json.loads(value)
        chunks[int(index)] = SentChunk(record["id"], datetime.fromisoformat(record["at"]))
    return chunks


class DeliveryLedger:
    """Records of sent chunks, and per-reply locks."""

    def __init__(self, redis: Redis, prefix: str, *, sent_ttl_seconds: int) -> None:
        self._redis = redis
        self._prefix = prefix
        self._sent_ttl_seconds = sent_ttl_seconds

    def _key(self, reply: Reply, suffix: str, reply_id: str | None = None) -> str:
        reply_id = reply.reply_id if reply_id is None else reply_id
        return ConversationKeys(self._prefix, reply.conversation).scoped(f"deliver:{reply_id}:{suffix}")

    async def standing(self, reply: Reply) -> tuple[str | None, str | None]:
        """Why the bot is paused in the reply's conversation (None when it is not), and its instance's last
        known state (`papo_common.own_sends.instance_state`), in one round trip."""
        conversation = reply.conversation
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(ConversationKeys(self._prefix, conversation).paused)
            pipe.get(instance_state_key(self._prefix, conversation.instance))
            paused, state = await pipe.execute()
        return _text(paused), _text(state)

    async def settle(self, reply: Reply, how: str) -> None:
        """Remember that `reply` is done with (`sent`, `withheld`, `dead-lettered`): the next may go."""
        await self._redis.set(self._key(reply, "settled"), how.encode(), ex=self._sent_ttl_seconds)

    async def predecessor_settled(self, reply: Reply) -> bool:
        """Whether the reply `reply` follows is done with (True when it follows none)."""
        if reply.follows is None:
            return True
        return bool(await self._redis.exists(self._key(reply, "settled", reply.follows)))

    async def waiting_since(self, reply: Reply, now: float) -> float:
        """When `reply` first waited for its predecessor (epoch seconds), `now` if it never did before."""
        key = self._key(reply, "waiting-since")
        stored = await self._redis.set(key, repr(now), nx=True, ex=self._sent_ttl_seconds, get=True)
        return now if stored is None else float(cast(bytes, stored))

    async def progress(self, reply: Reply, chunks: tuple[str, ...]) -> Progress:
        """Where `reply` stands, read in one round trip under its lock: the chunks it is sent as (`chunks` on
        its first delivery, the same texts ever after), those Evolution already accepted, and those whose
        `sendText` was started."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(
                self._key(reply, "chunks"), json.dumps(chunks), nx=True, ex=self._sent_ttl_seconds, get=True
            )
            pipe.hgetall(self._key(reply, "sent"))
            pipe.hkeys(self._key(reply, "in-flight"))
            stored, sent, in_flight = await pipe.execute()
        # SET ... GET answers the value that was there (bytes), or nil when ours was stored.
        texts = chunks if stored is None else tuple(json.loads(cast(bytes, stored)))
        return Progress(texts, _sent_chunks(sent), {int(index) for index in in_flight})

    async def sent_chunks(self, reply: Reply) -> dict[int, SentChunk]:
        """The chunks of `reply` that Evolution already accepted, by index."""
        return _sent_chunks(await self._redis.hgetall(self._key(reply, "sent")))

    async def record_sent(
        self, reply: Reply, index: int, chunk: SentChunk, *, also: Queue | None = None
    ) -> None:
        """Remember that chunk `index` of `reply` was sent as `chunk.message_id`; `also` queues more writes,
        applied with it atomically (one round trip)."""
        key = self._key(reply, "sent")
        value = json.dumps({"id": chunk.message_id, "at": chunk.sent_at.isoformat()})
        writes = Writes().hset(key, str(index), value).expire(key, self._sent_ttl_seconds)
        if also is not None:
            also(writes)
        await writes.apply(self._redis)

    async def mark_in_flight(
        self, reply: Reply, index: int, at: datetime, *, also: Queue | None = None
    ) -> None:
        """Remember, before its `sendText`, that chunk `index` of `reply` may be sent from now on; `also`
        queues more writes, applied with it atomically (one round trip)."""
        key = self._key(reply, "in-flight")
        writes = Writes().hset(key, str(index), at.isoformat()).expire(key, self._sent_ttl_seconds)
        if also is not None:
            also(writes)
        await writes.apply(self._redis)

    async def clear_in_flight(self, reply: Reply, index: int) -> None:
        """Forget that chunk `index` of `reply` may have been sent: Evolution refused its `sendText`."""
        await self._redis.hdel(self._key(reply, "in-flight"), str(index))

    def lock(self, reply: Reply, *, ttl_seconds: float, wait_seconds: float) -> ReplyLock:
        return ReplyLock(
            self._redis, self._key(reply, "lock"), ttl_seconds=ttl_seconds, wait_seconds=wait_seconds
        )


class ReplyLock:
    """`async with lock:` holds the reply's lease (`papo_common.resilience.hold_lease`: redis-py's
    token-checked `Lock`, renewed in the background, so the lease can be short and a killed holder's lock frees
    within seconds). It waits up to `wait_seconds` for it, else raises `DeliveryInProgress`."""

    def __init__(self, redis: Redis, key: str, *, ttl_seconds: float, wait_seconds: float) -> None:
        self._key = key
        self._holding = hold_lease(
            redis, key, lease_seconds=ttl_seconds, wait_seconds=wait_seconds, poll_seconds=_POLL_SECONDS
        )
        self._lease: Lease | None = None

    async def __aenter__(self) -> ReplyLock:
        try:
            self._lease = await self._holding.__aenter__()
        except LeaseBusy as busy:
            raise DeliveryInProgress(f"another consumer is sending this reply ({self._key})") from busy
        return self

    async def renew(self) -> None:
        """Extend the lease; raises `LockLost` when it is no longer ours."""
        if self._lease is None or not await self._lease.renew():
            raise LockLost(f"the delivery lock {self._key} expired while sending")

    async def renew_before_call(self) -> None:
        """Before a call to Evolution: make sure at least two thirds of the lease are left, renewing it only
        when less are (a lease set a moment ago needs no round trip); raises `LockLost` when it is no longer
        ours, for example because this process stalled past it."""
        if self._lease is None or not await self._lease.renew_if_older_than(self._lease.seconds / 3):
            raise LockLost(f"the delivery lock {self._key} expired while sending")

    async def __aexit__(self, *exc_info: Any) -> None:
        await self._holding.__aexit__(*exc_info)
