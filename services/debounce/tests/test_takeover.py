"""A human taking over, pauses, and stale backlog: recorded, never answered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from redis.asyncio import Redis

from papo_common.contracts import Burst, InboundMessage
from papo_common.control import pause, paused_for, paused_reason, resume
from papo_debounce.debouncer import Debouncer
from papo_debounce.flusher import Flusher
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore
from papo_testing.factories import ANA, FakeClock, text_message

pytestmark = pytest.mark.integration


def operator_message(message_id: str, body: str) -> InboundMessage:
    return text_message(message_id, body).model_copy(update={"from_me": True})


class Setup:
    def __init__(self, store: DebounceStore, redis: Redis, settings: DebounceSettings) -> None:
        self.bursts: list[Burst] = []
        self.redis, self.settings = redis, settings
        self.debouncer = Debouncer(store, redis, settings)

        async def collect(burst: Burst) -> None:
            self.bursts.append(burst)

        self.flusher = Flusher(store, collect)


async def test_operator_message_pauses_and_drops_the_pending_burst(
    store: DebounceStore, redis: Redis, settings: DebounceSettings, clock: FakeClock
) -> None:
    s = Setup(store, redis, settings)
    await s.debouncer.handle(text_message("A", "oi, tem bolo?"))
    await s.debouncer.handle(operator_message("OP1", "Oi Ana! Tenho sim, sou a Carla."))
    assert await paused_reason(redis, settings.redis_key_prefix, ANA) == "operator"
    assert 1790 < await paused_for(redis, settings.redis_key_prefix, ANA) <= 1800
    await s.debouncer.handle(text_message("B", "que ótimo", seconds=5))
    clock.advance(16)
    assert await s.flusher.flush_due() == 0
    assert s.bursts == [], "the human answers; the bot neither answers now nor later"


async def test_each_operator_message_renews_the_pause(
    store: DebounceStore, redis: Redis, settings: DebounceSettings, clock: FakeClock
) -> None:
    s = Setup(store, redis, settings)
    await s.debouncer.handle(operator_message("OP1", "oi"))
    prefix = settings.redis_key_prefix
    # the pause is a Redis TTL: shorten what is left of it rather than wait
    await pause(redis, prefix, ANA, seconds=5, reason="operator")
    await s.debouncer.handle(operator_message("OP2", "já te respondo"))
    assert await paused_for(redis, prefix, ANA) > 1790, "renewed to the full pause"
    assert await resume(redis, prefix, ANA)  # as when the TTL runs out
    await s.debouncer.handle(text_message("C", "ainda aí?", seconds=30))
    clock.advance(16)
    assert await s.flusher.flush_due() == 1, "after the pause the bot answers new messages again"
    assert [item.message_id for item in s.bursts[0].items] == ["C"]


async def test_pause_after_the_burst_was_cut_drops_it_at_flush(
    store: DebounceStore, redis: Redis, settings: DebounceSettings, clock: FakeClock
) -> None:
    s = Setup(store, redis, settings)
    await s.debouncer.handle(text_message("A", "oi"))
    clock.advance(16)
    await pause(redis, settings.redis_key_prefix, ANA, seconds=60, reason="admin")
    assert await s.flusher.flush_due() == 0
    assert s.bursts == []
    assert await resume(redis, settings.redis_key_prefix, ANA)
    await s.debouncer.handle(text_message("B", "voltou?", seconds=9))
    clock.advance(16)
    assert await s.flusher.flush_due() == 1
    assert [item.message_id for item in s.bursts[0].items] == ["B"], "the dropped burst stays dropped"


async def test_message_while_paused_is_remembered_not_answered(
    store: DebounceStore, redis: Redis, settings: DebounceSettings, clock: FakeClock
) -> None:
    s = Setup(store, redis, settings)
    await pause(redis, settings.redis_key_prefix, ANA, seconds=60, reason="admin")
    await s.debouncer.handle(text_message("A", "alguém aí?"))
    assert await resume(redis, settings.redis_key_prefix, ANA)
    await s.debouncer.handle(text_message("A", "alguém aí?"))  # redelivered after the pause
    clock.advance(16)
    assert await s.flusher.flush_due() == 0
    assert not await store.remember(text_message("A", "alguém aí?"))


async def test_stale_backlog_is_recorded_but_not_answered(
    store: DebounceStore, redis: Redis, settings: DebounceSettings, clock: FakeClock
) -> None:
    s = Setup(store, redis, settings)
    old = text_message("OLD", "oi, ainda estão abertos?")
    old = old.model_copy(update={"received_at": old.sent_at + timedelta(hours=5)})
    await s.debouncer.handle(old)
    await s.debouncer.handle(old)
    clock.advance(16)
    assert await s.flusher.flush_due() == 0
    assert not await store.remember(old), "remembered: a redelivery will not slip into a later burst"
