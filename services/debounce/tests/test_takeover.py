"""A human taking over, pauses, and stale backlog: recorded, never answered."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from redis.asyncio import Redis

from papo_common.contracts import Burst, ConversationRef
from papo_common.control import pause, paused_for, paused_reason, resume
from papo_debounce.flusher import Flusher
from papo_debounce.handlers import Debouncer
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore
from papo_testing.factories import ANA, text_message


def operator_message(message_id: str, body: str) -> object:
    return text_message(message_id, body).model_copy(update={"from_me": True})


class Setup:
    def __init__(self, store: DebounceStore, redis: Redis, settings: DebounceSettings) -> None:
        self.bursts: list[Burst] = []
        self.redis, self.settings = redis, settings
        self.debouncer = Debouncer(store, redis, settings)

        async def collect(burst: Burst) -> None:
            self.bursts.append(burst)

        async def is_paused(conversation: ConversationRef) -> str | None:
            return await paused_reason(redis, settings.redis_key_prefix, conversation)

        self.flusher = Flusher(store, collect, is_paused=is_paused)


async def test_operator_message_pauses_and_drops_the_pending_burst(
    store: DebounceStore, redis: Redis, settings: DebounceSettings
) -> None:
    s = Setup(store, redis, settings)
    await s.debouncer.handle(text_message("A", "oi, tem bolo?"))
    await s.debouncer.handle(operator_message("OP1", "Oi Ana! Tenho sim, sou a Carla."))
    assert await paused_reason(redis, settings.redis_key_prefix, ANA) == "operator"
    assert 1790 < await paused_for(redis, settings.redis_key_prefix, ANA) <= 1800
    await s.debouncer.handle(text_message("B", "que ótimo", seconds=5))
    await asyncio.sleep(0.6)
    assert await s.flusher.flush_due() == 0
    assert s.bursts == [], "the human answers; the bot neither answers now nor later"


async def test_each_operator_message_renews_the_pause(
    store: DebounceStore, redis: Redis, settings: DebounceSettings
) -> None:
    s = Setup(store, redis, settings.model_copy(update={"takeover_pause_seconds": 1.0}))
    await s.debouncer.handle(operator_message("OP1", "oi"))
    await asyncio.sleep(0.6)
    await s.debouncer.handle(operator_message("OP2", "já te respondo"))
    await asyncio.sleep(0.6)
    assert await paused_reason(redis, settings.redis_key_prefix, ANA) == "operator"
    await asyncio.sleep(0.6)
    assert await paused_reason(redis, settings.redis_key_prefix, ANA) is None
    await s.debouncer.handle(text_message("C", "ainda aí?", seconds=30))
    await asyncio.sleep(0.5)
    assert await s.flusher.flush_due() == 1, "after the pause the bot answers new messages again"
    assert [item.message_id for item in s.bursts[0].items] == ["C"]


async def test_pause_after_the_burst_was_cut_drops_it_at_flush(
    store: DebounceStore, redis: Redis, settings: DebounceSettings
) -> None:
    s = Setup(store, redis, settings)
    await s.debouncer.handle(text_message("A", "oi"))
    await asyncio.sleep(0.5)
    await pause(redis, settings.redis_key_prefix, ANA, seconds=60, reason="admin")
    assert await s.flusher.flush_due() == 0
    assert s.bursts == []
    assert await resume(redis, settings.redis_key_prefix, ANA)
    await s.debouncer.handle(text_message("B", "voltou?", seconds=9))
    await asyncio.sleep(0.5)
    assert await s.flusher.flush_due() == 1
    assert [item.message_id for item in s.bursts[0].items] == ["B"], "the dropped burst stays dropped"


async def test_stale_backlog_is_recorded_but_not_answered(
    store: DebounceStore, redis: Redis, settings: DebounceSettings
) -> None:
    s = Setup(store, redis, settings)
    old = text_message("OLD", "oi, ainda estão abertos?")
    old = old.model_copy(update={"received_at": old.sent_at + timedelta(hours=5)})
    await s.debouncer.handle(old)
    await s.debouncer.handle(old)
    await asyncio.sleep(0.5)
    assert await s.flusher.flush_due() == 0
    assert not await store.remember(old), "remembered: a redelivery will not slip into a later burst"
