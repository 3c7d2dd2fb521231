"""The idle-session sweeper's claims carry a token: a replica that stalled past its lease cannot finish, or
remove, the claim another replica holds now."""

from __future__ import annotations

import asyncio
import json

import pytest
from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, SessionClosed
from papo_llm.sessions import SessionKeeper

PERSON = ConversationRef(instance="acme", user_id="5511999990000@s.whatsapp.net")
MEMBER = json.dumps([PERSON.instance, PERSON.user_id], separators=(",", ":"))


def keeper(redis: Redis, prefix: str, publish: object) -> SessionKeeper:
    async def forget(conversation: ConversationRef) -> None:
        return None

    return SessionKeeper(redis, prefix, idle_seconds=0, publish=publish, forget=forget)  # type: ignore[arg-type]


async def expire_leases(redis: Redis, prefix: str) -> None:
    """As if the lease had run out, without waiting for it: the claim's expiry moves into the past."""
    await redis.zadd(f"{prefix}:sessions:closing", {MEMBER: 1}, xx=True)


@pytest.mark.integration
async def test_a_sweeper_stalled_past_its_lease_cannot_drop_the_next_claim(redis: Redis, prefix: str) -> None:
    stalled, stalling = asyncio.Event(), asyncio.Event()
    closed: list[SessionClosed] = []

    async def stall(record: SessionClosed) -> None:
        stalling.set()
        await stalled.wait()

    async def record(closing: SessionClosed) -> None:
        closed.append(closing)

    async def crash(closing: SessionClosed) -> None:
        raise ConnectionError("broker went away")

    await keeper(redis, prefix, record).touch(PERSON)
    replica_a = asyncio.create_task(keeper(redis, prefix, stall).sweep())
    await stalling.wait()
    await expire_leases(redis, prefix)
    assert await keeper(redis, prefix, record).sweep() == 1, "B takes over and closes the session"
    await keeper(redis, prefix, record).touch(PERSON)  # the person writes again; the new session idles
    with pytest.raises(ConnectionError):
        await keeper(redis, prefix, crash).sweep()  # C claims it and dies before finishing
    stalled.set()
    await replica_a  # A wakes up and finishes what it started
    await expire_leases(redis, prefix)
    assert await keeper(redis, prefix, record).sweep() == 1, "C's claim survived A: D closes the new session"
    assert [c.conversation for c in closed] == [PERSON, PERSON]
