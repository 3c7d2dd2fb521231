"""Evolution API v2 webhook → `InboundMessage`, or the reason it is not one. No web or broker code here.

The envelope is `{event, instance, data, destination, date_time, sender, server_url, apikey}`. Messages come
in `messages.upsert` (a person, or with `fromMe` a human on the business's phone or a linked device) and
`send.message` (anything sent through Evolution's API: papo's own replies and an operator's client alike,
told apart later by the own-sends registry). `connection.update` reports an instance's WhatsApp session.
`date_time` is Evolution's local time and is never used: `data.messageTimestamp` is when the message was sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.contracts.inbound import SourceEvent
from papo_ingest.evolution.content import audio_attachment, quoted_message, read_content, unwrap
from papo_ingest.evolution.identity import (
    ChatKind,
    aliases_of_direct_chat,
    as_jid,
    chat_kind,
    participant_of,
    sender_of_direct_chat,
)
from papo_ingest.evolution.values import display_name, epoch_to_datetime, to_int

MESSAGES_UPSERT = "MESSAGES_UPSERT"
SEND_MESSAGE = "SEND_MESSAGE"
CONNECTION_UPDATE = "CONNECTION_UPDATE"
_MESSAGE_EVENTS: dict[str, SourceEvent] = {MESSAGES_UPSERT: "messages.upsert", SEND_MESSAGE: "send.message"}


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


@dataclass(frozen=True)
class ConnectionUpdate:
    """An instance's WhatsApp session changed: `state` is `open`, `connecting`, `close` (or `refused`);
    `status_reason` is Baileys' status code (200 when open, 401 logged out, 428 connection closed...)."""

    instance: str
    state: str
    status_reason: int | None


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
) -> InboundMessage | ConnectionUpdate | Ignored:
    """Parse one webhook body. Raises `MalformedWebhook` for what can never be parsed."""
    if not isinstance(body, dict):
        raise MalformedWebhook("not_an_object", "the webhook body must be a JSON object")
    event = body.get("event") or path_event
    if not isinstance(event, str) or not event.strip():
        raise MalformedWebhook("no_event", "the webhook has no event name")
    if "data" not in body:
        raise MalformedWebhook("no_data", "the webhook has no data")
    name = event_name(event)
    source = _MESSAGE_EVENTS.get(name)
    if source is None and name != CONNECTION_UPDATE:
        return Ignored("event_not_handled", event)
    data, instance = body["data"], body.get("instance")
    if not isinstance(data, dict):
        raise MalformedWebhook("bad_data", f"{event} data must be an object")
    if not isinstance(instance, str) or not instance.strip():
        raise MalformedWebhook("no_instance", "the webhook has no instance name")
    if source is None:
        return _connection_update(instance.strip(), data)
    key = data.get("key")
    if not isinstance(key, dict) or not isinstance(key.get("id"), str) or not key["id"].strip():
        raise MalformedWebhook("no_key_id", f"{source} data has no key.id")
    if not isinstance(key.get("remoteJid"), str) or not key["remoteJid"].strip():
        raise MalformedWebhook("no_remote_jid", f"{source} data has no key.remoteJid")
    return _message(instance.strip(), data, key, source, received_at=received_at, policy=policy)


def _connection_update(instance: str, data: dict[str, Any]) -> ConnectionUpdate:
    state = data.get("state")
    if not isinstance(state, str) or not state.strip():
        raise MalformedWebhook("no_state", "connection.update data has no state")
    return ConnectionUpdate(instance, state.strip().lower()[:32], to_int(data.get("statusReason")))


def _message(
    instance: str,
    data: dict[str, Any],
    key: dict[str, Any],
    source: SourceEvent,
    *,
    received_at: datetime,
    policy: IntakePolicy,
) -> InboundMessage | Ignored:
    remote_jid = as_jid(key["remoteJid"])
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
            chat_id=_reply_address(key["remoteJid"], person),
            # everything sent through Evolution's API is the business's side, whatever its key says
            from_me=key.get("fromMe") is True or source == "send.message",
            source=source,
            aliases=aliases_of_direct_chat(key, person) if kind is ChatKind.DIRECT else (),
            push_name=display_name(push_name),
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


def _reply_address(raw_remote_jid: str, person: str) -> str:
    """Where to answer: the person's JID, or the bare digits a channel addressed them by (the EVOLUTION
    channel hands `number` to its own client verbatim, so it gets back the form it sent)."""
    raw = raw_remote_jid.strip()
    return raw if "@" not in raw and as_jid(raw) == person else person


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"[:200]
