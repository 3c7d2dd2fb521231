"""Erasing a person's conversation on request (LGPD art. 18, GDPR art. 17): its rows and its Redis keys.

Idempotent: erasing an erased conversation deletes nothing and succeeds. Besides the conversation's own keys,
the person leaves the shared sorted sets that name conversations (`CONVERSATION_INDEXES`: debounce's due and
claimed bursts, the llm's open and closing sessions), so no idle sweep closes their session afterwards and
persist never receives a closing record that would recreate their conversation row. What is still travelling
through the queues for that person when the erasure runs is written again by persist (and debounce)
afterwards, so pause the conversation and let the queues drain before erasing; the erasure removes the pause
too, and unlinks the person's phone JID and `@lid` (the identity map, in Redis and PostgreSQL). ingest's
dedupe marks are kept: they name an instance and a WhatsApp message id, never the person, and
they make a late retry of an erased message a duplicate instead of bringing it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from papo_common.contracts import ConversationRef
from papo_common.db.models import PersonIdentity
from papo_common.redis import CONVERSATION_INDEXES, ConversationKeys, conversation_member
from papo_ingest.admin.history import CONVERSATIONS, MESSAGES, conversation_id_query

SCAN_BATCH = 500
IDENTITIES = SQLModel.metadata.tables[str(PersonIdentity.__tablename__)]

_GLOB_SPECIALS = "\\*?[]"


@dataclass(frozen=True)
class ErasedRows:
    conversations: int
    messages: int


async def erase_rows(engine: AsyncEngine, conversation: ConversationRef) -> ErasedRows:
    """Delete the conversation and its messages in one transaction."""
    async with engine.begin() as connection:
        # deleting the messages explicitly counts them; the foreign key's cascade would delete them anyway
        messages = await connection.execute(
            delete(MESSAGES).where(
                MESSAGES.c.conversation_id.in_(conversation_id_query(conversation).scalar_subquery())
            )
        )
        await connection.execute(
            delete(IDENTITIES).where(
                IDENTITIES.c.instance == conversation.instance, IDENTITIES.c.user_id == conversation.user_id
            )
        )
        conversations = await connection.execute(
            delete(CONVERSATIONS).where(
                CONVERSATIONS.c.instance == conversation.instance,
                CONVERSATIONS.c.user_id == conversation.user_id,
            )
        )
    return ErasedRows(conversations=conversations.rowcount, messages=messages.rowcount)


def key_pattern(prefix: str, conversation: ConversationRef) -> str:
    """`ConversationKeys.pattern` with the conversation's own text escaped for SCAN's glob: an instance
    named `loja*` or a prefix with `[` must not match, and so erase, other conversations' keys."""
    literal_part = ConversationKeys(prefix, conversation).pattern.removesuffix("*")
    escaped = "".join(f"\\{ch}" if ch in _GLOB_SPECIALS else ch for ch in literal_part)
    return escaped + "*"


async def erase_from_indexes(redis: Redis, prefix: str, conversation: ConversationRef) -> int:
    """Remove the conversation from every shared sorted set; returns from how many it was removed."""
    member = conversation_member(conversation)
    async with redis.pipeline(transaction=True) as pipe:
        for index in CONVERSATION_INDEXES:
            pipe.zrem(f"{prefix}:{index}", member)
        removed = await pipe.execute()
    return sum(int(count) for count in removed)


async def erase_keys(redis: Redis, prefix: str, conversation: ConversationRef) -> int:
    """Delete every Redis key of the conversation, in batches; returns how many existed."""
    literal_part = ConversationKeys(prefix, conversation).pattern.removesuffix("*").encode()
    deleted = 0
    batch: list[bytes] = []
    async for found in redis.scan_iter(match=key_pattern(prefix, conversation), count=SCAN_BATCH):
        key = found.encode() if isinstance(found, str) else found
        # the glob is escaped; checking the literal prefix as well costs nothing and guards the escaping
        if key.startswith(literal_part):
            batch.append(key)
        if len(batch) >= SCAN_BATCH:
            deleted += await redis.delete(*batch)
            batch.clear()
    if batch:
        deleted += await redis.delete(*batch)
    return int(deleted)
