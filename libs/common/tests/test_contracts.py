"""The contracts refuse what they must and route where they should."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydantic import TypeAdapter, ValidationError

from papo_common.contracts import ALL_CONTRACTS, AudioAttachment, ConversationRef, InboundMessage, Transcript
from papo_common.topology import SERVICE_QUEUES, RoutingKey, routing_key_for
from papo_testing.factories import ANA, T0, audio_message, text_message, transcript


def test_contracts_are_frozen_and_strict() -> None:
    message = text_message("A", "oi")
    with pytest.raises(ValidationError):
        message.text = "mudado"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        InboundMessage.model_validate({**message.model_dump(), "surprise": 1})


def test_timestamps_must_be_aware_and_become_utc() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        text_message("A", "oi").model_copy(update={}).model_validate(
            {**text_message("A", "oi").model_dump(), "sent_at": datetime(2026, 1, 1)}
        )
    local = datetime.fromisoformat("2026-11-22T09:00:00-03:00")
    message = InboundMessage.model_validate({**text_message("A", "oi").model_dump(), "sent_at": local})
    assert message.sent_at == T0.replace(hour=12) and message.sent_at.utcoffset().total_seconds() == 0


def test_payload_must_match_kind() -> None:
    with pytest.raises(ValidationError, match="non-blank text"):
        text_message("A", "   ")
    with pytest.raises(ValidationError, match="audio attachment"):
        InboundMessage(
            conversation=ANA, message_id="A", chat_id=ANA.user_id, kind="audio", sent_at=T0, received_at=T0
        )
    with pytest.raises(ValidationError, match="inline base64 or a media_request"):
        AudioAttachment(mimetype="audio/ogg")


def test_a_union_of_contracts_parses_by_its_discriminator() -> None:
    adapter = TypeAdapter(InboundMessage | Transcript)
    for message in (text_message("A", "oi"), audio_message("B"), transcript("B", "olá")):
        assert adapter.validate_json(message.model_dump_json()) == message


def test_every_contract_round_trips_through_json() -> None:
    assert {c.__name__ for c in ALL_CONTRACTS} == {
        "InboundMessage",
        "Transcript",
        "Burst",
        "Reply",
        "ReplySent",
        "SessionClosed",
    }
    for contract in ALL_CONTRACTS:
        schema = contract.model_json_schema()
        assert schema["additionalProperties"] is False, contract.__name__
        assert "type" in schema["required"] or "type" in schema["properties"]


def test_conversation_key_separates_instances() -> None:
    assert ConversationRef(instance="a", user_id="u").key != ConversationRef(instance="b", user_id="u").key


def test_routing_keys_reach_the_services_that_need_them() -> None:
    operator = text_message("A", "oi").model_copy(update={"from_me": True})
    assert routing_key_for(text_message("A", "oi")) == RoutingKey.INBOUND_TEXT
    assert routing_key_for(audio_message("B")) == RoutingKey.INBOUND_AUDIO
    assert routing_key_for(operator) == RoutingKey.INBOUND_OPERATOR
    assert routing_key_for(transcript("B", "x")) == RoutingKey.TRANSCRIPT_READY
    bound = {q.service: q.binds for q in SERVICE_QUEUES}
    assert RoutingKey.INBOUND_OPERATOR in bound["debounce"], "an operator message pauses the bot"
    assert RoutingKey.INBOUND_OPERATOR not in bound["llm"] + bound["transcribe"], (
        "operators are never answered"
    )
    assert "inbound.*" in bound["persist"], "persist keeps a copy of everything inbound"
    assert RoutingKey.TRANSCRIPT_READY in bound["debounce"]


def test_every_queue_has_a_delivery_limit_and_a_dead_letter_queue() -> None:
    for service_queue in SERVICE_QUEUES:
        arguments = service_queue.queue.arguments or {}
        assert arguments["x-queue-type"] == "quorum"
        assert arguments["x-delivery-limit"] >= 1
        assert arguments["x-dead-letter-routing-key"] == service_queue.dead_letter_name
        assert arguments["x-dead-letter-strategy"] == "at-least-once"
