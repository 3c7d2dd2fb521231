"""Evolution API v2 webhook → `InboundMessage`, or the reason it is not one. No web or broker code here.

The envelope is `{event, instance, data, destination, date_time, sender, server_url, apikey}`; only
`messages.upsert` carries messages for papo. `date_time` is Evolution's local time and is never used:
`data.messageTimestamp` is when the person sent the message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from papo_common.contracts import ConversationRef, InboundMessage
from papo_ingest.evolution.content import audio_attachment, quoted_message, read_content, unwrap
from papo_ingest.evolution.identity import (
    ChatKind,
    chat_kind,
    normalize_jid,
    participant_of,
    sender_of_direct_chat,
)
from papo_ingest.evolution.values import epoch_to_datetime

MESSAGES_UPSERT = "MESSAGES_UPSERT"


@dataclass(frozen=True)
class Ignored:
    """A well-formed webhook papo does not act on. `reason` is a short fixed code (a metric label);
    `detail` says more (the event or message type)."""

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class IntakePolicy:
    """Which chats besides one-to-one chats are turned into messages."""

    accept_groups: bool = False
    accept_status: bool = False
    accept_newsletters: bool = False


class MalformedWebhook(ValueError):
    """A body that can never become a message, however often it is retried."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def event_name(event: str) -> str:
    """Evolution's canonical event name: `messages.upsert` and `messages-upsert` are `MESSAGES_UPSERT`."""
    return re.sub(r"[.\-]", "_", event.strip()).upper()


def parse_webhook(
    body: Any, *, received_at: datetime, policy: IntakePolicy, path_event: str | None = None
) -> InboundMessage | Ignored:
    """Parse one webhook body. Raises `MalformedWebhook` for what can never be parsed."""
    if not isinstance(body, dict):
        raise MalformedWebhook("not_an_object", "the webhook body must be a JSON object")
    event = body.get("event") or path_event
    if not isinstance(event, str) or not event.strip():
        raise MalformedWebhook("no_event", "the webhook has no event name")
    if "data" not in body:
        raise MalformedWebhook("no_data", "the webhook has no data")
    if event_name(event) != MESSAGES_UPSERT:
        return Ignored("event_not_handled", event)
    data, instance = body["data"], body.get("instance")
    if not isinstance(data, dict):
        raise MalformedWebhook("bad_data", "messages.upsert data must be an object")
    if not isinstance(instance, str) or not instance.strip():
        raise MalformedWebhook("no_instance", "the webhook has no instance name")
    key = data.get("key")
    if not isinstance(key, dict) or not isinstance(key.get("id"), str) or not key["id"].strip():
        raise MalformedWebhook("no_key_id", "messages.upsert data has no key.id")
    if not isinstance(key.get("remoteJid"), str) or not key["remoteJid"].strip():
        raise MalformedWebhook("no_remote_jid", "messages.upsert data has no key.remoteJid")
    return _upsert(instance.strip(), data, key, received_at=received_at, policy=policy)


def _upsert(
    instance: str, data: dict[str, Any], key: dict[str, Any], *, received_at: datetime, policy: IntakePolicy
) -> InboundMessage | Ignored:
    remote_jid = normalize_jid(key["remoteJid"])
    kind = chat_kind(remote_jid)
    refused = _refused_chat(kind, policy)
    if refused:
        return refused
    person = _person(kind, remote_jid, key, data)
    if person is None:
        return Ignored("no_author", kind.value)
    outer = data.get("message")
    if not isinstance(outer, dict):
        return Ignored("no_content", str(data.get("messageType") or ""))
    message = unwrap(outer)
    content = read_content(message)
    if content.unsupported:
        return Ignored("unsupported_type", content.unsupported)
    audio = None
    if content.audio is not None:
        audio = audio_attachment(
            content.audio, base64=outer.get("base64") or message.get("base64"), data=data
        )
    push_name = data.get("pushName")
    try:
        return InboundMessage(
            conversation=ConversationRef(instance=instance, user_id=person),
            message_id=key["id"].strip(),
            chat_id=person,
            from_me=key.get("fromMe") is True,
            push_name=(push_name.strip() or None) if isinstance(push_name, str) else None,
            kind="audio" if audio else "text",
            text=content.text,
            sent_at=epoch_to_datetime(data.get("messageTimestamp")) or received_at,
            received_at=received_at,
            quoted=quoted_message(message, data),
            audio=audio,
        )
    except ValidationError as error:
        raise MalformedWebhook("invalid_message", _first_error(error)) from None


def _refused_chat(kind: ChatKind, policy: IntakePolicy) -> Ignored | None:
    accepted = {
        ChatKind.DIRECT: True,
        ChatKind.GROUP: policy.accept_groups,
        ChatKind.STATUS: policy.accept_status,
        ChatKind.NEWSLETTER: policy.accept_newsletters,
        ChatKind.BROADCAST: False,
    }[kind]
    return None if accepted else Ignored(kind.value)


def _person(kind: ChatKind, remote_jid: str, key: dict[str, Any], data: dict[str, Any]) -> str | None:
    """The conversation's user id, which is also the chat to answer in: the person in a one-to-one chat,
    the group or channel itself, or the author of a status."""
    if kind is ChatKind.DIRECT:
        return sender_of_direct_chat(key)
    if kind is ChatKind.STATUS:
        return participant_of(key, data)
    return remote_jid


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"[:200]
