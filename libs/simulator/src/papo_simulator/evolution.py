"""The Evolution API side of the simulator: the endpoints papo calls, answered as Evolution 2.3 answers them,
with their effect on the simulated phones (typing, messages arriving, read ticks, media fetched)."""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Mapping

from papo_simulator.phone import Phones
from papo_simulator.wire import (
    Json,
    evolution_error_body,
    media_body,
    message_id_of_media_request,
    new_message_id,
    not_on_whatsapp_body,
    read_message_errors,
    readable_keys,
    send_presence_errors,
    send_text_errors,
    sent_text_body,
    unknown_instance_body,
)
from papo_simulator.world import Chat, ChatMessage, World

Answer = tuple[int, Json]
TYPING_PRESENCES = frozenset({"composing", "recording"})


class SimulatedEvolution:
    def __init__(self, world: World, phones: Phones, *, api_key: str) -> None:
        self._world = world
        self._phones = phones
        self._api_key = api_key

    def refuse(self, instance: str, headers: Mapping[str, str]) -> Answer | None:
        """Evolution's guards, in its order: an unknown instance is 404, then a wrong `apikey` 401."""
        if instance not in self._world.instances:
            return 404, unknown_instance_body(instance)
        if self._api_key and not hmac.compare_digest(headers.get("apikey", ""), self._api_key):
            return 401, evolution_error_body(401, "Unauthorized")
        return None

    def _chat(self, instance: str, number: str) -> Chat | None:
        try:
            return self._world.chat(instance, number)
        except KeyError:
            return None

    async def send_text(self, instance: str, body: Json) -> Answer:
        if refusal := send_text_errors(body):
            return 400, refusal
        chat = self._chat(instance, body["number"])
        if chat is None:
            return 400, not_on_whatsapp_body(body["number"])
        delay = body.get("delay") or 0
        if delay:
            # Evolution shows "composing" for `delay` ms before it sends
            self._world.set_typing(chat, True)
            await asyncio.sleep(delay / 1000)
        message = ChatMessage(new_message_id(), "bot", "text", body["text"], time.time(), "sent")
        self._world.set_typing(chat, False)
        self._world.add_message(chat, message)
        self._world.observe(chat, "delivery", f"sendText, {len(body['text'])} characters", message.id)
        data = sent_text_body(
            remote_jid=chat.contact.jid,
            message_id=message.id,
            text=body["text"],
            instance_id=self._world.instances[instance].instance_id,
            timestamp=int(message.at),
        )
        self._phones.announce_sent(chat, data)
        return 201, data

    async def send_presence(self, instance: str, body: Json) -> Answer:
        if refusal := send_presence_errors(body):
            return 400, refusal
        chat = self._chat(instance, body["number"])
        if chat is None:
            return 400, not_on_whatsapp_body(body["number"])
        typing = body["presence"] in TYPING_PRESENCES
        self._world.observe(
            chat, "typing" if typing else "presence", f"{body['presence']} for {body['delay']} ms"
        )
        self._world.set_typing(chat, typing)
        if body["delay"]:
            await asyncio.sleep(body["delay"] / 1000)
            self._world.set_typing(chat, False)
        return 201, {"presence": body["presence"]}

    async def mark_read(self, instance: str, body: Json) -> Answer:
        if errors := read_message_errors(body):
            return 400, evolution_error_body(400, [errors])
        for key in readable_keys(body):
            chat = self._chat(instance, key["remoteJid"])
            if chat is not None and self._world.set_status(chat, key["id"], "read"):
                self._world.observe(chat, "read", "markMessageAsRead", key["id"])
        return 201, {"message": "Read messages", "read": "success"}

    async def media(self, instance: str, body: Json) -> Answer:
        message_id = message_id_of_media_request(body)
        media = self._world.media.get(message_id) if message_id else None
        if message_id is None or media is None:
            return 400, evolution_error_body(400, ["Message not found"])
        for chat in self._world.chats():
            if chat.instance == instance and any(m.id == message_id for m in chat.messages):
                self._world.observe(chat, "media fetched", "getBase64FromMediaMessage", message_id)
        return 201, media_body(
            message_id, base64=media.base64, mimetype=media.mimetype, file_length=media.file_length
        )
