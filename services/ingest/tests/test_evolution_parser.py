"""The Evolution v2 parser on every fixture, plus the bodies that can never be parsed."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from papo_common.contracts import InboundMessage
from papo_common.topology import RoutingKey, routing_key_for
from papo_ingest.evolution import (
    ConnectionUpdate,
    Ignored,
    IntakePolicy,
    MalformedWebhook,
    event_name,
    parse_webhook,
)

from .fixtures import all_fixture_names, fixture

RECEIVED = datetime(2025, 10, 14, 11, 2, 18, tzinfo=UTC)
PN = "5511912345678@s.whatsapp.net"
LID = "187340961234567@lid"
SENT = datetime.fromtimestamp(1760439737, UTC)


def parse(body: dict[str, Any], policy: IntakePolicy | None = None, path_event: str | None = None) -> Any:
    return parse_webhook(body, received_at=RECEIVED, policy=policy or IntakePolicy(), path_event=path_event)


def message(name: str, policy: IntakePolicy | None = None) -> InboundMessage:
    result = parse(fixture(name), policy)
    assert isinstance(result, InboundMessage), result
    return result


TEXT_CASES = {
    "text_conversation": (PN, "Oi, vocês abrem sábado?"),
    "text_extended": (PN, "Quero saber o preço do corte masculino"),
    "lid_remotejidalt_2_3": (PN, "Bom dia! Queria marcar um horário"),
    "lid_sender_pn_2_3_1": (PN, "Vocês aceitam pix?"),
    "lid_swapped_2_4": (PN, "Chego em 10 minutos"),
    "lid_copied_2_3_7": (PN, "Obrigada!"),
    "lid_only": ("103899771998284@lid", "Oi"),
    "ephemeral": (PN, "Mensagem temporária: qual o endereço?"),
    "view_once": (PN, "Olha o modelo que eu quero"),
    "document_with_caption": (PN, "Segue o orçamento"),
}

IGNORED_CASES = {
    "group_text": ("group", ""),
    "status_broadcast": ("status", ""),
    "newsletter": ("newsletter", ""),
    "sticker": ("unsupported_type", "stickerMessage"),
    "reaction": ("unsupported_type", "reactionMessage"),
    "protocol_revoke": ("unsupported_type", "protocolMessage"),
    "edited": ("unsupported_type", "protocolMessage"),
    "image_no_caption": ("unsupported_type", "imageMessage"),
    "messages_update": ("event_not_handled", "messages.update"),
}


def test_every_fixture_has_an_expectation() -> None:
    expected = {*TEXT_CASES, *IGNORED_CASES, "reply_data_context", "reply_in_message", "audio_base64"}
    expected |= {
        "audio_no_base64",
        "view_once_audio",
        "from_me",
        "send_message",
        "send_message_evolution_channel",
    }
    expected |= {"connection_update", "connection_update_close", "connection_update_connecting"}
    expected |= {"text_evolution_channel", "from_me_evolution_channel"}
    assert set(all_fixture_names()) == expected


@pytest.mark.parametrize("name", sorted(TEXT_CASES))
def test_text_messages_become_inbound_text(name: str) -> None:
    user_id, text = TEXT_CASES[name]
    parsed = message(name)
    assert parsed.kind == "text"
    assert parsed.text == text
    assert parsed.conversation.instance == "loja-centro"
    assert parsed.conversation.user_id == user_id
    assert parsed.chat_id == user_id
    assert parsed.from_me is False
    assert parsed.received_at == RECEIVED
    assert routing_key_for(parsed) == RoutingKey.INBOUND_TEXT


@pytest.mark.parametrize("name", sorted(IGNORED_CASES))
def test_ignored_with_reason(name: str) -> None:
    assert parse(fixture(name)) == Ignored(*IGNORED_CASES[name])


def test_fields_of_a_plain_text() -> None:
    parsed = message("text_conversation")
    assert parsed.message_id == "3EB0C431C26A1D0B6E5F"
    assert parsed.push_name == "Marina Souza"
    assert parsed.sent_at == SENT
    assert parsed.quoted is None
    assert parsed.audio is None


def test_numeric_string_timestamp() -> None:
    assert message("text_extended").sent_at == SENT


def test_reply_context_beside_the_message() -> None:
    quoted = message("reply_data_context").quoted
    assert quoted is not None
    assert quoted.message_id == "BAE5D4C3B2A19F8E"
    assert quoted.text == "Temos horário às 15h ou às 17h"


def test_reply_context_inside_the_message() -> None:
    parsed = message("reply_in_message")
    assert parsed.text == "Esse mesmo!"
    assert parsed.quoted is not None
    assert parsed.quoted.message_id == "BAE5117A0C9D3E21"
    assert parsed.quoted.text == "Corte + barba sai R$ 70"


def test_2_4_message_context_info_is_not_a_reply() -> None:
    assert message("lid_swapped_2_4").quoted is None


def test_audio_with_inline_base64() -> None:
    parsed = message("audio_base64")
    assert parsed.kind == "audio"
    assert parsed.text is None
    assert parsed.audio is not None
    assert parsed.audio.base64 is not None
    assert parsed.audio.base64.startswith("T2dnUw")
    assert parsed.audio.media_request is None
    assert parsed.audio.mimetype == "audio/ogg; codecs=opus"
    assert parsed.audio.ptt is True
    assert parsed.audio.seconds == 4
    assert parsed.audio.file_length == 8712
    assert parsed.sent_at == datetime.fromtimestamp(1760439800, UTC)
    assert routing_key_for(parsed) == RoutingKey.INBOUND_AUDIO


def test_audio_without_base64_carries_the_media_request() -> None:
    body = fixture("audio_no_base64")
    parsed = message("audio_no_base64")
    assert parsed.audio is not None
    assert parsed.audio.base64 is None
    assert parsed.audio.media_request == body["data"]
    assert parsed.audio.file_length == 8712
    assert parsed.sent_at == datetime.fromtimestamp(1760439805, UTC)


def test_view_once_voice_note() -> None:
    parsed = message("view_once_audio")
    assert parsed.kind == "audio"
    assert parsed.audio is not None
    assert parsed.audio.seconds == 7
    assert parsed.audio.media_request is not None


def test_from_me_is_an_operator_message() -> None:
    parsed = message("from_me")
    assert parsed.from_me is True
    assert parsed.conversation.user_id == PN
    assert routing_key_for(parsed) == RoutingKey.INBOUND_OPERATOR


def test_from_me_carries_the_persons_lid_as_an_alias() -> None:
    parsed = message("from_me")
    assert parsed.source == "messages.upsert"
    assert parsed.aliases == (LID,)


def test_send_message_is_a_message_from_the_business() -> None:
    parsed = message("send_message")
    assert parsed.from_me is True
    assert parsed.source == "send.message"
    assert parsed.message_id == "3EB05E47000000000001"
    assert parsed.text == "Olá! Sábado abrimos das 9h às 18h."
    assert routing_key_for(parsed) == RoutingKey.INBOUND_OPERATOR


def test_send_message_is_from_me_even_without_from_me_in_its_key() -> None:
    body = fixture("send_message")
    del body["data"]["key"]["fromMe"]
    assert message_from(body).from_me is True


def test_evolution_channel_echoes_bare_digits_as_the_phone_jid() -> None:
    parsed = message("send_message_evolution_channel")
    assert parsed.conversation == parsed.conversation.model_copy(update={"instance": "loja-canal"})
    assert parsed.conversation.user_id == PN
    assert parsed.chat_id == "5511912345678"
    assert parsed.sent_at == SENT


@pytest.mark.parametrize(
    ("name", "from_me"), [("text_evolution_channel", False), ("from_me_evolution_channel", True)]
)
def test_the_evolution_channels_upserts_as_the_real_server_posts_them(name: str, from_me: bool) -> None:
    parsed = message(name)
    assert parsed.conversation.key == "probe:5511988887777@s.whatsapp.net"
    assert (parsed.chat_id, parsed.from_me, parsed.source) == ("5511988887777", from_me, "messages.upsert")
    assert parsed.sent_at == datetime.fromtimestamp(int(fixture(name)["data"]["messageTimestamp"]), UTC)


def test_a_person_on_the_evolution_channel_by_bare_digits_is_answered_in_bare_digits() -> None:
    body = fixture("text_conversation")
    body["data"]["key"] = {"id": "IN-0001", "remoteJid": "5511912345678", "fromMe": False}
    parsed = message_from(body)
    assert (parsed.conversation.user_id, parsed.chat_id) == (PN, "5511912345678")


@pytest.mark.parametrize(
    ("name", "instance", "state", "reason"),
    [
        ("connection_update", "loja-centro", "open", 200),
        ("connection_update_close", "loja-centro", "close", 428),
        ("connection_update_connecting", "baileys-probe", "connecting", 200),
    ],
)
def test_connection_update(name: str, instance: str, state: str, reason: int) -> None:
    assert parse(fixture(name)) == ConnectionUpdate(instance, state, reason)


def test_connection_update_without_a_state_is_rejected() -> None:
    body = fixture("connection_update")
    del body["data"]["state"]
    with pytest.raises(MalformedWebhook) as error:
        parse(body)
    assert error.value.reason == "no_state"


def test_a_phone_and_lid_pair_are_aliases_of_one_person() -> None:
    parsed = message("lid_remotejidalt_2_3")
    assert parsed.conversation.user_id == PN
    assert parsed.aliases == (LID,)
    assert message("lid_only").aliases == ()
    assert message("send_message").aliases == ()


def test_groups_when_accepted_are_one_conversation_per_group() -> None:
    parsed = message("group_text", IntakePolicy(accept_groups=True))
    assert parsed.conversation.user_id == "120363025246125486@g.us"
    assert parsed.chat_id == "120363025246125486@g.us"
    assert parsed.push_name == "Paulo"


def test_status_when_accepted_is_the_authors_conversation() -> None:
    parsed = message("status_broadcast", IntakePolicy(accept_status=True))
    assert parsed.conversation.user_id == "5521998877665@s.whatsapp.net"
    assert parsed.text == "Promoção de outubro!"


def test_newsletters_when_accepted() -> None:
    parsed = message("newsletter", IntakePolicy(accept_newsletters=True))
    assert parsed.conversation.user_id == "120363144038483540@newsletter"
    assert parsed.push_name is None


def test_device_suffix_is_dropped_from_the_identity() -> None:
    body = fixture("lid_only")
    body["data"]["key"] = {"remoteJid": "5511912345678:23@s.whatsapp.net", "fromMe": False, "id": "X1"}
    assert message_from(body).conversation.user_id == PN


def test_missing_or_garbled_timestamp_falls_back_to_arrival() -> None:
    for value in (None, "soon", {"low": "x"}, -5):
        body = fixture("text_conversation")
        body["data"]["messageTimestamp"] = value
        assert message_from(body).sent_at == RECEIVED


def test_millisecond_timestamp() -> None:
    body = fixture("text_conversation")
    body["data"]["messageTimestamp"] = 1760439737000
    assert message_from(body).sent_at == SENT


def test_event_from_the_path_when_the_body_has_none() -> None:
    body = fixture("text_conversation")
    del body["event"]
    assert isinstance(parse(body, path_event="messages-upsert"), InboundMessage)
    assert parse(body, path_event="messages-update") == Ignored("event_not_handled", "messages-update")


def test_event_names_follow_evolutions_normalisation() -> None:
    assert event_name("messages.upsert") == event_name("messages-upsert") == "MESSAGES_UPSERT"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b: b.pop("data"), "no_data"),
        (lambda b: b.pop("event"), "no_event"),
        (lambda b: b["data"]["key"].pop("id"), "no_key_id"),
        (lambda b: b["data"]["key"].update(id="  "), "no_key_id"),
        (lambda b: b["data"].pop("key"), "no_key_id"),
        (lambda b: b["data"]["key"].pop("remoteJid"), "no_remote_jid"),
        (lambda b: b.pop("instance"), "no_instance"),
        (lambda b: b.update(data=[b["data"]]), "bad_data"),
    ],
)
def test_bodies_that_can_never_be_parsed(mutate: Any, reason: str) -> None:
    body = fixture("text_conversation")
    mutate(body)
    with pytest.raises(MalformedWebhook) as raised:
        parse(body)
    assert raised.value.reason == reason


@pytest.mark.parametrize("body", [[], "text", 3, None])
def test_a_body_that_is_not_an_object(body: Any) -> None:
    with pytest.raises(MalformedWebhook):
        parse(body)


def test_a_message_without_content_is_ignored() -> None:
    body = fixture("text_conversation")
    body["data"]["message"] = None
    assert parse(body).reason == "no_content"


def test_blank_text_is_ignored_not_published() -> None:
    body = fixture("text_conversation")
    body["data"]["message"]["conversation"] = "   "
    assert parse(body) == Ignored("unsupported_type", "conversation")


def test_parser_does_not_change_its_input() -> None:
    body = fixture("audio_no_base64")
    before = copy.deepcopy(body)
    parse(body)
    assert body == before


def message_from(body: dict[str, Any]) -> InboundMessage:
    result = parse(body)
    assert isinstance(result, InboundMessage), result
    return result
