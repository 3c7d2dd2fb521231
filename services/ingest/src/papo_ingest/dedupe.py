"""Remembering which messages were published, so Evolution's retries and duplicate deliveries publish once.

A message id moves through two states in Redis: *claimed* (a request is publishing it; the value is that
request's random token, with a short TTL in case the process dies) and *published* (the broker confirmed
it; kept for the dedupe TTL). A failed publish deletes its own claim, so Evolution's retry is accepted. A
request that finds another's claim waits for the outcome rather than answering "duplicate" for a message
that may still fail to publish.

One Redis round trip per webhook: one script claims the id with `SET NX GET`, which says by whom when it was
taken, and, once claimed, looks the sender up in the instance's identity hash. Marking an id published
rides on the next webhook's claim: the same script first marks every id confirmed since the previous one.
Under load that is no round trip of its own; when no webhook follows within `mark_delay_seconds`, the marks
are written on their own, many ids per round trip. Until its mark is written a message is still claimed,
so a duplicate meanwhile waits for the mark rather than being published again. If the mark is lost (Redis
down, the process killed), the claim expires on its own and a later duplicate is published again and
deduplicated downstream by its message id, exactly as if the mark had been evicted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from enum import Enum

from redis.asyncio import Redis
from redis.exceptions import RedisError

from papo_ingest.senders import CANONICAL_OF, PersonLookup

logger = logging.getLogger(__name__)

PUBLISHED = b"published"

# Delete the claim only if it is still ours: after a slow publish it may have expired and been re-claimed.
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: messages the broker confirmed. ARGV[1]: the published mark, ARGV[2]: its TTL in seconds.
_MARK_PUBLISHED_SCRIPT = """
for _, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[1], 'EX', ARGV[2])
end
"""

# KEYS[1]: the message's key; KEYS[2 .. marks+1]: messages the broker confirmed since the previous claim;
# KEYS[marks+2], when the sender is to be looked up: the instance's identity hash.
# ARGV[1]: this request's token, ARGV[2]: the claim's TTL in ms, ARGV[3]: the published mark, ARGV[4]: its
# TTL in seconds, ARGV[5]: how many marks, ARGV[6...]: the sender's JIDs.
# Returns {the holder before this request (nil: claimed now), the sender's conversation key once claimed}.
_CLAIM_SCRIPT = (
    CANONICAL_OF
    + """
local marks = tonumber(ARGV[5])
for i = 2, marks + 1 do
  redis.call('SET', KEYS[i], ARGV[3], 'EX', ARGV[4])
end
local holder = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2], 'GET')
-- our own token: redis-py repeated this script after its answer was lost with the connection
if holder == ARGV[1] then holder = false end
local identity = KEYS[marks + 2]
if holder or not identity then
  return {holder}
end
return {false, canonical_of(identity, {unpack(ARGV, 6)})}
"""
)


class ClaimOutcome(Enum):
    CLAIMED = "claimed"
    """This request owns the message and must publish it, then `confirm` or `release`."""
    DUPLICATE = "duplicate"
    """Already published."""
    IN_FLIGHT = "in_flight"
    """Another request still holds the claim after the wait: let Evolution retry later."""


class SeenMessages:
    """The (instance, message id) pairs that were published, in Redis under `<prefix>:ingest:seen:`."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        published_ttl_seconds: int,
        claim_ttl_seconds: float,
        poll_seconds: float = 0.02,
        mark_delay_seconds: float = 0.02,
    ) -> None:
        self._prefix = f"{prefix}:ingest:seen"
        self._published_ttl = published_ttl_seconds
        self._claim_ttl_ms = int(claim_ttl_seconds * 1000)
        self._poll = poll_seconds
        self._claim = redis.register_script(_CLAIM_SCRIPT)
        self._release = redis.register_script(_RELEASE_SCRIPT)
        self._mark_published = redis.register_script(_MARK_PUBLISHED_SCRIPT)
        self._mark_delay = mark_delay_seconds
        self._to_confirm: list[str] = []
        self._writer: asyncio.Task[None] | None = None
        self._writer_due: asyncio.TimerHandle | None = None
        self._claims = 0
        """Claims sent so far: each carried the marks confirmed before it."""

    def key(self, instance: str, message_id: str) -> str:
        """The Redis key of one message."""
        return f"{self._prefix}:{instance}:{message_id}"

    async def claim(
        self, key: str, token: bytes, *, wait_seconds: float, person: PersonLookup | None = None
    ) -> ClaimOutcome:
        """Claim the message for publishing, or learn that it was published, waiting up to `wait_seconds`
        for a concurrent holder to finish. Once claimed, `person` is given its answer, from the same round
        trip."""
        deadline = time.monotonic() + wait_seconds
        while True:
            marks, self._to_confirm = self._to_confirm, []
            self._claims += 1
            keys: list[str] = [key, *marks]
            args: list[bytes | str | int] = [
                token,
                self._claim_ttl_ms,
                PUBLISHED,
                self._published_ttl,
                len(marks),
            ]
            if person is not None and person.needed:
                keys.append(person.identity)
                args.extend(person.jids)
            try:
                holder, *canonical = await self._claim(keys=keys, args=args)
            except BaseException:
                self._to_confirm[:0] = marks  # not written: the next claim or the writer takes them
                self._write_soon()
                raise
            if holder is None:
                if canonical and person is not None:
                    person.answer(canonical[0])
                return ClaimOutcome.CLAIMED
            if holder == PUBLISHED:
                return ClaimOutcome.DUPLICATE
            if time.monotonic() >= deadline:
                return ClaimOutcome.IN_FLIGHT
            await asyncio.sleep(self._poll)  # the holder's outcome arrives as a value: poll for it

    def confirm(self, key: str) -> None:
        """Mark the message published for the dedupe TTL: with the next webhook's claim, or written on its own
        with the others confirmed meanwhile when none comes within `mark_delay_seconds`."""
        self._to_confirm.append(key)
        self._write_soon()

    def _write_soon(self) -> None:
        if self._writer_due is None and self._to_confirm:
            self._writer_due = asyncio.get_running_loop().call_later(
                self._mark_delay, self._start_writer, self._claims
            )

    def _start_writer(self, claims_then: int | None = None) -> None:
        self._writer_due = None
        if claims_then is not None and claims_then != self._claims:
            # webhooks are coming: the next claim carries what is left, and the writer waits its turn again
            self._write_soon()
            return
        if self._to_confirm and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write_confirmed(), name="papo-ingest-confirm")

    async def flush(self) -> None:
        """Mark every confirmed message now, and wait until it is written (at shutdown, and in tests)."""
        if self._writer_due is not None:
            self._writer_due.cancel()
            self._writer_due = None
        self._start_writer()
        while self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)

    async def release(self, key: str, token: bytes) -> None:
        """Give up a claim after a failed publish, so the retry can claim it."""
        await self._release(keys=[key], args=[token])

    async def _write_confirmed(self) -> None:
        while self._to_confirm:
            keys, self._to_confirm = self._to_confirm, []
            try:
                # one script, not a pipeline: the same round trip for a fraction of the client's CPU
                await self._mark_published(keys=keys, args=[PUBLISHED, self._published_ttl])
            except (RedisError, OSError) as error:
                # the messages are safely on the broker; their claims expire by themselves
                logger.warning(
                    "published but not remembered",
                    extra={"messages": len(keys), "error": f"{type(error).__name__}: {error}"[:300]},
                )


def new_claim_token() -> bytes:
    """A random value that identifies one request's claim."""
    return os.urandom(16).hex().encode()
