"""The Evolution API v2 calls deliver makes, in Evolution's wire format.

- `POST /chat/sendPresence/{instance}` `{number, presence, delay}`: Evolution shows the presence for `delay`
  ms and answers only afterwards, so the request's timeout must include the delay.
- `POST /message/sendText/{instance}` `{number, text, delay, linkPreview}`: 201 with the sent message; its
  `key.id` is the WhatsApp message id. 201 means WhatsApp accepted it, not that it was delivered.
- `POST /chat/markMessageAsRead/{instance}` `{readMessages: [{remoteJid, fromMe, id}, ...]}` (`ReadMessageDto`,
  `readMessageSchema`: at least one, unique, non-empty `id` and `remoteJid`): 201 `{"message": "Read
  messages", "read": "success"}`. Evolution 2.3 silently skips keys whose `remoteJid` is neither a phone
  JID nor a group, so a `@lid` chat gets no blue ticks.

All authenticate with the `apikey` header of the instance they go through (`ApiKeys`). Non-2xx answers raise `EvolutionError` with the parsed body;
transport failures raise httpx's own errors. Telling the two kinds apart is `classify`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from papo_common.errors import PermanentError


class EvolutionError(Exception):
    """Evolution answered, but not with success."""

    def __init__(self, endpoint: str, status_code: int, body: Any) -> None:
        super().__init__(f"{endpoint} answered {status_code}: {str(body)[:300]}")
        self.endpoint = endpoint
        self.status_code = status_code
        self.body = body


class EvolutionProtocolError(EvolutionError):
    """A success answer without what a success must carry (e.g. no `key.id`)."""


class MissingApiKey(PermanentError):
    """No key is configured for the instance a reply goes through."""


@dataclass(frozen=True)
class ApiKeys:
    """Which `apikey` each instance is called with: its own when mapped, else the global one. Several
    WhatsApp numbers can share a deployment, each with its own instance token; a reply must never go out
    with another tenant's key."""

    default: SecretStr
    per_instance: Mapping[str, SecretStr] = field(default_factory=dict)

    def for_instance(self, instance: str) -> str:
        key = self.per_instance.get(instance, self.default).get_secret_value()
        if not key:
            raise MissingApiKey(
                f"no Evolution API key for instance {instance!r}: set it in PAPO_EVOLUTION_API_KEYS "
                "or set PAPO_EVOLUTION_API_KEY"
            )
        return key


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    remote_jid: str | None
    status: str | None


def evolution_number(chat_id: str) -> str:
    """The `number` Evolution expects for a chat JID.

    A phone JID is sent as its digits, which Evolution resolves (including Brazil's and Mexico's ninth-digit
    variants) before sending; a device suffix (`:12`) is dropped. A `@lid` is sent whole: Evolution passes
    it through untouched and treats it as existing.
    """
    user, at, server = chat_id.partition("@")
    if at and server == "s.whatsapp.net":
        return user.split(":")[0]
    return chat_id


class EvolutionClient:
    """Calls one Evolution API server through a shared `httpx.AsyncClient`."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        api_keys: ApiKeys | SecretStr,
        timeout_seconds: float,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_keys = api_keys if isinstance(api_keys, ApiKeys) else ApiKeys(api_keys)
        self._timeout_seconds = timeout_seconds

    async def send_presence(
        self, instance: str, number: str, *, delay_ms: int, presence: str = "composing"
    ) -> None:
        """Show `presence` (typing) to `number` for `delay_ms`; returns when Evolution is done showing it."""
        body = {"number": number, "presence": presence, "delay": delay_ms}
        await self._post("chat/sendPresence", instance, body, hold_ms=delay_ms)

    async def send_text(self, instance: str, number: str, text: str, *, delay_ms: int = 0) -> SentMessage:
        """Send `text`; Evolution types for `delay_ms` first. Returns the message WhatsApp accepted."""
        body = {"number": number, "text": text, "delay": delay_ms, "linkPreview": False}
        answer = await self._post("message/sendText", instance, body, hold_ms=delay_ms)
        key = answer.get("key") if isinstance(answer, dict) else None
        if not isinstance(key, dict) or not isinstance(key.get("id"), str) or not key["id"]:
            raise EvolutionProtocolError("message/sendText", 201, answer)
        status = answer.get("status")
        return SentMessage(key["id"], key.get("remoteJid"), status if isinstance(status, str) else None)

    async def mark_as_read(
        self, instance: str, remote_jid: str, message_ids: Sequence[str], *, timeout_seconds: float
    ) -> None:
        """Mark messages the person sent in `remote_jid` as read (blue ticks)."""
        unique = list(dict.fromkeys(message_ids))  # the schema demands unique items
        body = {"readMessages": [{"remoteJid": remote_jid, "fromMe": False, "id": id_} for id_ in unique]}
        await self._post("chat/markMessageAsRead", instance, body, timeout_seconds=timeout_seconds)

    async def _post(
        self,
        endpoint: str,
        instance: str,
        body: dict[str, Any],
        *,
        hold_ms: int = 0,
        timeout_seconds: float | None = None,
    ) -> Any:
        response = await self._http.post(
            f"{self._base_url}/{endpoint}/{quote(instance, safe='')}",
            json=body,
            headers={"apikey": self._api_keys.for_instance(instance)},
            timeout=(timeout_seconds or self._timeout_seconds) + hold_ms / 1000,
        )
        try:
            payload = response.json()
        except ValueError:
            payload = response.text[:500]
        if not response.is_success:
            raise EvolutionError(endpoint, response.status_code, payload)
        return payload
