"""deliver replying like a person, over the real RabbitMQ and Redis and a fake Evolution API: long replies as
several messages, each typed and sent in order and once across redeliveries; the answered messages marked
read first; sends through one WhatsApp number spaced across replicas; each number called with its own key.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from faststream.rabbit import RabbitBroker
from pydantic import SecretStr

from papo_common.broker import publish
from papo_common.contracts import ConversationRef, Reply, ReplySent
from papo_common.topology import DELIVER
from papo_deliver.chunking import split_reply
from papo_deliver.settings import DeliverSettings
from papo_testing.fake_evolution import FakeEvolution, connection_closed_body, timed_out_body
from papo_testing.quiescence import settled

from .deliver_stack import SettingsFactory, reply_sent_queue, running, settings_factory
from .deliver_stack import collect as collect_messages

KEYS = {"loja": "loja-key", "clinica": "clinica-key", "padaria": "padaria-key"}
GLOBAL_KEY = "global-key"
PARAGRAPHS = [
    "Olá, Sr. João! Recebemos o seu pedido nº. 4521 e a Dra. Ana já confirmou o valor de R$ 10,50 por "
    "unidade, com frete incluso. O prazo de entrega é de 3 dias úteis... Talvez menos!",
    "Para acompanhar a entrega:\n1. Abra https://loja.exemplo.com.br/pedidos?id=4521.\n"
    '2. Toque em "Rastrear".\n3. Pronto, é só aguardar a atualização do status.',
    "Se preferir, fale com a gente pelo telefone (11) 4000-1234, de segunda a sexta. Até mais! 😊",
]
LONG_REPLY = "\n\n".join(PARAGRAPHS)
MAX_CHARS = 200


def make_reply(text: str, *, instance: str = "loja", user: int = 0) -> Reply:
    chat = f"55119876543{user:02d}@s.whatsapp.net"
    return Reply(
        reply_id=f"{instance}:{chat}:{uuid.uuid4().hex[:10]}",
        burst_id="burst",
        conversation=ConversationRef(instance=instance, user_id=chat),
        chat_id=chat,
        text=text,
        in_reply_to=(f"3A{uuid.uuid4().hex[:16].upper()}",),
        model="test-model",
        created_at=datetime.now(UTC),
    )


@pytest.fixture
async def evolution() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution(api_keys=KEYS, global_api_key=GLOBAL_KEY) as fake:
        yield fake


@pytest.fixture
def make_settings(rabbitmq_url: str, redis_url: str, redis_prefix: str) -> SettingsFactory:
    return settings_factory(
        rabbitmq_url,
        redis_url,
        redis_prefix,
        evolution_api_key=SecretStr(GLOBAL_KEY),
        evolution_api_keys={name: SecretStr(key) for name, key in KEYS.items()},
        deliver_max_chunk_chars=MAX_CHARS,
    )


async def collect(queue: AbstractQueue, reply_ids: set[str], *, timeout: float) -> list[ReplySent]:
    """The `ReplySent`s of `reply_ids` from `queue`, until each was seen once or the time is up."""

    def wanted(message: AbstractIncomingMessage) -> bool:
        return ReplySent.model_validate_json(message.body).reply_id in reply_ids

    found = await collect_messages(queue, wanted, count=len(reply_ids), timeout=timeout)
    return [ReplySent.model_validate_json(message.body) for message in found]


async def test_a_long_reply_goes_out_as_several_messages_read_then_typed_then_sent_in_order(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    reply = make_reply(LONG_REPLY)
    async with running(make_settings(evolution.url)):
        sent_queue = await reply_sent_queue(probe)
        await publish(probe, reply)
        [reply_sent] = await collect(sent_queue, {reply.reply_id}, timeout=15)

    expected = split_reply(LONG_REPLY, max_chars=MAX_CHARS, max_chunks=5)
    sent = evolution.sent_texts("loja")
    assert len(expected) == 3
    assert [s.text for s in sent] == list(expected)
    assert all(len(s.text) <= MAX_CHARS for s in sent)
    assert reply_sent.whatsapp_message_ids == tuple(s.message_id for s in sent)
    assert [r.endpoint for r in evolution.requests] == [
        "/chat/markMessageAsRead",
        *["/chat/sendPresence", "/message/sendText"] * 3,
    ]
    [read] = evolution.read_receipts("loja")
    assert (read.remote_jid, read.message_id, read.from_me) == (reply.chat_id, reply.in_reply_to[0], False)


@pytest.mark.parametrize(
    "failure",
    [(500, timed_out_body()), (400, connection_closed_body())],
    ids=["500 timed out", "400 connection closed"],
)
async def test_a_failure_on_chunk_2_of_3_is_redelivered_and_each_chunk_sent_once_in_order(
    evolution: FakeEvolution,
    make_settings: Callable[..., DeliverSettings],
    probe: RabbitBroker,
    failure: tuple[int, Any],
) -> None:
    # Both attempts of the first delivery fail on the second sendText: the message is nacked, redelivered,
    # and the redelivery resumes at chunk 2.
    evolution.fail_next("sendText", failure[0], failure[1], times=2, skip=1)
    reply = make_reply(LONG_REPLY)
    async with running(make_settings(evolution.url)):
        sent_queue = await reply_sent_queue(probe)
        await publish(probe, reply)
        [reply_sent] = await collect(sent_queue, {reply.reply_id}, timeout=20)

    sent = evolution.sent_texts("loja")
    assert [s.text for s in sent] == list(split_reply(LONG_REPLY, max_chars=MAX_CHARS, max_chunks=5))
    assert [r.status for r in evolution.requests_to("sendText")] == [201, failure[0], failure[0], 201, 201]
    times = [s.received_monotonic for s in sent]
    assert times == sorted(times)
    assert reply_sent.whatsapp_message_ids == tuple(s.message_id for s in sent)
    assert len(evolution.requests_to("markMessageAsRead")) == 1, "read once, not again on redelivery"


async def test_sends_through_one_number_are_spaced_across_two_replicas_and_other_numbers_are_not_held(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    interval = 0.5
    settings = make_settings(evolution.url, deliver_min_send_interval_ms=500, prefetch=3)
    busy = [make_reply(f"Resposta para a pessoa {n}.", user=n) for n in range(6)]
    other = make_reply("Oi da clínica!", instance="clinica")
    async with running(settings), running(settings):
        sent_queue = await reply_sent_queue(probe)
        await asyncio.gather(*(publish(probe, reply) for reply in [*busy, other]))
        confirmed = await collect(sent_queue, {r.reply_id for r in [*busy, other]}, timeout=20)

    assert len(confirmed) == 7
    times = [s.received_monotonic for s in evolution.sent_texts("loja")]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    print(f"gaps between sendText on one instance (interval {interval} s):", [f"{gap:.3f}" for gap in gaps])
    assert len(times) == 6
    # Spacing is enforced when each send is claimed in Redis; the fake's receive times add the HTTP call's
    # jitter (milliseconds, tens of them on a loaded test machine), hence the tolerance.
    assert all(gap >= interval - 0.05 for gap in gaps), gaps
    [clinica] = evolution.sent_texts("clinica")
    assert clinica.received_monotonic - times[0] < interval, "another number does not queue behind this one"
    assert clinica.received_monotonic < times[1]


async def test_a_failed_read_receipt_never_blocks_or_fails_the_reply(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    evolution.fail_next(
        "markMessageAsRead",
        500,
        {"status": 500, "error": "Internal Server Error", "response": {"message": "Read messages fail"}},
    )
    reply = make_reply("Oi! Tudo certo por aqui.")
    async with running(make_settings(evolution.url)):
        sent_queue = await reply_sent_queue(probe)
        await publish(probe, reply)
        [reply_sent] = await collect(sent_queue, {reply.reply_id}, timeout=10)

    [sent] = evolution.sent_texts()
    assert reply_sent.whatsapp_message_ids == (sent.message_id,)
    assert evolution.read_receipts() == []
    assert len(evolution.requests_to("sendText")) == 1, "sent at the first delivery, not after a retry"


async def test_marking_read_can_be_switched_off(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    reply = make_reply("Oi!")
    async with running(make_settings(evolution.url, deliver_mark_read=False)):
        sent_queue = await reply_sent_queue(probe)
        await publish(probe, reply)
        assert await collect(sent_queue, {reply.reply_id}, timeout=10)

    assert evolution.requests_to("markMessageAsRead") == []


async def test_each_reply_goes_out_through_its_own_number_with_that_numbers_key(
    evolution: FakeEvolution, make_settings: Callable[..., DeliverSettings], probe: RabbitBroker
) -> None:
    mapped = {"loja": SecretStr(KEYS["loja"]), "clinica": SecretStr(KEYS["clinica"])}  # padaria: global key
    replies = [make_reply(f"Oi, aqui é a {name}!", instance=name) for name in ("loja", "clinica", "padaria")]
    async with running(make_settings(evolution.url, evolution_api_keys=mapped)):
        sent_queue = await reply_sent_queue(probe)
        for reply in replies:
            await publish(probe, reply)
        confirmed = await collect(sent_queue, {r.reply_id for r in replies}, timeout=15)

    assert len(confirmed) == 3
    for name, key in [("loja", "loja-key"), ("clinica", "clinica-key"), ("padaria", GLOBAL_KEY)]:
        [sent] = evolution.sent_texts(name)
        assert sent.text == f"Oi, aqui é a {name}!"
        used = {(r.endpoint, r.headers["apikey"], r.status) for r in evolution.requests if r.instance == name}
        assert used == {
            ("/chat/markMessageAsRead", key, 201),
            ("/chat/sendPresence", key, 201),
            ("/message/sendText", key, 201),
        }


async def test_answers_are_withheld_while_a_human_has_taken_over_but_notices_go_out(
    evolution: FakeEvolution,
    make_settings: Callable[..., DeliverSettings],
    probe: RabbitBroker,
    redis_client: Any,
    rabbitmq_url: str,
    redis_url: str,
    redis_prefix: str,
) -> None:
    from papo_common.control import pause

    answer = make_reply("Claro, temos bolo de cenoura!")
    notice = make_reply("Certo! Um atendente humano vai te responder em breve.").model_copy(
        update={"kind": "notice"}
    )
    await pause(redis_client, redis_prefix, answer.conversation, seconds=60, reason="operator")
    async with running(make_settings(evolution.url)):
        await publish(probe, answer)
        await publish(probe, notice)
        await settled(
            rabbitmq_url, redis_url, redis_prefix, queues=DELIVER.name
        )  # both replies taken and settled
    assert [sent.text for sent in evolution.sent_texts()] == [notice.text]
