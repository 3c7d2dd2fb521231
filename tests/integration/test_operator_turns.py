"""An operator's message, through debounce, against the real Redis: the bot pauses for the chat and the
operator's words join the hot history the llm answers from, once, as the business's side of the talk."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from papo_common.contracts import InboundMessage
from papo_common.control import paused_reason
from papo_common.redis import ConversationKeys
from papo_debounce.debouncer import Debouncer
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore
from papo_llm.history import decode_turn, encode_turn
from papo_llm.prompt import Turn
from papo_testing.factories import ANA, text_message


@pytest.fixture
def settings(redis_prefix: str, redis_url: str) -> DebounceSettings:
    return DebounceSettings(redis_key_prefix=redis_prefix, redis_url=redis_url)


@pytest.fixture
def debouncer(redis_client: Redis, settings: DebounceSettings) -> Debouncer:
    return Debouncer(DebounceStore(redis_client, settings), redis_client, settings)


class History:
    """The hot history list, written and read in the llm's own encoding."""

    def __init__(self, redis: Redis, keys: ConversationKeys) -> None:
        self._redis, self._keys = redis, keys

    async def seed(self, turns: list[Turn]) -> None:
        await self._redis.rpush(self._keys.history, *map(encode_turn, turns))

    async def load(self) -> list[Turn]:
        return [decode_turn(raw) for raw in await self._redis.lrange(self._keys.history, 0, -1)]


@pytest.fixture
def history(redis_client: Redis, redis_prefix: str) -> History:
    return History(redis_client, ConversationKeys(redis_prefix, ANA))


def operator(message_id: str, text: str, source: str = "send.message") -> InboundMessage:
    return text_message(message_id, text).model_copy(update={"from_me": True, "source": source})


async def test_operator_text_joins_the_hot_history_and_pauses_the_bot(
    debouncer: Debouncer, history: History, redis_client: Redis, redis_prefix: str
) -> None:
    await history.seed([Turn("user", "Tem horário sábado?"), Turn("assistant", "Tenho às 10h.")])
    await debouncer.handle(operator("OP1", "Aqui é a Carla: consegui às 9h pra você."))
    await debouncer.handle(operator("OP2", "Te espero!", source="messages.upsert"))
    assert await paused_reason(redis_client, redis_prefix, ANA) == "operator"
    assert await history.load() == [
        Turn("user", "Tem horário sábado?"),
        Turn("assistant", "Tenho às 10h."),
        Turn("assistant", "Aqui é a Carla: consegui às 9h pra você."),
        Turn("assistant", "Te espero!"),
    ]


async def test_a_redelivered_operator_message_is_appended_once(
    debouncer: Debouncer, history: History
) -> None:
    await history.seed([Turn("user", "oi")])
    await debouncer.handle(operator("OP1", "Oi, é a Carla"))
    await debouncer.handle(operator("OP1", "Oi, é a Carla"))
    assert await history.load() == [Turn("user", "oi"), Turn("assistant", "Oi, é a Carla")]


async def test_without_a_hot_copy_nothing_is_appended(debouncer: Debouncer, history: History) -> None:
    # a lone operator turn would hide the history the llm reloads from PostgreSQL, operator row included
    await debouncer.handle(operator("OP1", "Oi, é a Carla"))
    assert await history.load() == []
