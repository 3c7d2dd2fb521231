"""What each contract writes, and how a batch of writes becomes one transaction's rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from papo_common.contracts import (
    AudioAttachment,
    ConversationRef,
    InboundMessage,
    Reply,
    ReplySent,
    Transcript,
)
from papo_persist.rows import TRANSCRIPTION_FAILED, plan_batch, row_write

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
REF = ConversationRef(instance="shop", user_id="5511999990000@s.whatsapp.net")
CHAT = "5511999990000@s.whatsapp.net"


def inbound(message_id: str = "M1", **overrides: object) -> InboundMessage:
    fields: dict[str, object] = {
        "conversation": REF,
        "message_id": message_id,
        "chat_id": CHAT,
        "push_name": "Ana",
        "kind": "text",
        "text": "oi",
        "sent_at": NOW,
        "received_at": NOW + timedelta(seconds=1),
    }
    return InboundMessage.model_validate(fields | overrides)


def transcript(text: str | None = "quero um bolo", failure: str | None = None) -> Transcript:
    return Transcript(conversation=REF, message_id="A1", sent_at=NOW, text=text, failure=failure)


def test_a_persons_message_is_a_user_row_that_knows_its_conversation() -> None:
    write = row_write(inbound())

    assert write.kind == "inbound"
    assert write.message == {
        "instance": "shop",
        "external_id": "M1",
        "role": "user",
        "kind": "text",
        "text": "oi",
        "sent_at": NOW,
        "received_at": NOW + timedelta(seconds=1),
    }
    assert write.conversation.known
    assert (write.conversation.chat_id, write.conversation.push_name) == (CHAT, "Ana")
    assert write.conversation.last_message_at == NOW


def test_a_message_from_the_business_phone_is_an_operator_row() -> None:
    write = row_write(inbound(from_me=True))

    assert write.kind == "operator"
    assert write.message["role"] == "operator"


def test_a_voice_note_is_an_audio_row_without_text_until_transcribed() -> None:
    write = row_write(inbound("A1", kind="audio", text=None, audio=AudioAttachment(base64="AA==")))

    assert (write.message["kind"], write.message["text"]) == ("audio", None)


def test_a_transcript_fills_the_text_of_the_audio_row() -> None:
    write = row_write(transcript())

    assert write.kind == "transcript"
    assert write.key == ("shop", "A1")
    assert write.message["text"] == "quero um bolo"
    assert write.message["transcription_failure"] is None
    assert (write.message["role"], write.message["kind"], write.message["sent_at"]) == ("user", "audio", NOW)
    assert not write.conversation.known, "a transcript does not know the chat id"


def test_a_failed_transcript_records_why_and_no_text() -> None:
    assert row_write(transcript(None, "timeout")).message["transcription_failure"] == "timeout"
    blank = row_write(transcript("  ")).message
    assert (blank["text"], blank["transcription_failure"]) == (None, TRANSCRIPTION_FAILED)


def test_a_reply_is_an_assistant_row_keyed_by_its_reply_id() -> None:
    reply = Reply(
        reply_id="R1",
        burst_id="shop:5511:7",
        conversation=REF,
        chat_id=CHAT,
        text="Claro!",
        in_reply_to=("M1", "A1"),
        model="gpt-4o-mini",
        created_at=NOW,
    )
    write = row_write(reply)

    assert write.kind == "reply"
    assert write.message == {
        "instance": "shop",
        "external_id": "R1",
        "role": "assistant",
        "kind": "text",
        "text": "Claro!",
        "burst_id": "shop:5511:7",
        "in_reply_to": ["M1", "A1"],
        "model": "gpt-4o-mini",
        "sent_at": NOW,
    }
    assert write.conversation.known


def test_a_delivery_sets_the_whatsapp_ids_and_delivery_time_of_its_reply() -> None:
    sent = ReplySent(reply_id="R1", conversation=REF, whatsapp_message_ids=("W1", "W2"), sent_at=NOW)
    write = row_write(sent)

    assert write.kind == "delivery"
    assert write.key == ("shop", "R1")
    assert write.message["whatsapp_ids"] == ["W1", "W2"]
    assert write.message["delivered_at"] == NOW
    assert write.message["role"] == "assistant"


def test_a_batch_writes_each_message_once_in_key_order() -> None:
    plan = plan_batch([row_write(m) for m in (inbound("M2"), inbound("M1"), inbound("M2"))])

    assert [w.key for w in plan.messages["inbound"]] == [("shop", "M1"), ("shop", "M2")]


def test_a_transcript_with_text_beats_a_failed_one_for_the_same_note() -> None:
    plan = plan_batch([row_write(transcript(None, "timeout")), row_write(transcript("bolo"))])

    assert [w.message["text"] for w in plan.messages["transcript"]] == ["bolo"]


def test_a_conversation_takes_its_chat_id_and_name_from_its_newest_message() -> None:
    newest = inbound("M2", sent_at=NOW + timedelta(minutes=1), chat_id="new@lid", push_name=None)
    older = inbound("M1", push_name="Ana Maria")

    plan = plan_batch([row_write(newest), row_write(older)])

    assert plan.known_conversations == [
        {
            "instance": "shop",
            "user_id": REF.user_id,
            "chat_id": "new@lid",
            "push_name": "Ana Maria",
            "last_message_at": NOW + timedelta(minutes=1),
        }
    ]
    assert plan.placeholder_conversations == []


def test_a_conversation_only_a_transcript_names_is_a_placeholder_that_claims_no_recency() -> None:
    plan = plan_batch([row_write(transcript())])

    assert plan.known_conversations == []
    assert plan.placeholder_conversations == [
        {
            "instance": "shop",
            "user_id": REF.user_id,
            "chat_id": REF.user_id,
            "push_name": None,
            "last_message_at": None,
        }
    ]


def test_statements_run_rows_before_what_completes_them() -> None:
    sent = ReplySent(reply_id="R1", conversation=REF, whatsapp_message_ids=("W1",), sent_at=NOW)
    plan = plan_batch([row_write(sent), row_write(transcript()), row_write(inbound())])

    assert list(plan.messages) == ["inbound", "transcript", "delivery"]
