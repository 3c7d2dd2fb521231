"""What people do on their phones: a contact writes or sends a voice note, or the business's operator writes
from the business number. Each becomes the `messages.upsert` webhook Evolution would post."""

from __future__ import annotations

import base64
import time

from papo_simulator.webhooks import WebhookPoster
from papo_simulator.wire import new_phone_message_id, text_message_data, voice_note_data, webhook_envelope
from papo_simulator.world import Chat, ChatMessage, Media, World

OPUS_BYTES_PER_SECOND = 2000
"""A WhatsApp voice note is Opus at about 16 kbit/s: an estimate of its length when the page gives none."""


class Phones:
    def __init__(self, world: World, poster: WebhookPoster, *, server_url: str, apikey: str) -> None:
        self._world = world
        self._poster = poster
        self._server_url = server_url
        self._apikey = apikey

    def write(self, chat: Chat, text: str, *, as_operator: bool = False) -> ChatMessage:
        """The contact (or, `as_operator`, the business from its own phone) sends `text`."""
        instance = self._world.instances[chat.instance]
        message = ChatMessage(
            new_phone_message_id(),
            "operator" if as_operator else "contact",
            "text",
            text,
            time.time(),
            "sent",
        )
        data = text_message_data(
            remote_jid=chat.contact.jid,
            message_id=message.id,
            text=text,
            timestamp=int(message.at),
            push_name=instance.label if as_operator else chat.contact.name,
            from_me=as_operator,
            instance_id=instance.instance_id,
        )
        self._world.add_message(chat, message)
        self._post(chat, "messages.upsert", data, message.id)
        return message

    def send_voice_note(
        self, chat: Chat, audio: bytes, *, mimetype: str, seconds: float | None = None
    ) -> ChatMessage:
        """The contact sends a recorded voice note; papo fetches its media with getBase64FromMediaMessage."""
        instance = self._world.instances[chat.instance]
        encoded = base64.b64encode(audio).decode()
        message = ChatMessage(
            new_phone_message_id(),
            "contact",
            "audio",
            "",
            time.time(),
            "sent",
            audio_url=f"data:{mimetype.replace(' ', '')};base64,{encoded}",
        )
        self._world.media[message.id] = Media(encoded, mimetype, len(audio))
        length = seconds if seconds and seconds > 0 else len(audio) / OPUS_BYTES_PER_SECOND
        data = voice_note_data(
            remote_jid=chat.contact.jid,
            message_id=message.id,
            timestamp=int(message.at),
            push_name=chat.contact.name,
            mimetype=mimetype,
            file_length=len(audio),
            seconds=max(1, round(length)),
            instance_id=instance.instance_id,
        )
        self._world.add_message(chat, message)
        self._post(chat, "messages.upsert", data, message.id)
        return message

    def announce_sent(self, chat: Chat, data: dict[str, object]) -> None:
        """What Evolution posts after a message sent through its API: `send.message`."""
        self._post(chat, "send.message", data, None)

    def _post(self, chat: Chat, event: str, data: dict[str, object], message_id: str | None) -> None:
        instance = self._world.instances[chat.instance]
        body = webhook_envelope(
            event,
            instance=instance.name,
            data=data,
            destination=self._poster.url,
            sender=f"{instance.number}@s.whatsapp.net",
            server_url=self._server_url,
            apikey=self._apikey,
        )
        self._poster.post(chat, body, message_id)
