"""Evolution API v2's wire format, as Evolution 2.3 writes and checks it: error envelopes, JIDs and message
ids, request validation of the endpoints papo calls, and the bodies Evolution answers and posts.

Checked against Evolution's source (`src/validate/*.schema.ts`, `src/exceptions/*.ts`,
`src/api/integrations/channel/whatsapp/whatsapp.baileys.service.ts`, `src/api/services/channel.service.ts`).
Shared by the simulator and the test fake, so both speak exactly the same dialect.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

Json = Any

PRESENCES = frozenset({"unavailable", "available", "composing", "recording", "paused"})
SEND_TEXT_SCHEMA: Mapping[str, tuple[type, ...]] = {
    "number": (str,),
    "text": (str,),
    "delay": (int,),
    "linkPreview": (bool,),
}
SEND_PRESENCE_SCHEMA: Mapping[str, tuple[type, ...]] = {
    "number": (str,),
    "presence": (str,),
    "delay": (int, float),
}


def evolution_error_body(status: int, message: Json) -> dict[str, Json]:
    """Evolution's error envelope, as its express error handler writes it."""
    return {"status": status, "error": HTTPStatus(status).phrase, "response": {"message": message}}


def connection_closed_body() -> dict[str, Json]:
    """What a send answers when the instance's WhatsApp socket is closed (HTTP 400)."""
    return evolution_error_body(400, ["Error: Connection Closed"])


def timed_out_body() -> dict[str, Json]:
    """What a send answers when a WhatsApp query timed out inside Evolution (HTTP 500)."""
    return evolution_error_body(500, "Timed Out")


def not_on_whatsapp_body(number: str) -> dict[str, Json]:
    """What a send to a number without WhatsApp answers (HTTP 400)."""
    return evolution_error_body(400, [{"jid": to_jid(number), "exists": False, "number": number}])


def license_required_body() -> dict[str, Json]:
    """What Evolution 2.4 answers on every business endpoint before it is activated (HTTP 503)."""
    return {
        "error": "service not activated",
        "code": "LICENSE_REQUIRED",
        "register_url": "http://127.0.0.1/manager/login",
        "instance_id": str(uuid.UUID(int=0)),
        "docs_url": "https://docs.evolutionfoundation.com.br/licensing",
        "message": "This Evolution API instance is not activated.",
    }


def unknown_instance_body(instance: str | None) -> dict[str, Json]:
    return evolution_error_body(404, [f'The "{instance}" instance does not exist'])


def to_jid(number: str) -> str:
    """The JID Evolution sends to for a `number` (its `createJid`, without the BR/MX digit rewriting)."""
    if "@" in number:
        user, _, server = number.partition("@")
        return f"{user.split(':')[0]}@{server}"
    return "".join(ch for ch in number if ch.isdigit()) + "@s.whatsapp.net"


def new_message_id() -> str:
    """A message id shaped like the ones Baileys generates for messages sent through the API."""
    return "3EB0" + secrets.token_hex(9).upper()


def new_phone_message_id() -> str:
    """A message id shaped like the ones a phone's WhatsApp generates."""
    return "3A" + secrets.token_hex(9).upper()


def validation_errors(
    body: Json, schema: Mapping[str, tuple[type, ...]], required: tuple[str, ...]
) -> list[str]:
    """Evolution's jsonschema messages: `instance requires property "x"`, `x is not of a type(s) string`."""
    if not isinstance(body, dict):
        return ["instance is not of a type(s) object"]
    errors = [f'instance requires property "{name}"' for name in required if name not in body]
    for name, types in schema.items():
        value = body.get(name)
        if name in body and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            errors.append(
                "Invalid format" if name == "number" else f"{name} is not of a type(s) {types[0].__name__}"
            )
    return errors


def send_text_errors(body: Json) -> dict[str, Json] | None:
    """Evolution's 400 body for an invalid `sendText` request, or None when it is valid."""
    if errors := validation_errors(body, SEND_TEXT_SCHEMA, ("number", "text")):
        return evolution_error_body(400, [errors])
    if not body["text"].strip():
        return evolution_error_body(400, ["Text is required"])
    return None


def send_presence_errors(body: Json) -> dict[str, Json] | None:
    """Evolution's 400 body for an invalid `sendPresence` request, or None when it is valid."""
    if errors := validation_errors(body, SEND_PRESENCE_SCHEMA, ("number", "presence", "delay")):
        return evolution_error_body(400, [errors])
    if body["presence"] not in PRESENCES:
        return evolution_error_body(400, [["presence is not one of enum values"]])
    return None


def read_message_errors(body: Json) -> list[str]:
    """What Evolution's `readMessageSchema` (jsonschema) reports for a `markMessageAsRead` body."""
    if not isinstance(body, dict) or "readMessages" not in body:
        return ['instance requires property "readMessages"']
    keys = body["readMessages"]
    if not isinstance(keys, list):
        return ["instance.readMessages is not of a type(s) array"]
    errors = [] if keys else ["instance.readMessages does not meet minimum length of 1"]
    if len({json.dumps(key, sort_keys=True) for key in keys}) < len(keys):
        errors.append("instance.readMessages contains duplicate item")
    for index, key in enumerate(keys):
        where = f"instance.readMessages[{index}]"
        if not isinstance(key, dict):
            errors.append(f"{where} is not of a type(s) object")
            continue
        errors += [
            f'{where} requires property "{name}"' for name in ("id", "fromMe", "remoteJid") if name not in key
        ]
        for name, kind in (("id", str), ("remoteJid", str), ("fromMe", bool)):
            if name in key and not isinstance(key[name], kind):
                errors.append(f"{where}.{name} is not of a type(s) {'boolean' if kind is bool else 'string'}")
            elif name in key and kind is str and not key[name]:
                errors.append(f"{where}.{name} does not meet minimum length of 1")
    return errors


def readable_keys(body: Json) -> list[dict[str, Json]]:
    """The keys of a valid `markMessageAsRead` body that Evolution 2.3 marks: it keeps only
    `isJidGroup || isPnUser` keys, so a `@lid` key is skipped."""
    return [key for key in body["readMessages"] if key["remoteJid"].endswith(("@s.whatsapp.net", "@g.us"))]


def message_id_of_media_request(body: Json) -> str | None:
    """The `message.key.id` of a `getBase64FromMediaMessage` body."""
    body = body if isinstance(body, dict) else {}
    message_id = ((body.get("message") or {}).get("key") or {}).get("id")
    return message_id if isinstance(message_id, str) else None


def sent_text_body(
    *, remote_jid: str, message_id: str, text: str, instance_id: str, timestamp: int
) -> dict[str, Json]:
    """The 201 body of `sendText`: the message as Baileys sent it (also the `send.message` webhook's data)."""
    return {
        "key": {"remoteJid": remote_jid, "fromMe": True, "id": message_id},
        "pushName": "Você",
        "status": "PENDING",
        "message": {"conversation": text},
        "contextInfo": None,
        "messageType": "conversation",
        "messageTimestamp": timestamp,
        "instanceId": instance_id,
        "source": "web",
    }


def media_body(message_id: str, *, base64: str, mimetype: str, file_length: int | None) -> dict[str, Json]:
    """The 201 body of `getBase64FromMediaMessage`."""
    kind = mimetype.split("/", maxsplit=1)[0]
    media_type = f"{kind}Message" if kind in {"audio", "image", "video"} else "documentMessage"
    return {
        "mediaType": media_type,
        "fileName": f"{message_id}.{mimetype.rsplit('/', maxsplit=1)[-1].split(';', maxsplit=1)[0]}",
        "caption": None,
        "size": {"fileLength": file_length, "height": None, "width": None},
        "mimetype": mimetype,
        "base64": base64,
        "buffer": None,
    }


def text_message_data(
    *,
    remote_jid: str,
    message_id: str,
    text: str,
    timestamp: int,
    push_name: str,
    from_me: bool,
    instance_id: str,
) -> dict[str, Json]:
    """`messages.upsert` data of a text typed on a phone: the person's, or the business operator's
    (`fromMe`)."""
    return {
        "key": {"remoteJid": remote_jid, "fromMe": from_me, "id": message_id},
        "pushName": push_name,
        "status": "DELIVERY_ACK",
        "message": {"conversation": text, "messageContextInfo": {"messageSecret": secrets.token_urlsafe(24)}},
        "messageType": "conversation",
        "messageTimestamp": timestamp,
        "instanceId": instance_id,
        "source": "android",
    }


def voice_note_data(
    *,
    remote_jid: str,
    message_id: str,
    timestamp: int,
    push_name: str,
    mimetype: str,
    file_length: int,
    seconds: int,
    instance_id: str,
) -> dict[str, Json]:
    """`messages.upsert` data of a voice note (`ptt`), without the media: as Evolution posts it when the
    webhook's base64 option is off, so the receiver fetches it with `getBase64FromMediaMessage`."""
    media_key = secrets.token_urlsafe(24)
    return {
        "key": {"remoteJid": remote_jid, "fromMe": False, "id": message_id},
        "pushName": push_name,
        "status": "DELIVERY_ACK",
        "message": {
            "audioMessage": {
                "url": f"https://mmg.whatsapp.net/v/t62.7117-24/{message_id}.enc",
                "mimetype": mimetype,
                "fileSha256": secrets.token_urlsafe(24),
                "fileLength": str(file_length),
                "seconds": seconds,
                "ptt": True,
                "mediaKey": media_key,
                "directPath": f"/v/t62.7117-24/{message_id}.enc",
                "mediaKeyTimestamp": str(timestamp),
            },
            "messageContextInfo": {"messageSecret": secrets.token_urlsafe(24)},
        },
        "messageType": "audioMessage",
        "messageTimestamp": timestamp,
        "instanceId": instance_id,
        "source": "android",
    }


def webhook_envelope(
    event: str, *, instance: str, data: Json, destination: str, sender: str, server_url: str, apikey: str
) -> dict[str, Json]:
    """The body Evolution's webhook controller posts for one event (`messages.upsert`, `send.message`)."""
    return {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": destination,
        # Evolution writes server-local time with a Z; receivers must not order by it
        "date_time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sender": sender,
        "server_url": server_url,
        "apikey": apikey,
    }
