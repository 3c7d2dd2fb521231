"""Who a message is from, beyond what one webhook says: the person behind all their JIDs, and whether a message
from the business's side is papo's own echo or a human operator.

One person is one conversation. WhatsApp addresses a person by phone JID or by `@lid`, and Evolution 2.3.x
shows both only sometimes, so every pair seen is kept in a Redis hash per instance (persist keeps the same
pairs in PostgreSQL). The first JID a person was seen under stays their conversation's key.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.own_sends import OwnSends
from papo_ingest.evolution import Ignored
from papo_ingest.evolution.identity import LID_SUFFIX, PHONE_SUFFIX

# KEYS: the instance's identity hash. ARGV: the person's JIDs, the preferred one first.
# Returns the conversation key: whichever JID is already known, else the preferred one. A lone phone JID is
# not stored (it is what the person's conversation would be keyed by anyway); a lone @lid is, so that the
# phone JID seen with it later joins the @lid's conversation.
_RESOLVE = """
if #ARGV == 1 and not string.find(ARGV[1], '@lid', 1, true) then
  return redis.call('HGET', KEYS[1], ARGV[1]) or ARGV[1]
end
local canonical = nil
for i = 1, #ARGV do
  canonical = redis.call('HGET', KEYS[1], ARGV[i])
  if canonical then break end
end
canonical = canonical or ARGV[1]
for i = 1, #ARGV do
  redis.call('HSETNX', KEYS[1], ARGV[i], canonical)
end
return canonical
"""

OWN_SEND = Ignored("own_send")
ERASE_SCAN_BATCH = 500
PERSON_SUFFIXES = (PHONE_SUFFIX, LID_SUFFIX)
"""Groups, channels and broadcasts are their own conversation: no identity to resolve."""


class Senders:
    """Rewrites a message onto its person's one conversation, and drops papo's own echoes."""

    def __init__(self, redis: Redis, prefix: str, own_sends: OwnSends) -> None:
        self._prefix = prefix
        self._own_sends = own_sends
        self._resolve: Any = redis.register_script(_RESOLVE)

    async def resolve(self, message: InboundMessage) -> InboundMessage | Ignored:
        """The message on its person's conversation, or `OWN_SEND` when papo sent it."""
        message = await self._one_person(message)
        if message.from_me and await self._is_own(message):
            return OWN_SEND
        return message

    def lookup(self, message: InboundMessage) -> PersonLookup:
        """The identity lookup of `message`, to be sent in another request's round trip (ingest's claim)."""
        return PersonLookup(self, message)

    async def is_own(self, message: InboundMessage) -> bool:
        """Whether a message from the business's side is papo's own echo."""
        return message.from_me and await self._is_own(message)

    async def _one_person(self, message: InboundMessage) -> InboundMessage:
        lookup = self.lookup(message)
        if lookup.needed:
            lookup.answer(await self._resolve(**lookup.call))
        return lookup.message

    async def _is_own(self, message: InboundMessage) -> bool:
        instance = message.conversation.instance
        chats = dict.fromkeys((message.chat_id, message.conversation.user_id, *message.aliases))
        for chat in chats:
            if await self._own_sends.is_own(instance, chat, message.message_id, message.text):
                return True
        return False


class PersonLookup:
    """One message's identity lookup: `queue` it on a pipeline, then give `answer` its reply; `message` is then
    the message on its person's conversation."""

    def __init__(self, senders: Senders, message: InboundMessage) -> None:
        self._senders = senders
        self.message = message
        ref = message.conversation
        self.needed = ref.user_id.endswith(PERSON_SUFFIXES)
        self._jids = (ref.user_id, *message.aliases)
        self.call: dict[str, Any] = {
            "keys": [identity_key(senders._prefix, ref.instance)],
            "args": list(self._jids),
        }

    async def queue(self, pipe: Pipeline) -> int:
        """Add the lookup to `pipe`; returns how many replies it adds."""
        if not self.needed:
            return 0
        # EVAL, not the registered script: a pipeline holding scripts first asks Redis whether they are
        # loaded, a second round trip; the script is short and Redis keeps it compiled
        keys, args = self.call["keys"], self.call["args"]
        await pipe.eval(_RESOLVE, len(keys), *keys, *args)
        return 1

    def answer(self, raw: Any) -> None:
        ref = self.message.conversation
        canonical = raw.decode() if isinstance(raw, bytes) else str(raw)
        if canonical == ref.user_id:
            return
        aliases = tuple(sorted({j for j in self._jids if j != canonical}))
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
