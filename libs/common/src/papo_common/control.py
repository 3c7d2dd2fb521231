"""Pausing the bot for one conversation, shared by every service that must respect it.

A pause is one Redis key with a TTL: an operator writing from the business phone, a person asking for a
human, or an admin sets it; it ends by itself when the TTL runs out, or when resumed.
"""

from __future__ import annotations

from typing import Literal

from redis.asyncio import Redis

from papo_common.contracts import ConversationRef
from papo_common.redis import ConversationKeys

PauseReason = Literal["operator", "human_requested", "admin"]


async def pause(
    redis: Redis, prefix: str, conversation: ConversationRef, *, seconds: float, reason: PauseReason
) -> None:
    """Pause (or renew the pause of) the bot for a conversation for `seconds`."""
    await redis.set(ConversationKeys(prefix, conversation).paused, reason, px=max(1, int(seconds * 1000)))


async def resume(redis: Redis, prefix: str, conversation: ConversationRef) -> bool:
    """End a pause early; False when the conversation was not paused."""
    return bool(await redis.delete(ConversationKeys(prefix, conversation).paused))


async def paused_reason(redis: Redis, prefix: str, conversation: ConversationRef) -> str | None:
    """Why the bot is paused for this conversation, or None when it may answer."""
    value = await redis.get(ConversationKeys(prefix, conversation).paused)
    return value.decode() if isinstance(value, bytes) else value


async def paused_for(redis: Redis, prefix: str, conversation: ConversationRef) -> float:
    """Seconds the pause has left (0 when not paused)."""
    milliseconds = await redis.pttl(ConversationKeys(prefix, conversation).paused)
    return max(0.0, milliseconds / 1000)
