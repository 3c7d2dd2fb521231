"""What a WhatsApp message says: its text, caption or voice note, and the message it replies to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from papo_common.contracts import AudioAttachment, QuotedMessage
from papo_ingest.evolution.values import to_float, to_int

WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "editedMessage",
)
"""Containers whose `.message` holds the real content."""

_NOT_CONTENT = frozenset(
    {"messageContextInfo", "senderKeyDistributionMessage", "base64", "mediaUrl", "speechToText"}
)
"""Keys Baileys or Evolution put beside the content: metadata, never the message itself."""

_CAPTIONED = ("imageMessage", "videoMessage", "documentMessage")
_MAX_UNWRAP_DEPTH = 5


@dataclass(frozen=True)
class Content:
    """The usable part of a message; `unsupported` names its type when there is none."""

    text: str | None = None
    audio: dict[str, Any] | None = None
    unsupported: str | None = None


def unwrap(message: dict[str, Any]) -> dict[str, Any]:
    """The innermost message inside wrappers such as `ephemeralMessage` or `viewOnceMessageV2`."""
    for _ in range(_MAX_UNWRAP_DEPTH):
        inner = next(
            (
                wrapper["message"]
                for name in WRAPPERS
                if isinstance(wrapper := message.get(name), dict) and isinstance(wrapper.get("message"), dict)
            ),
            None,
        )
        if inner is None:
            return message
        message = inner
    return message


def content_type(message: dict[str, Any]) -> str | None:
    """The name of the content field, as Baileys' `getContentType` would report it."""
    return next((k for k, v in message.items() if k not in _NOT_CONTENT and v is not None), None)


def read_content(message: dict[str, Any]) -> Content:
    """Text (a conversation, an extended text, or a media caption), a voice note, or why neither."""
    conversation = message.get("conversation")
    if isinstance(conversation, str) and conversation.strip():
        return Content(text=conversation)
    extended = _dict(message.get("extendedTextMessage"))
    if isinstance(extended.get("text"), str) and extended["text"].strip():
        return Content(text=extended["text"])
    audio = message.get("audioMessage")
    if isinstance(audio, dict):
        return Content(audio=audio)
    for name in _CAPTIONED:
        caption = _dict(message.get(name)).get("caption")
        if isinstance(caption, str) and caption.strip():
            return Content(text=caption)
    return Content(unsupported=content_type(message) or "empty")


def audio_attachment(audio: dict[str, Any], *, base64: Any, data: dict[str, Any]) -> AudioAttachment:
    """The voice note's metadata, with inline bytes when Evolution sent them, else how to fetch them."""
    inline = base64 if isinstance(base64, str) and base64 else None
    mimetype = audio.get("mimetype")
    return AudioAttachment(
        mimetype=mimetype if isinstance(mimetype, str) else None,
        seconds=to_float(audio.get("seconds")),
        ptt=audio.get("ptt") is True,
        file_length=to_int(audio.get("fileLength")),
        base64=inline,
        media_request=None if inline else data,
    )


def quoted_message(message: dict[str, Any], data: dict[str, Any]) -> QuotedMessage | None:
    """The message this one replies to. Evolution puts `contextInfo` beside the message (`data.contextInfo`,
    2.3.x) and Baileys inside the content (`extendedTextMessage.contextInfo`, media messages); both count."""
    content = _dict(message.get(content_type(message) or ""))
    for context in (_dict(content.get("contextInfo")), _dict(data.get("contextInfo"))):
        stanza_id = context.get("stanzaId")
        quoted = context.get("quotedMessage")
        message_id = stanza_id if isinstance(stanza_id, str) and stanza_id else None
        if message_id or isinstance(quoted, dict):
            text = read_content(unwrap(quoted)).text if isinstance(quoted, dict) else None
            return QuotedMessage(message_id=message_id, text=text)
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
