"""A reply goes out on every Evolution channel: typing and read receipts never cost it, a channel's refusal is
remembered, and papo's own sends are known before Evolution's echo of them can arrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from papo_common.contracts import Reply
from papo_common.evolution import EvolutionClient, RetryPolicy
from papo_common.metrics import DELIVER_COURTESIES_SKIPPED
from papo_common.own_sends import OwnSends, set_instance_state
from papo_deliver.courtesy import PRESENCE, READ_RECEIPT, Courtesies, RefusalMemory
from papo_deliver.delivery import InstanceDisconnected, ReplyDeliverer
from papo_deliver.ledger import DeliveryLedger
from papo_deliver.sending import TypingPace
from papo_testing.fake_evolution import BUSINESS, CHANNELS, EVOLUTION, FakeEvolution

pytestmark = pytest.mark.integration  # a real HTTP server and Redis

PACE = TypingPace(chars_per_second=100, min_ms=50, max_ms=300)
POLICY = RetryPolicy(attempts=2, base_seconds=0.01, max_seconds=0.02)


def skipped(call: str, reason: str) -> float:
    return DELIVER_COURTESIES_SKIPPED.labels(instance="acme", call=call, reason=reason)._value.get()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=CHANNELS)
async def channel_evolution(request: pytest.FixtureRequest) -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution(api_keys={"acme": "acme-key"}, channels={"acme": request.param}) as fake:
        yield fake


def deliverer_for(
    evolution: FakeEvolution,
    http: httpx.AsyncClient,
    redis: Redis,
    prefix: str,
    *,
    refusals: RefusalMemory | None = None,
    own_sends: OwnSends | None = None,
) -> ReplyDeliverer:
    client = EvolutionClient(http, evolution.url, SecretStr("acme-key"), timeout_seconds=2.0)
    return ReplyDeliverer(
        client,
        DeliveryLedger(redis, prefix, sent_ttl_seconds=600),
        pace=PACE,
        policy=POLICY,
        lock_ttl_seconds=5,
        mark_read=True,
        courtesies=Courtesies(client, timeout_seconds=1.0, refusals=refusals),
        own_sends=own_sends,
    )


async def test_every_channel_gets_its_reply(
    channel_evolution: FakeEvolution,
    http: httpx.AsyncClient,
    redis: Redis,
    redis_prefix: str,
    make_reply: Callable[..., Reply],
) -> None:
    deliverer = deliverer_for(channel_evolution, http, redis, redis_prefix)

    outcome = await deliverer.deliver(make_reply("x" * 20))  # 200 ms of typing

    [sent] = channel_evolution.sent_texts("acme")
    assert sent.text == "x" * 20
    assert outcome.message_ids == (sent.message_id,)
    send_text = channel_evolution.requests_to("sendText")[0]
    if channel_evolution.requests_to("sendPresence")[0].status == 201:
        assert send_text.json["delay"] == 0  # typing was shown by sendPresence
    else:
        assert 0 < send_text.json["delay"] <= 200  # sendText types instead


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        (EVOLUTION, "Method not available on Evolution Channel"),
        (BUSINESS, "Method not available on WhatsApp Business API"),
    ],
)
async def test_a_channel_that_refuses_typing_and_receipts_is_not_asked_again_for_a_while(
    channel: str,
    message: str,
    http: httpx.AsyncClient,
    redis: Redis,
    redis_prefix: str,
    make_reply: Callable[..., Reply],
) -> None:
    clock = Clock()
    refusals = RefusalMemory(600, clock=clock)
    before = (skipped(PRESENCE, "unsupported"), skipped(READ_RECEIPT, "unsupported"))
    async with FakeEvolution(api_keys={"acme": "acme-key"}, channels={"acme": channel}) as evolution:
        deliverer = deliverer_for(evolution, http, redis, redis_prefix, refusals=refusals)
        await deliverer.deliver(make_reply("primeira"))
        refused = [r for r in evolution.requests if r.status == 400]
        assert [r.endpoint for r in refused] == ["/chat/markMessageAsRead", "/chat/sendPresence"]
        assert all(r.answer["response"]["message"] == [message] for r in refused)

        await deliverer.deliver(make_reply("segunda"))
        clock.now += 601
        await deliverer.deliver(make_reply("terceira"))

    assert [s.text for s in evolution.sent_texts()] == ["primeira", "segunda", "terceira"]
    assert len(evolution.requests_to("sendPresence")) == 2, "not asked while remembered, asked again after"
    assert len(evolution.requests_to("markMessageAsRead")) == 2
    after = (skipped(PRESENCE, "unsupported"), skipped(READ_RECEIPT, "unsupported"))
    assert (after[0] - before[0], after[1] - before[1]) == (3, 3)


async def test_a_hanging_typing_call_delays_the_reply_only_by_its_own_timeout(
    evolution: FakeEvolution,
    http: httpx.AsyncClient,
    redis: Redis,
    redis_prefix: str,
    make_reply: Callable[..., Reply],
) -> None:
    evolution.hang_next("sendPresence", 5.0)
    client = EvolutionClient(http, evolution.url, SecretStr("acme-key"), timeout_seconds=2.0)
    deliverer = ReplyDeliverer(
        client,
        DeliveryLedger(redis, redis_prefix, sent_ttl_seconds=600),
        pace=PACE,
        policy=POLICY,
        lock_ttl_seconds=10,
        courtesies=Courtesies(client, timeout_seconds=0.2),
    )
    before = skipped(PRESENCE, "failed")

    await deliverer.deliver(make_reply("oi"))  # 50 ms of typing

    presence, send_text = evolution.requests[:2]
    assert send_text.received_monotonic - presence.received_monotonic < 1.0
    assert skipped(PRESENCE, "failed") == before + 1


async def test_papos_own_send_is_expected_before_sendText_and_its_id_recorded_after(
    evolution: FakeEvolution,
    http: httpx.AsyncClient,
    redis: Redis,
    redis_prefix: str,
    make_reply: Callable[..., Reply],
) -> None:
    own = OwnSends(redis, redis_prefix)
    seen_during_send: list[bool] = []
    client = EvolutionClient(http, evolution.url, SecretStr("acme-key"), timeout_seconds=2.0)

    class Watching(EvolutionClient):
        async def send_text(self, instance: str, number: str, text: str, *, delay_ms: int = 0):  # type: ignore[no-untyped-def]
            # what debounce would conclude if Evolution's echo arrived now, before the HTTP answer
            seen_during_send.append(await own.is_own(instance, number, "not-known-yet", text))
            return await client.send_text(instance, number, text, delay_ms=delay_ms)

    watching = Watching(http, evolution.url, SecretStr("acme-key"), 2.0)
    deliverer = ReplyDeliverer(
        watching,
        DeliveryLedger(redis, redis_prefix, sent_ttl_seconds=600),
        pace=PACE,
        policy=POLICY,
        lock_ttl_seconds=5,
        own_sends=own,
    )
    reply = make_reply("Claro, já te respondo.")
    outcome = await deliverer.deliver(reply)

    assert seen_during_send == [True]
    [message_id] = outcome.message_ids
    assert await own.is_own("acme", reply.chat_id, message_id, None)
    assert not await own.is_own("acme", reply.chat_id, "3EB0OPERATOR", "Sou a Ana, do atendimento.")


@pytest.mark.parametrize("order", ["before", "after"])
async def test_the_send_message_echo_is_papos_own_in_either_order(
    order: str,
    http: httpx.AsyncClient,
    redis: Redis,
    redis_prefix: str,
    make_reply: Callable[..., Reply],
) -> None:
    own = OwnSends(redis, redis_prefix)
    verdicts: list[bool] = []
    answered = asyncio.Event()

    async def receive(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        envelope = json.loads(await reader.readexactly(length))
        data = envelope["data"]
        verdicts.append(
            await own.is_own(
                envelope["instance"],
                data["key"]["remoteJid"],
                data["key"]["id"],
                data["message"]["conversation"],
            )
        )
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        answered.set()

    server = await asyncio.start_server(receive, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with (
        server,
        FakeEvolution(
            api_keys={"acme": "acme-key"},
            channels={"acme": EVOLUTION},
            webhook_url=f"http://127.0.0.1:{port}/webhook/evolution",
            echo_order=order,  # type: ignore[arg-type]
        ) as evolution,
    ):
        await deliverer_for(evolution, http, redis, redis_prefix, own_sends=own).deliver(
            make_reply("Bom dia!")
        )
        await asyncio.wait_for(answered.wait(), 5)

    [webhook] = evolution.delivered_webhooks("send.message")
    assert webhook.status == 200
    assert webhook.body["data"]["key"]["remoteJid"] == "5511987654321"  # bare digits on this channel
    assert "sender" not in webhook.body
    assert verdicts == [True]


async def test_replies_of_a_disconnected_instance_are_held_for_redelivery(
    evolution: FakeEvolution,
    http: httpx.AsyncClient,
    redis: Redis,
    redis_prefix: str,
    make_reply: Callable[..., Reply],
) -> None:
    deliverer = deliverer_for(evolution, http, redis, redis_prefix)
    await set_instance_state(redis, redis_prefix, "acme", "close")

    with pytest.raises(InstanceDisconnected):
        await deliverer.handle(make_reply())
    assert evolution.requests == []

    await set_instance_state(redis, redis_prefix, "acme", "open")
    assert await deliverer.handle(make_reply()) is not None
    assert len(evolution.sent_texts()) == 1


async def test_an_operator_repeating_papos_words_after_the_send_is_still_an_operator(
    evolution: FakeEvolution,
    http: httpx.AsyncClient,
    redis: Redis,
    redis_prefix: str,
    make_reply: Callable[..., Reply],
) -> None:
    own = OwnSends(redis, redis_prefix)
    reply = make_reply("Nosso endereço é Rua das Flores, 12.")
    [papos_id] = (
        await deliverer_for(evolution, http, redis, redis_prefix, own_sends=own).deliver(reply)
    ).message_ids

    # seen on the real 2.3.7 server: an operator copied papo's answer word for word a few seconds later
    assert not await own.is_own("acme", reply.chat_id, "operator-copy", reply.text)
    assert await own.is_own("acme", reply.chat_id, papos_id, reply.text), "papo's own echo, by its id"
