"""Sending texts through a real HTTP server speaking Evolution's wire format, on each of its channels."""

from __future__ import annotations

import itertools
import re
import time

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from papo_common.evolution import (
    EvolutionClient,
    EvolutionMisconfigured,
    EvolutionRejected,
    EvolutionUnavailable,
    RetryPolicy,
    SentMessage,
)
from papo_deliver.courtesy import Courtesies
from papo_deliver.send_slots import SendSlots
from papo_deliver.sending import Chat, TypingPace, send_texts
from papo_testing.fake_evolution import FakeEvolution, connection_closed_body, timed_out_body

pytestmark = pytest.mark.integration  # a real HTTP server, and Redis for the send slots

INSTANCE, API_KEY = "acme", "acme-key"
CHAT = Chat(INSTANCE, "5511987654321")
PACE = TypingPace(chars_per_second=100, min_ms=50, max_ms=300)
RETRIES = RetryPolicy(attempts=3, base_seconds=0.01, max_seconds=0.02)


async def send(client: EvolutionClient, texts: list[str], **kwargs: object) -> list[tuple[int, SentMessage]]:
    sent: list[tuple[int, SentMessage]] = []

    async def on_sent(index: int, message: SentMessage) -> None:
        sent.append((index, message))

    kwargs.setdefault("courtesies", Courtesies(client))
    await send_texts(client, CHAT, texts, pace=PACE, policy=RETRIES, on_sent=on_sent, **kwargs)  # type: ignore[arg-type]
    return sent


async def test_typing_is_shown_for_the_typing_time_then_the_text_is_sent(
    client: EvolutionClient, evolution: FakeEvolution
) -> None:
    text = "x" * 20  # 200 ms at 100 chars/s
    sent = await send(client, [text])

    presence, send_text = evolution.requests
    assert presence.path == f"/chat/sendPresence/{INSTANCE}"
    assert presence.headers["apikey"] == API_KEY
    assert presence.json == {"number": "5511987654321", "presence": "composing", "delay": 200}
    assert send_text.path == f"/message/sendText/{INSTANCE}"
    assert send_text.headers["apikey"] == API_KEY
    assert send_text.json == {"number": "5511987654321", "text": text, "delay": 0, "linkPreview": False}
    # Evolution holds sendPresence for the delay, so the text goes out only after the typing was shown.
    assert send_text.received_monotonic - presence.received_monotonic >= 0.2
    [accepted] = evolution.sent_texts(INSTANCE)
    assert sent == [(0, SentMessage(accepted.message_id, "5511987654321@s.whatsapp.net", "PENDING"))]
    assert accepted.message_id.startswith("3EB0")


async def test_chunks_go_out_in_order_each_with_its_own_typing_and_sent_ones_are_skipped(
    client: EvolutionClient, evolution: FakeEvolution
) -> None:
    sent = await send(client, ["first", "second", "third"], already_sent={1})

    assert [index for index, _ in sent] == [0, 2]
    assert [r.endpoint for r in evolution.requests] == ["/chat/sendPresence", "/message/sendText"] * 2
    assert [s.text for s in evolution.sent_texts()] == ["first", "third"]


async def test_a_lid_chat_is_addressed_by_its_full_jid(
    client: EvolutionClient, evolution: FakeEvolution
) -> None:
    sent: list[SentMessage] = []

    async def on_sent(index: int, message: SentMessage) -> None:
        sent.append(message)

    lid = Chat(INSTANCE, "83842157310076@lid")
    await send_texts(client, lid, ["oi"], pace=PACE, policy=RETRIES, on_sent=on_sent)
    assert evolution.sent_texts()[0].remote_jid == "83842157310076@lid"
    assert sent[0].remote_jid == "83842157310076@lid"


async def test_a_transient_send_failure_is_retried_and_sent_once(
    client: EvolutionClient, evolution: FakeEvolution
) -> None:
    evolution.fail_next("sendText", 400, connection_closed_body())
    evolution.fail_next("sendText", 500, timed_out_body())

    sent = await send(client, ["hello"])

    assert len(evolution.requests_to("sendText")) == 3
    assert len(evolution.sent_texts()) == 1 == len(sent)


async def test_a_send_that_keeps_failing_gives_up_after_the_attempts(
    client: EvolutionClient, evolution: FakeEvolution
) -> None:
    evolution.fail_next("sendText", 500, timed_out_body(), times=10)

    with pytest.raises(EvolutionUnavailable, match="Timed Out"):
        await send(client, ["hello"])
    assert len(evolution.requests_to("sendText")) == RETRIES.attempts
    assert evolution.sent_texts() == []


async def test_only_a_refused_send_is_reported_as_not_sent_a_timed_out_one_may_have_gone_out(
    client: EvolutionClient, evolution: FakeEvolution
) -> None:
    evolution.fail_next("sendText", 400, connection_closed_body())  # refused: WhatsApp never saw it
    evolution.fail_next("sendText", 500, timed_out_body())  # Baileys may have handed it on
    not_sent: list[int] = []

    async def on_not_sent(index: int) -> None:
        not_sent.append(index)

    sent = await send(client, ["hello"], on_not_sent=on_not_sent)

    assert not_sent == [0], "one mark cleared, for the 400 only"
    assert len(sent) == 1


async def test_a_number_not_on_whatsapp_is_permanent_and_nothing_is_sent(
    client: EvolutionClient, evolution: FakeEvolution
) -> None:
    evolution.mark_not_on_whatsapp("5511987654321")

    with pytest.raises(EvolutionRejected, match=re.escape("1 number(s) not on WhatsApp")):
        await send(client, ["hello"])
    # The typing call failed first, but only sendText decides the reply's fate.
    assert [r.status for r in evolution.requests] == [400, 400]
    assert evolution.sent_texts() == []


async def test_a_wrong_api_key_is_a_configuration_error_redelivered_later(
    evolution: FakeEvolution, http: httpx.AsyncClient
) -> None:
    wrong = EvolutionClient(http, evolution.url, SecretStr("nope"), timeout_seconds=2.0)
    with pytest.raises(EvolutionMisconfigured, match="401"):
        await send(wrong, ["hello"])
    assert len(evolution.requests_to("sendText")) == 1, "a rejected key is not hammered"


async def test_a_failed_typing_indicator_does_not_stop_the_reply_and_evolution_types_instead(
    client: EvolutionClient, evolution: FakeEvolution
) -> None:
    evolution.fail_next("sendPresence", 400, connection_closed_body())

    await send(client, ["x" * 20])

    assert [s.text for s in evolution.sent_texts()] == ["x" * 20]
    # Evolution types instead, until the send's slot: the typing time less the failed call's round trip.
    assert 0 < evolution.requests_to("sendText")[0].json["delay"] <= 200


async def test_a_hung_evolution_times_out_and_is_retried(
    evolution: FakeEvolution, http: httpx.AsyncClient
) -> None:
    impatient = EvolutionClient(http, evolution.url, SecretStr(API_KEY), timeout_seconds=0.3)
    evolution.hang_next("sendText", 1.0)

    await send(impatient, ["hello"])

    # The hung request was still processed by Evolution after we gave up: the at-least-once window the
    # README describes. The retry sent it again.
    assert len(evolution.requests_to("sendText")) == 2


async def test_typing_ends_at_the_reserved_slot_so_a_busy_instance_waits_silently_first(
    client: EvolutionClient, evolution: FakeEvolution, redis: Redis, redis_prefix: str
) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=600)
    await slots.reserve(INSTANCE)  # another conversation just sent through this number
    started = time.monotonic()

    await send(client, ["x" * 20], slots=slots)  # 200 ms of typing

    presence, send_text = evolution.requests
    # Silent until 200 ms before the slot, then typing, then the text right at the slot.
    assert presence.received_monotonic - started == pytest.approx(0.4, abs=0.06)
    assert send_text.received_monotonic - started == pytest.approx(0.6, abs=0.06)


async def test_chunks_are_spaced_by_the_interval_even_when_typing_is_shorter(
    client: EvolutionClient, evolution: FakeEvolution, redis: Redis, redis_prefix: str
) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=400)
    await send(client, ["um", "dois", "três"], slots=slots)  # 50 ms of typing each

    times = [s.received_monotonic for s in evolution.sent_texts()]
    assert [s.text for s in evolution.sent_texts()] == ["um", "dois", "três"]
    assert all(later - earlier >= 0.39 for earlier, later in itertools.pairwise(times))


async def test_a_retried_send_takes_a_fresh_slot(
    client: EvolutionClient, evolution: FakeEvolution, redis: Redis, redis_prefix: str
) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=300)
    evolution.fail_next("sendText", 400, connection_closed_body())

    await send(client, ["oi"], slots=slots)

    failed, retried = evolution.requests_to("sendText")
    assert retried.received_monotonic - failed.received_monotonic >= 0.29
    assert len(evolution.sent_texts()) == 1


async def test_the_lock_is_renewed_while_waiting_for_a_slot(
    client: EvolutionClient, evolution: FakeEvolution, redis: Redis, redis_prefix: str
) -> None:
    slots = SendSlots(redis, redis_prefix, interval_ms=500)
    await slots.reserve(INSTANCE)
    renewals = 0

    async def renew() -> None:
        nonlocal renewals
        renewals += 1

    await send(client, ["oi"], slots=slots, before_each_call=renew, renew_every_seconds=0.1)
    assert renewals >= 4  # during the ~450 ms silent wait, plus before each call
