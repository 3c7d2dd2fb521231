"""ingest's receive side against the real Redis: a message from the business's side is an operator's unless
papo sent it (whichever of the echo and sendText's answer comes first), a person's phone JID and `@lid` are
one conversation, and `connection.update` leaves the instance's state for deliver and the gauge."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.metrics import REGISTRY
from papo_common.own_sends import OwnSends, instance_state, instance_states, set_instance_state
from papo_common.redis import make_redis
from papo_ingest.dedupe import SeenMessages
from papo_ingest.evolution import ConnectionUpdate, IntakePolicy
from papo_ingest.instances import Instances
from papo_ingest.intake import ACCEPTED, DUPLICATE, Intake, Outcome
from papo_ingest.senders import Senders, forget_identities, identity_key

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evolution"
NOW = datetime(2025, 10, 14, 11, 2, 18, tzinfo=UTC)
PN = "5511912345678@s.whatsapp.net"
LID = "187340961234567@lid"
OWN_SEND = Outcome("ignored", "own_send")


def webhook(name: str, message_id: str | None = None, **key: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    if message_id is not None:
        body["data"]["key"]["id"] = message_id
    body["data"]["key"].update(key)
    return body


class Published(list[InboundMessage]):
    async def __call__(self, message: InboundMessage) -> None:
        self.append(message)


@pytest.fixture
def published() -> Published:
    return Published()


@pytest.fixture
def own_sends(redis_client: Redis, redis_prefix: str) -> OwnSends:
    return OwnSends(redis_client, redis_prefix)


@pytest.fixture
def intake(redis_client: Redis, redis_prefix: str, own_sends: OwnSends, published: Published) -> Intake:
    return Intake(
        publish=published,
        seen=SeenMessages(redis_client, redis_prefix, published_ttl_seconds=600, claim_ttl_seconds=5),
        policy=IntakePolicy(),
        publish_timeout_seconds=5,
        clock=lambda: NOW,
        senders=Senders(redis_prefix, own_sends),
        instances=Instances(redis_client, redis_prefix),
    )


# --- operator or echo ------------------------------------------------------------------------------------------


async def test_send_message_papo_did_not_send_is_an_operator_message(
    intake: Intake, published: Published
) -> None:
    assert await intake.receive(webhook("send_message")) == ACCEPTED
    [message] = published
    assert message.from_me is True
    assert message.source == "send.message"
    assert message.text == "Olá! Sábado abrimos das 9h às 18h."


async def test_echo_after_papo_recorded_the_id_is_its_own(
    intake: Intake, published: Published, own_sends: OwnSends
) -> None:
    await own_sends.expect("loja-centro", PN, "Olá! Sábado abrimos das 9h às 18h.")
    await own_sends.record("loja-centro", PN, "3EB05E47000000000001")
    assert await intake.receive(webhook("send_message")) == OWN_SEND
    assert published == []


async def test_echo_before_sendtext_answered_is_its_own_by_its_text(
    intake: Intake, published: Published, own_sends: OwnSends
) -> None:
    # Evolution posts send.message before it answers sendText: only the expected text is known yet
    await own_sends.expect("loja-centro", PN, "Olá! Sábado abrimos das 9h às 18h.")
    assert await intake.receive(webhook("send_message")) == OWN_SEND
    # the same message echoed again by a linked device, text and all: its id was remembered with the echo
    upsert = webhook("from_me", "3EB05E47000000000001")
    upsert["data"]["message"] = {"conversation": "outro texto"}
    assert await intake.receive(upsert) == DUPLICATE
    assert published == []


async def test_a_from_me_upsert_with_papos_id_is_its_own(
    intake: Intake, published: Published, own_sends: OwnSends
) -> None:
    await own_sends.record("loja-centro", PN, "3EB00FE2A70200000001")
    assert await intake.receive(webhook("from_me")) == OWN_SEND
    assert published == []


async def test_a_from_me_upsert_papo_did_not_send_is_an_operator_message(
    intake: Intake, published: Published, own_sends: OwnSends
) -> None:
    await own_sends.expect("loja-centro", PN, "a reply papo is about to send")
    assert await intake.receive(webhook("from_me")) == ACCEPTED
    [message] = published
    assert (message.from_me, message.source) == (True, "messages.upsert")


async def test_papos_text_expected_in_another_chat_is_not_its_own(
    intake: Intake, published: Published, own_sends: OwnSends
) -> None:
    await own_sends.expect(
        "loja-centro", "5521900000000@s.whatsapp.net", "Olá! Sábado abrimos das 9h às 18h."
    )
    await own_sends.expect("outra-loja", PN, "Olá! Sábado abrimos das 9h às 18h.")
    assert await intake.receive(webhook("send_message")) == ACCEPTED
    assert len(published) == 1


async def test_the_evolution_channels_bare_digits_echo_matches_papos_send(
    intake: Intake, published: Published, own_sends: OwnSends
) -> None:
    await own_sends.expect("loja-canal", PN, "Oi Marina, aqui é o Carlos. Pode vir às 10h.")
    assert await intake.receive(webhook("send_message_evolution_channel")) == OWN_SEND
    assert published == []


# --- one person, one conversation -------------------------------------------------------------------------------


async def test_first_seen_by_lid_then_by_phone_is_one_conversation(
    intake: Intake, published: Published
) -> None:
    assert await intake.receive(webhook("lid_only", "M1", remoteJid=LID)) == ACCEPTED
    assert await intake.receive(webhook("lid_remotejidalt_2_3", "M2")) == ACCEPTED
    assert (
        await intake.receive(webhook("text_conversation", "M3", remoteJid=PN, remoteJidAlt=None)) == ACCEPTED
    )
    operator = webhook("send_message", "M4")
    assert await intake.receive(operator) == ACCEPTED
    assert [m.conversation.user_id for m in published] == [LID, LID, LID, LID]
    # the reply still goes to the phone JID whenever the webhook named it
    assert [m.chat_id for m in published] == [LID, PN, PN, PN]
    assert published[1].aliases == (PN,)


async def test_first_seen_by_phone_keeps_the_phone_conversation(intake: Intake, published: Published) -> None:
    assert (
        await intake.receive(webhook("text_conversation", "M1", remoteJid=PN, remoteJidAlt=None)) == ACCEPTED
    )
    assert await intake.receive(webhook("lid_remotejidalt_2_3", "M2")) == ACCEPTED
    assert await intake.receive(webhook("lid_only", "M3", remoteJid=LID)) == ACCEPTED
    assert [m.conversation.user_id for m in published] == [PN, PN, PN]
    assert published[2].aliases == (LID,)


async def test_the_2_3_7_shape_and_its_swapped_2_4_shape_are_one_person(
    intake: Intake, published: Published
) -> None:
    assert await intake.receive(webhook("lid_only", "M1", remoteJid=LID)) == ACCEPTED
    assert await intake.receive(webhook("lid_swapped_2_4", "M2")) == ACCEPTED
    assert await intake.receive(webhook("lid_sender_pn_2_3_1", "M3")) == ACCEPTED
    assert {m.conversation.user_id for m in published} == {LID}


async def test_two_instances_keep_their_own_identity_maps(intake: Intake, published: Published) -> None:
    assert await intake.receive(webhook("lid_only", "M1", remoteJid=LID)) == ACCEPTED
    assert await intake.receive(webhook("lid_remotejidalt_2_3", "M2")) == ACCEPTED
    other = webhook("text_conversation", "M3", remoteJid=PN, remoteJidAlt=None)
    other["instance"] = "outra-loja"
    assert await intake.receive(other) == ACCEPTED
    assert [m.conversation.key for m in published] == [
        f"loja-centro:{LID}",
        f"loja-centro:{LID}",
        f"outra-loja:{PN}",
    ]


# --- instance health ------------------------------------------------------------------------------------------


def gauge(instance: str) -> float | None:
    return REGISTRY.get_sample_value("papo_instance_connected", {"instance": instance})


async def test_connection_update_sets_the_state_and_the_gauge(
    intake: Intake, redis_client: Redis, redis_prefix: str
) -> None:
    assert await intake.receive(webhook_connection("close", 428)) == ACCEPTED
    assert await instance_state(redis_client, redis_prefix, "loja-centro") == "close"
    assert gauge("loja-centro") == 0
    assert await intake.receive(webhook_connection("open", 200)) == ACCEPTED
    assert await instance_state(redis_client, redis_prefix, "loja-centro") == "open"
    assert gauge("loja-centro") == 1


async def test_every_replica_reports_the_latest_state(redis_client: Redis, redis_prefix: str) -> None:
    instance = f"i-{redis_prefix}"
    this_replica = Instances(redis_client, redis_prefix)
    await this_replica.changed(ConnectionUpdate(instance, "open", 200))
    # the instance's next update was posted to another replica: only Redis knows
    await set_instance_state(redis_client, redis_prefix, instance, "close")
    assert gauge(instance) == 1
    await this_replica.refresh_gauge()
    assert gauge(instance) == 0
    assert await instance_states(redis_client, redis_prefix) == {instance: "close"}


def webhook_connection(state: str, reason: int, instance: str = "loja-centro") -> dict[str, Any]:
    body = copy.deepcopy(json.loads((FIXTURES / "connection_update.json").read_text()))
    body["instance"] = body["data"]["instance"] = instance
    body["data"].update(state=state, statusReason=reason)
    return body


async def test_redis_down_asks_evolution_to_retry_the_echo(published: Published) -> None:
    dead = make_redis("redis://127.0.0.1:1/0")
    intake = Intake(
        publish=published,
        seen=SeenMessages(dead, "p", published_ttl_seconds=600, claim_ttl_seconds=5),
        policy=IntakePolicy(),
        publish_timeout_seconds=5,
        clock=lambda: NOW,
        senders=Senders("p", OwnSends(dead, "p")),
        instances=Instances(dead, "p"),
    )
    try:
        assert await intake.receive(webhook("send_message")) == Outcome(
            "unavailable", "redis", "Redis is unavailable"
        )
        assert await intake.receive(webhook_connection("close", 428)) == Outcome(
            "unavailable", "redis", "Redis is unavailable"
        )
    finally:
        await dead.aclose()
    assert published == []


async def test_erasure_unlinks_the_persons_jids_only(
    intake: Intake, published: Published, redis_client: Redis, redis_prefix: str
) -> None:
    assert await intake.receive(webhook("lid_only", "M1", remoteJid=LID)) == ACCEPTED
    assert await intake.receive(webhook("lid_remotejidalt_2_3", "M2")) == ACCEPTED
    other = "103899771998284@lid"
    assert await intake.receive(webhook("lid_only", "M3", remoteJid=other)) == ACCEPTED
    erased = ConversationRef(instance="loja-centro", user_id=LID)
    assert await forget_identities(redis_client, redis_prefix, erased) == 2
    assert await redis_client.hgetall(identity_key(redis_prefix, "loja-centro")) == {
        other.encode(): other.encode()
    }
    assert await forget_identities(redis_client, redis_prefix, erased) == 0
