"""Published by ingest: one WhatsApp message as the rest of papo needs it, parsed from Evolution's webhook."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, model_validator

from papo_common.contracts.base import (
    PRINTABLE,
    Contract,
    ConversationRef,
    Jid,
    MessageId,
    PushName,
    StorableText,
    UtcDatetime,
)

MessageKind = Literal["text", "audio"]

MIMETYPE_MAX_LENGTH = 255
MAX_INT64 = 2**63 - 1
MEDIA_REQUEST_MAX_DEPTH = 32
"""Evolution's message objects nest about ten levels; far deeper is no message, and JSON encoders give up."""
SourceEvent = Literal["messages.upsert", "send.message"]


class QuotedMessage(Contract):
    """The message this one replies to (WhatsApp's "reply" feature), when there is one."""

    message_id: MessageId | None = None
    text: StorableText | None = None


class AudioAttachment(Contract):
    """A voice note or audio file. Bytes travel inline when the webhook carried them; otherwise transcribe
    fetches them from Evolution with `media_request`, the webhook's whole `data` object, as Evolution asks."""

    mimetype: Annotated[str, StringConstraints(max_length=MIMETYPE_MAX_LENGTH, pattern=PRINTABLE)] | None = (
        None
    )
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    ptt: bool = False
    file_length: Annotated[int, Field(ge=0, le=MAX_INT64)] | None = None
    base64: str | None = Field(default=None, repr=False)
    media_request: dict[str, Any] | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _bytes_reachable(self) -> AudioAttachment:
        if self.base64 is None and self.media_request is None:
            raise ValueError("an audio attachment needs inline base64 or a media_request to fetch it")
        if self.media_request is not None and _depth(self.media_request) > MEDIA_REQUEST_MAX_DEPTH:
            raise ValueError(f"media_request nests deeper than {MEDIA_REQUEST_MAX_DEPTH} levels")
        return self


def _depth(value: Any) -> int:
    deepest, level = 0, [value]
    while level and deepest <= MEDIA_REQUEST_MAX_DEPTH:
        deepest += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return deepest


class InboundMessage(Contract):
    """A message a person (or the business's operator, `from_me`) sent in a one-to-one chat."""

    type: Literal["inbound_message"] = "inbound_message"
    version: Literal[1, 2] = 2
    """2 added `source` and `aliases`; a version 1 message reads as an upsert with no aliases."""
    conversation: ConversationRef
    message_id: MessageId
    """WhatsApp's `key.id`, unique per instance: the deduplication key everywhere downstream."""
    chat_id: Jid
    """The JID to reply to (what Evolution's `number` accepts)."""
    from_me: bool = False
    source: SourceEvent = "messages.upsert"
    """The Evolution event that carried it: `send.message` is a message sent through Evolution's API (by an
    operator's client, when it is not papo's own), always `from_me`."""
    aliases: tuple[Jid, ...] = Field(default=(), max_length=4)
    """Other JIDs of the same person (their `@lid` beside the phone JID, or the reverse), linked to
    `conversation.user_id` by the identity map."""
    push_name: PushName | None = None
    kind: MessageKind
    text: StorableText | None = None
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
