"""Published by ingest: one WhatsApp message as the rest of papo needs it, parsed from Evolution's webhook."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from papo_common.contracts.base import Contract, ConversationRef, NonEmptyStr, UtcDatetime

MessageKind = Literal["text", "audio"]


class QuotedMessage(Contract):
    """The message this one replies to (WhatsApp's "reply" feature), when there is one."""

    message_id: str | None = None
    text: str | None = None


class AudioAttachment(Contract):
    """A voice note or audio file. Bytes travel inline when the webhook carried them; otherwise transcribe
    fetches them from Evolution with `media_request`, the webhook's whole `data` object, as Evolution asks."""

    mimetype: str | None = None
    seconds: float | None = None
    ptt: bool = False
    file_length: int | None = None
    base64: str | None = Field(default=None, repr=False)
    media_request: dict[str, Any] | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _bytes_reachable(self) -> AudioAttachment:
        if self.base64 is None and self.media_request is None:
            raise ValueError("an audio attachment needs inline base64 or a media_request to fetch it")
        return self


class InboundMessage(Contract):
    """A message a person (or the business's operator, `from_me`) sent in a one-to-one chat."""

    type: Literal["inbound_message"] = "inbound_message"
    version: Literal[1] = 1
    conversation: ConversationRef
    message_id: NonEmptyStr
    """WhatsApp's `key.id`, unique per instance: the deduplication key everywhere downstream."""
    chat_id: NonEmptyStr
    """The JID to reply to (what Evolution's `number` accepts)."""
    from_me: bool = False
    push_name: str | None = None
    kind: MessageKind
    text: str | None = None
    """The text, or the caption of a media message."""
    sent_at: UtcDatetime
    """From `messageTimestamp`: the ordering key. Arrival order is not send order."""
    received_at: UtcDatetime
    quoted: QuotedMessage | None = None
    audio: AudioAttachment | None = None

    @model_validator(mode="after")
    def _kind_matches_payload(self) -> InboundMessage:
        if self.kind == "text" and not (self.text and self.text.strip()):
            raise ValueError("a text message needs non-blank text")
        if self.kind == "audio" and self.audio is None:
            raise ValueError("an audio message needs an audio attachment")
        return self
