"""Contract factories for tests: realistic messages with as little ceremony as possible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from papo_common.contracts import AudioAttachment, ConversationRef, InboundMessage, Transcript

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
"""A fixed `messageTimestamp` origin; `seconds=` offsets from it."""

RECEIVED_AFTER = timedelta(seconds=1)
"""How long after it was sent a factory message reaches papo, unless `received_at` says otherwise: the
messages stay fresh whatever today's date is."""


class FakeClock:
    """Seconds since the epoch, moved by the test instead of waited for (inject it where a service takes a
    clock)."""

    def __init__(self, start: float | None = None) -> None:
        self.now = T0.timestamp() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


ANA = ConversationRef(instance="loja", user_id="5511999990000@s.whatsapp.net")


def text_message(
    message_id: str,
    body: str,
    seconds: float = 0,
    conversation: ConversationRef = ANA,
    push_name: str = "Ana",
    received_at: datetime | None = None,
) -> InboundMessage:
    sent_at = T0 + timedelta(seconds=seconds)
    return InboundMessage(
        conversation=conversation,
        message_id=message_id,
        chat_id=conversation.user_id,
        push_name=push_name,
        kind="text",
        text=body,
        sent_at=sent_at,
        received_at=received_at or sent_at + RECEIVED_AFTER,
    )


def audio_message(
    message_id: str,
    seconds: float = 0,
    conversation: ConversationRef = ANA,
    base64: str | None = "T2dnUw==",
    received_at: datetime | None = None,
) -> InboundMessage:
    sent_at = T0 + timedelta(seconds=seconds)
    return InboundMessage(
        conversation=conversation,
        message_id=message_id,
        chat_id=conversation.user_id,
        kind="audio",
        sent_at=sent_at,
        received_at=received_at or sent_at + RECEIVED_AFTER,
        audio=AudioAttachment(
            mimetype="audio/ogg; codecs=opus",
            seconds=4,
            ptt=True,
            base64=base64,
            media_request=None if base64 else {"key": {"id": message_id}},
        ),
    )


def transcript(
    message_id: str, body: str | None, seconds: float = 0, conversation: ConversationRef = ANA
) -> Transcript:
    return Transcript(
        conversation=conversation,
        message_id=message_id,
        sent_at=T0 + timedelta(seconds=seconds),
        text=body,
        failure=None if body else "no speech detected",
    )
