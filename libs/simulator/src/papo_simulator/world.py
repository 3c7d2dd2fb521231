"""The simulated WhatsApp: business numbers (Evolution instances), contacts, their chats, the media papo can
fetch, and what the simulator observed on the wire. Changes are announced to the page's live subscribers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from papo_simulator.wire import to_jid

Author = Literal["contact", "bot", "operator"]
Status = Literal["sending", "sent", "delivered", "read", "failed"]


@dataclass(frozen=True)
class Instance:
    name: str
    label: str
    number: str
    instance_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass(frozen=True)
class Contact:
    number: str
    name: str

    @property
    def jid(self) -> str:
        return to_jid(self.number)


@dataclass
class ChatMessage:
    id: str
    author: Author
    kind: Literal["text", "audio"]
    text: str
    at: float
    """Wall-clock seconds since the epoch."""
    status: Status = "sent"
    audio_url: str | None = None


@dataclass
class Observation:
    """One thing the simulator saw on the wire, for the timeline."""

    at: float
    what: str
    detail: str = ""
    message_id: str | None = None


@dataclass
class Chat:
    instance: str
    contact: Contact
    messages: list[ChatMessage] = field(default_factory=list)
    observations: list[Observation] = field(default_factory=list)
    typing: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    """ingest's admin history of the conversation (PostgreSQL rows), oldest first."""
    paused: str | None = None
    """Why papo is not answering this chat now (`operator`, `human_requested`...), from ingest's admin API."""

    @property
    def key(self) -> str:
        return f"{self.instance}/{self.contact.number}"


@dataclass(frozen=True)
class Media:
    base64: str
    mimetype: str
    file_length: int


DEFAULT_INSTANCES = (
    Instance("papo-shop", "Papo Shop", "5511900000001"),
    Instance("papo-clinic", "Papo Clinic", "5511900000002"),
)
DEFAULT_CONTACTS = (
    Contact("5511987650001", "Ana"),
    Contact("5511987650002", "Bruno"),
    Contact("5511987650003", "Carla"),
)


class World:
    """Everything the page shows. Not thread-safe: it lives on the simulator's event loop."""

    def __init__(
        self,
        instances: tuple[Instance, ...] = DEFAULT_INSTANCES,
        contacts: tuple[Contact, ...] = DEFAULT_CONTACTS,
    ) -> None:
        self.instances = {instance.name: instance for instance in instances}
        self.contacts = {contact.number: contact for contact in contacts}
        self.media: dict[str, Media] = {}
        self._chats: dict[tuple[str, str], Chat] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    def chat(self, instance: str, number: str) -> Chat:
        """The chat of `instance` with the contact whose number or JID is `number` (KeyError if unknown)."""
        digits = to_jid(number).split("@")[0]
        contact = self.contacts[digits]
        found = self._chats.get((instance, digits))
        if found is None:
            if instance not in self.instances:
                raise KeyError(instance)
            found = self._chats[(instance, digits)] = Chat(instance, contact)
        return found

    def chats(self) -> list[Chat]:
        return list(self._chats.values())

    def add_message(self, chat: Chat, message: ChatMessage) -> None:
        chat.messages.append(message)
        self.announce("message", chat, message=asdict(message))

    def set_status(self, chat: Chat, message_id: str, status: Status) -> bool:
        for message in chat.messages:
            if message.id == message_id:
                message.status = status
                self.announce("status", chat, id=message_id, status=status)
                return True
        return False

    def set_typing(self, chat: Chat, typing: bool) -> None:
        if chat.typing != typing:
            chat.typing = typing
            self.announce("typing", chat, typing=typing)

    def observe(self, chat: Chat, what: str, detail: str = "", message_id: str | None = None) -> None:
        chat.observations.append(Observation(time.time(), what, detail, message_id))
        self.announce("timeline", chat)

    def set_history(self, chat: Chat, rows: list[dict[str, Any]]) -> None:
        if rows != chat.history:
            chat.history = rows
            self.announce("timeline", chat)

    def set_paused(self, chat: Chat, reason: str | None) -> None:
        if chat.paused != reason:
            chat.paused = reason
            self.announce("paused", chat, reason=reason)

    def announce(self, kind: str, chat: Chat, **details: Any) -> None:
        event = {"type": kind, "instance": chat.instance, "number": chat.contact.number, **details}
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Every change from now on, for one subscriber, until it stops iterating."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)
