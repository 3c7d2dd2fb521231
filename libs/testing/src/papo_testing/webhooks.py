"""Evolution API v2 `messages.upsert` webhooks, shaped as Evolution 2.3 sends them, for end-to-end tests."""

from __future__ import annotations

import secrets
from typing import Any

Json = dict[str, Any]


def envelope(
    instance: str, data: Json, *, event: str = "messages.upsert", channel: str = "WHATSAPP-BAILEYS"
) -> Json:
    body = {
        "event": event,
        "instance": instance,
        "data": data,
        "destination": "http://papo-ingest:8080/webhook/evolution",
        # Evolution writes server-local time with a Z: never order by it
        "date_time": "2026-11-22T09:00:00.000Z",
        "sender": "5511888880000@s.whatsapp.net",
        "server_url": "http://evolution:8080",
        "apikey": "instance-token-" + secrets.token_hex(4),
    }
    if channel == "EVOLUTION":  # that channel has no number of its own
        del body["sender"]
    return body


def text_webhook(
    instance: str,
    message_id: str,
    text: str,
    timestamp: int,
    *,
    number: str = "5511999990000",
    push_name: str = "Ana",
    from_me: bool = False,
    channel: str = "WHATSAPP-BAILEYS",
) -> Json:
    """A text as `channel` posts it: `EVOLUTION` keeps the number its feeder gave (bare digits) and sends no
    `status`, `sender` or WhatsApp context; the Cloud API channel has no `status` either."""
    if channel == "WHATSAPP-BAILEYS":
        return envelope(
            instance,
            {
                "key": {"remoteJid": f"{number}@s.whatsapp.net", "fromMe": from_me, "id": message_id},
                "pushName": push_name,
                "status": "DELIVERY_ACK",
                "message": {"conversation": text, "messageContextInfo": {"messageSecret": "c2VjcmV0"}},
                "messageType": "conversation",
                "messageTimestamp": timestamp,
                "instanceId": "1b0e7c5e-2f7a-4a55-9f3e-6d6f3a0b9c11",
                "source": "android",
            },
        )
    remote_jid = number if channel == "EVOLUTION" else f"{number}@s.whatsapp.net"
    return envelope(
        instance,
        {
            "key": {"id": message_id, "remoteJid": remote_jid, "fromMe": from_me},
            "pushName": push_name,
            "message": {"conversation": text},
            "messageType": "conversation",
            "messageTimestamp": timestamp,
            "source": "unknown",
            "instanceId": "40f4f9ba-94cb-444e-b7be-13da4360b5aa",
        },
        channel=channel,
    )


def audio_webhook(
    instance: str,
    message_id: str,
    timestamp: int,
    *,
    base64: str | None,
    seconds: int = 4,
    number: str = "5511999990000",
    push_name: str = "Ana",
) -> Json:
    message: Json = {
        "audioMessage": {
            "url": "https://mmg.whatsapp.net/v/t62.7117-24/fake.enc",
            "mimetype": "audio/ogg; codecs=opus",
            "fileSha256": "ZmFrZQ==",
            "fileLength": "7340",
            "seconds": seconds,
            "ptt": True,
            "mediaKey": "ZmFrZQ==",
            "directPath": "/v/t62.7117-24/fake.enc",
            "mediaKeyTimestamp": str(timestamp),
        },
        "messageContextInfo": {"messageSecret": "c2VjcmV0"},
    }
    if base64 is not None:
        message["base64"] = base64
    return envelope(
        instance,
        {
            "key": {"remoteJid": f"{number}@s.whatsapp.net", "fromMe": False, "id": message_id},
            "pushName": push_name,
            "status": "DELIVERY_ACK",
            "message": message,
            "messageType": "audioMessage",
            "messageTimestamp": timestamp,
            "instanceId": "1b0e7c5e-2f7a-4a55-9f3e-6d6f3a0b9c11",
            "source": "android",
        },
    )
