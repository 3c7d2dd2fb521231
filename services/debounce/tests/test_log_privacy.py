"""No phone number, JID or message text in any debounce log line at INFO or above."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from redis.asyncio import Redis

from papo_common.contracts import Burst
from papo_common.control import pause
from papo_common.logging import JsonFormatter
from papo_debounce.debouncer import Debouncer
from papo_debounce.flusher import Flusher
from papo_debounce.settings import DebounceSettings
from papo_debounce.store import DebounceStore
from papo_testing.factories import ANA, FakeClock, audio_message, text_message, transcript

pytestmark = pytest.mark.integration

NUMBER = ANA.user_id.split("@")[0]
SECRETS = (NUMBER, ANA.user_id, "quero um bolo", "meu endereço", "Ana")


async def test_a_debounce_run_logs_neither_numbers_nor_text(
    store: DebounceStore,
    redis: Redis,
    settings: DebounceSettings,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    debouncer = Debouncer(store, redis, settings)
    delivered: list[Burst] = []
    failing = True

    async def publish(burst: Burst) -> None:
        if failing:
            raise ConnectionError(f"broker refused {burst.burst_id}")
        delivered.append(burst)

    flusher = Flusher(store, publish)
    await debouncer.handle(text_message("A", "quero um bolo"))
    await debouncer.handle(text_message("A", "quero um bolo"))
    await debouncer.handle(audio_message("V", seconds=1))
    await debouncer.handle(transcript("V", "meu endereço", seconds=1))
    stale = text_message("OLD", "quero um bolo", seconds=2)
    await debouncer.handle(stale.model_copy(update={"received_at": stale.sent_at + timedelta(hours=5)}))
    clock.advance(16)
    await flusher.flush_due()  # the publish fails: logged
    failing = False
    clock.advance(31)
    assert await flusher.flush_due() == 1  # republished after the lease: logged
    await pause(redis, settings.redis_key_prefix, ANA, seconds=60, reason="admin")
    await debouncer.handle(text_message("P", "quero um bolo", seconds=3))  # paused: logged
    await debouncer.handle(
        text_message("OP", "meu endereço", seconds=4).model_copy(update={"from_me": True})
    )  # takeover: logged
    assert delivered and len(caplog.records) >= 4, "the run exercised the logging paths"

    formatter = JsonFormatter("debounce", "stable")
    lines = [formatter.format(record) for record in caplog.records if record.levelno >= logging.INFO]
    leaks = [(secret, line) for line in lines for secret in SECRETS if secret in line]
    assert leaks == []
