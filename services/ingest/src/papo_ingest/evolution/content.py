"""What a WhatsApp message says: its text, caption or voice note, and the message it replies to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from papo_common.contracts import AudioAttachment, QuotedMessage
from papo_common.contracts.base import MESSAGE_ID_MAX_LENGTH
from papo_common.contracts.inbound import MAX_INT64, MIMETYPE_MAX_LENGTH
from papo_ingest.evolution.values import storable_text, to_float, to_int

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
    """Text (a conversation, an extended text, or a media caption), a voice note, or why neither. Text
    loses its NUL characters, which PostgreSQL cannot store."""
    if text := _text(message.get("conversation")):
        return Content(text=text)
    if text := _text(_dict(message.get("extendedTextMessage")).get("text")):
        return Content(text=text)
    audio = message.get("audioMessage")
    if isinstance(audio, dict):
        return Content(audio=audio)
    for name in _CAPTIONED:
        if caption := _text(_dict(message.get(name)).get("caption")):
            return Content(text=caption)
    return Content(unsupported=content_type(message) or "empty")


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = storable_text(value)
    return text if text.strip() else None


def audio_attachment(audio: dict[str, Any], *, base64: Any, data: dict[str, Any]) -> AudioAttachment:
    """The voice note's metadata, with inline bytes when Evolution sent them, else how to fetch them."""
    inline = base64 if isinstance(base64, str) and base64 else None
    mimetype = audio.get("mimetype")
    seconds = to_float(audio.get("seconds"))
    file_length = to_int(audio.get("fileLength"))
    # metadata only: a value no voice note can have is dropped, never a reason to refuse the message
    return AudioAttachment(
        mimetype=mimetype if _is_identifier(mimetype, MIMETYPE_MAX_LENGTH) else None,
        seconds=seconds if seconds is not None and seconds >= 0 else None,
        ptt=audio.get("ptt") is True,
        file_length=file_length if file_length is not None and 0 <= file_length <= MAX_INT64 else None,
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
        message_id = stanza_id if _is_identifier(stanza_id, MESSAGE_ID_MAX_LENGTH) else None
        if message_id or isinstance(quoted, dict):
            text = read_content(unwrap(quoted)).text if isinstance(quoted, dict) else None
            return QuotedMessage(message_id=message_id, text=text)
    return None


def _is_identifier(value: Any, max_length: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_length and value.isprintable()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
