"""Who a message is from, beyond what one webhook says: the person behind all their JIDs, and whether a message
from the business's side is papo's own echo or a human operator.

One person is one conversation. WhatsApp addresses a person by phone JID or by `@lid`, and Evolution 2.3.x
shows both only sometimes, so every pair seen is kept in a Redis hash per instance (persist keeps the same
pairs in PostgreSQL). The first JID a person was seen under stays their conversation's key.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.own_sends import OwnSends
from papo_ingest.evolution import Ignored
from papo_ingest.evolution.identity import LID_SUFFIX, PHONE_SUFFIX

CANONICAL_OF = """
-- The conversation key of a person seen under `jids` (the preferred JID first) in the instance's identity
-- hash: whichever JID is already known, else the preferred one. A lone phone JID is not stored (it is what
-- the person's conversation would be keyed by anyway); a lone @lid is, so that the phone JID seen with it
-- later joins the @lid's conversation.
local function canonical_of(identity, jids)
  if #jids == 1 and not string.find(jids[1], '@lid', 1, true) then
    return redis.call('HGET', identity, jids[1]) or jids[1]
  end
  local canonical = nil
  for i = 1, #jids do
    canonical = redis.call('HGET', identity, jids[i])
    if canonical then break end
  end
  canonical = canonical or jids[1]
  for i = 1, #jids do
    redis.call('HSETNX', identity, jids[i], canonical)
  end
  return canonical
end
"""
"""A Lua function for scripts that look the person up in their own round trip (ingest's claim)."""

OWN_SEND = Ignored("own_send")
ERASE_SCAN_BATCH = 500
PERSON_SUFFIXES = (PHONE_SUFFIX, LID_SUFFIX)
"""Groups, channels and broadcasts are their own conversation: no identity to resolve."""


class Senders:
    """Rewrites a message onto its person's one conversation, and drops papo's own echoes."""

    def __init__(self, prefix: str, own_sends: OwnSends) -> None:
        self._prefix = prefix
        self._own_sends = own_sends

    def lookup(self, message: InboundMessage) -> PersonLookup:
        """The identity lookup of `message`, answered in another script's round trip (ingest's claim)."""
        return PersonLookup(identity_key(self._prefix, message.conversation.instance), message)

    async def is_own(self, message: InboundMessage) -> bool:
        """Whether a message from the business's side is papo's own echo."""
        if not message.from_me:
            return False
        chats = (message.chat_id, message.conversation.user_id, *message.aliases)
        return await self._own_sends.is_own_in(
            message.conversation.instance, chats, message.message_id, message.text
        )


class PersonLookup:
    """One message's identity lookup (`CANONICAL_OF` on `identity` with `jids`); once `answer` has its reply,
    `message` is the message on its person's conversation."""

    def __init__(self, identity: str, message: InboundMessage) -> None:
        self.message = message
        ref = message.conversation
        self.identity = identity
        self.needed = ref.user_id.endswith(PERSON_SUFFIXES)
        self.jids = (ref.user_id, *message.aliases)

    def answer(self, raw: Any) -> None:
        ref = self.message.conversation
        canonical = raw.decode() if isinstance(raw, bytes) else str(raw)
        if canonical == ref.user_id:
            return
        aliases = tuple(sorted({j for j in self.jids if j != canonical}))
        self.message = self.message.model_copy(
            update={"conversation": ref.model_copy(update={"user_id": canonical}), "aliases": aliases}
        )


def identity_key(prefix: str, instance: str) -> str:
    """The instance's identity hash: JID -> the conversation's user id."""
    return f"{prefix}:identity:{instance}"


async def forget_identities(redis: Redis, prefix: str, conversation: ConversationRef) -> int:
    """Unlink every JID of the conversation's person (an erasure); returns how many links there were."""
    key = identity_key(prefix, conversation.instance)
    user_id = conversation.user_id.encode()
    linked = [
        field
        async for field, value in redis.hscan_iter(key, count=ERASE_SCAN_BATCH)
        if user_id in (field, value)
    ]
    return int(await redis.hdel(key, *linked)) if linked else 0
