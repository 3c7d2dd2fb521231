"""An erased person stays erased: no shared Redis set names them afterwards, and the llm's idle sweep, which
runs after the erasure, closes only other people's sessions, so persist never receives a closing record that
would recreate their conversation row."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, SessionClosed
from papo_common.redis import CONVERSATION_INDEXES, conversation_member
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore
from papo_ingest.app import create_app
from papo_llm.sessions import SessionKeeper
from papo_testing.factories import text_message

from .test_admin import ADMIN, admin_settings, url


@pytest.fixture
async def admin(
    rabbitmq_url: str, redis_url: str, redis_prefix: str, database_url: str
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    app = create_app(admin_settings(rabbitmq_url, redis_url, redis_prefix, database_url))
    async with AsyncTestClient(app, timeout=30) as client:
        client.headers.update(ADMIN)
        yield client


async def indexes_naming(redis: Redis, prefix: str, conversation: ConversationRef) -> list[str]:
    member = conversation_member(conversation)
    return [
        index for index in CONVERSATION_INDEXES if await redis.zscore(f"{prefix}:{index}", member) is not None
    ]


async def test_the_idle_sweep_after_an_erasure_leaves_the_person_erased(
    admin: AsyncTestClient[Litestar], redis_client: Redis, redis_prefix: str
) -> None:
    instance = f"loja-{uuid.uuid4().hex[:8]}"
    erased = ConversationRef(instance=instance, user_id="5511999990000@s.whatsapp.net")
    bystander = ConversationRef(instance=instance, user_id="5511888880000@s.whatsapp.net")
    debounce = DebounceStore(redis_client, DebounceSettings(redis_key_prefix=redis_prefix))
    closed: list[SessionClosed] = []

    async def publish(record: SessionClosed) -> None:
        closed.append(record)

    async def forget(_: ConversationRef) -> None:
        return None

    sessions = SessionKeeper(redis_client, redis_prefix, idle_seconds=0, publish=publish, forget=forget)
    for n, conversation in enumerate((erased, bystander)):
        await debounce.add_message(text_message(f"m{n}", "oi", conversation=conversation))
        await sessions.touch(conversation)
    # the person sits in debounce's due set and in the llm's active sessions, as after any answered burst
    assert "debounce:due" in await indexes_naming(redis_client, redis_prefix, erased)
    assert "sessions:active" in await indexes_naming(redis_client, redis_prefix, erased)

    response = await admin.delete(url(erased))
    assert response.status_code == 200
    assert response.json()["redis_index_entries_deleted"] == 2
    assert await indexes_naming(redis_client, redis_prefix, erased) == []
    assert await indexes_naming(redis_client, redis_prefix, bystander) == ["debounce:due", "sessions:active"]

    # the sweep runs (it closes the bystander's idle session) and has nothing to say about the erased person
    assert await sessions.sweep() == 1
    assert [record.conversation for record in closed] == [bystander]
    assert await indexes_naming(redis_client, redis_prefix, erased) == []
