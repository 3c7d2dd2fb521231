"""deliver killed mid-send, against the real Redis: the chunk Evolution accepted right before the crash is
confirmed on redelivery by the evidence papo's own echo left (ingest's match against `OwnSends`), not sent
again; only a send whose echo never reached papo is repeated, once, after a bounded wait.

The crash is raised at the exact instant that matters: right after `sendText` answered, before anything was
recorded (as `kill -9` would leave it), or right before `sendText` was called.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from papo_common.contracts import Reply
from papo_common.evolution import ApiKeys, EvolutionClient, RetryPolicy, SentMessage
from papo_common.own_sends import OwnSends
from papo_deliver.delivery import ReplyDeliverer
from papo_deliver.ledger import DeliveryLedger
from papo_deliver.sending import TypingPace
from papo_ingest.dedupe import SeenMessages
from papo_ingest.evolution import IntakePolicy
from papo_ingest.instances import Instances
from papo_ingest.intake import Intake
from papo_ingest.senders import Senders
from papo_testing.fake_evolution import FakeEvolution

from .deliver_stack import API_KEY, make_reply

pytestmark = pytest.mark.integration

ECHO_WAIT_SECONDS = 0.5
KEYS = ApiKeys(SecretStr(API_KEY))


class Killed(BaseException):
    """What `kill -9` leaves: nothing after this point runs, no handler catches it."""


class CrashingClient(EvolutionClient):
    """Evolution's client, dying once at the chosen instant of a `sendText`."""

    crash: str | None = None

    async def send_text(self, instance: str, number: str, text: str, *, delay_ms: int = 0) -> SentMessage:
        if self.crash == "before_send":
            self.crash = None
            raise Killed
        message = await super().send_text(instance, number, text, delay_ms=delay_ms)
        if self.crash == "after_send":
            self.crash = None
            raise Killed
        return message


@asynccontextmanager
async def echo_receiver(intake: Intake) -> AsyncIterator[str]:
    """ingest's receive side behind a bare HTTP endpoint, where the fake Evolution posts `send.message`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await intake.receive(json.loads(await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/webhook/evolution"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def own_sends(redis_client: Redis, redis_prefix: str) -> OwnSends:
    return OwnSends(redis_client, redis_prefix)


@pytest.fixture
def intake(redis_client: Redis, redis_prefix: str, own_sends: OwnSends) -> Intake:
    async def publish(message: object) -> None:
        raise AssertionError(f"papo's own echo was taken for an operator's message: {message!r}")

    return Intake(
        publish=publish,
        seen=SeenMessages(redis_client, redis_prefix, published_ttl_seconds=600, claim_ttl_seconds=5),
        policy=IntakePolicy(),
        publish_timeout_seconds=5,
        senders=Senders(redis_prefix, own_sends),
        instances=Instances(redis_client, redis_prefix),
    )


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def deliverer(client: EvolutionClient, redis: Redis, prefix: str, own_sends: OwnSends) -> ReplyDeliverer:
    return ReplyDeliverer(
        client,
        DeliveryLedger(redis, prefix, sent_ttl_seconds=600),
        pace=TypingPace(1000, 0, 0),
        policy=RetryPolicy(2, 0.01, 0.05),
        lock_ttl_seconds=5,
        own_sends=own_sends,
        echo_wait_seconds=ECHO_WAIT_SECONDS,
    )


async def crash_then_redeliver(
    evolution: FakeEvolution,
    redis: Redis,
    prefix: str,
    own_sends: OwnSends,
    http: httpx.AsyncClient,
    reply: Reply,
    crash: str,
) -> tuple[str, ...]:
    client = CrashingClient(http, evolution.url, KEYS, 5)
    client.crash = crash
    with pytest.raises(Killed):
        await deliverer(client, redis, prefix, own_sends).deliver(reply)
    # the redelivery, in a fresh process
    fresh = EvolutionClient(http, evolution.url, KEYS, 5)
    outcome = await deliverer(fresh, redis, prefix, own_sends).deliver(reply)
    return outcome.message_ids


async def test_a_chunk_sent_right_before_a_crash_is_confirmed_by_its_echo_and_not_sent_again(
    evolution: FakeEvolution,
    redis_client: Redis,
    redis_prefix: str,
    own_sends: OwnSends,
    intake: Intake,
    http: httpx.AsyncClient,
) -> None:
    reply = make_reply("Claro, já te respondo.")
    async with echo_receiver(intake) as url:
        evolution.set_webhook(url)
        ids = await crash_then_redeliver(
            evolution, redis_client, redis_prefix, own_sends, http, reply, "after_send"
        )
    sent = evolution.sent_texts()
    assert [s.text for s in sent] == ["Claro, já te respondo."]
    assert ids == (sent[0].message_id,)


async def test_an_echo_after_the_answer_is_evidence_too(
    evolution: FakeEvolution,
    redis_client: Redis,
    redis_prefix: str,
    own_sends: OwnSends,
    intake: Intake,
    http: httpx.AsyncClient,
) -> None:
    reply = make_reply("Seu pedido saiu para entrega.")
    async with echo_receiver(intake) as url:
        evolution.set_webhook(url, echo_order="after")
        ids = await crash_then_redeliver(
            evolution, redis_client, redis_prefix, own_sends, http, reply, "after_send"
        )
    sent = evolution.sent_texts()
    assert [s.text for s in sent] == ["Seu pedido saiu para entrega."]
    assert ids == (sent[0].message_id,)


async def test_a_send_whose_echo_never_arrived_is_sent_again_once_after_the_wait(
    evolution: FakeEvolution,
    redis_client: Redis,
    redis_prefix: str,
    own_sends: OwnSends,
    http: httpx.AsyncClient,
) -> None:
    # no webhook configured: papo never hears of the first send, the documented window
    reply = make_reply("Pode me mandar o CEP?")
    started = asyncio.get_running_loop().time()
    ids = await crash_then_redeliver(
        evolution, redis_client, redis_prefix, own_sends, http, reply, "after_send"
    )
    sent = evolution.sent_texts()
    assert [s.text for s in sent] == ["Pode me mandar o CEP?"] * 2
    assert ids == (sent[1].message_id,)
    assert asyncio.get_running_loop().time() - started >= ECHO_WAIT_SECONDS


async def test_a_crash_right_before_sendtext_sends_the_chunk_once(
    evolution: FakeEvolution,
    redis_client: Redis,
    redis_prefix: str,
    own_sends: OwnSends,
    intake: Intake,
    http: httpx.AsyncClient,
) -> None:
    reply = make_reply("Anotado!")
    async with echo_receiver(intake) as url:
        evolution.set_webhook(url)
        ids = await crash_then_redeliver(
            evolution, redis_client, redis_prefix, own_sends, http, reply, "before_send"
        )
    sent = evolution.sent_texts()
    assert [s.text for s in sent] == ["Anotado!"]
    assert ids == (sent[0].message_id,)
