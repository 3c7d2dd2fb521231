"""The one client of Evolution API v2 that papo's services use, and the one reading of its failures.

Calls, in Evolution 2.3's wire format (`src/api/routes/*.router.ts`, `src/validate/*.schema.ts`):
- `POST /message/sendText/{instance}` `{number, text, delay, linkPreview}`: 201 with the sent message, whose
  `key.id` is the WhatsApp message id. 201 means accepted, not delivered. On every channel Evolution emits
  the `send.message` webhook *before* it answers this call.
- `POST /chat/sendPresence/{instance}` `{number, presence, delay}`: Evolution shows the presence for `delay`
  ms and answers afterwards, so the request's timeout includes the delay.
- `POST /chat/markMessageAsRead/{instance}` `{readMessages: [{remoteJid, fromMe, id}, ...]}`.
- `POST /chat/getBase64FromMediaMessage/{instance}` `{message: <the webhook's data>, convertToMp4}`: the
  media as base64 (Baileys decrypts it from WhatsApp's CDN; the Cloud API channel fetches it from Meta's
  Graph API).
- A media URL (`message.mediaUrl`, set when Evolution stores media in S3) is fetched with a plain GET and
  no `apikey`: the URL is the credential, and the key must never travel to a third party.

Every instance is called with its own `apikey` (`PAPO_EVOLUTION_API_KEYS`), else the global one
(`PAPO_EVOLUTION_API_KEY`).

Evolution answers almost every failure inside a send with HTTP 400, whether WhatsApp's socket was closed for
a moment or the number does not exist, so `classify` reads the message in Evolution's envelope
`{"status": 400, "error": "Bad Request", "response": {"message": [...]}}`, not only the status.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr, model_validator

from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.resilience import retry_transient
from papo_common.settings import PapoSettings

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_EVOLUTION_URL = "http://127.0.0.1:8081"
"""Where `papo dev`'s simulator listens; a deployment sets `PAPO_EVOLUTION_URL` to its Evolution API."""


class EvolutionSettings(PapoSettings):
    """Where Evolution API is and which key each instance is called with, shared by every caller."""

    evolution_url: str = DEFAULT_EVOLUTION_URL
    """Base URL of Evolution API (`PAPO_EVOLUTION_URL`), without a trailing path."""
    evolution_api_key: SecretStr = SecretStr("")
    """Evolution's global API key (`PAPO_EVOLUTION_API_KEY`), used for every instance without its own key."""
    evolution_api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    """Per-instance keys (`PAPO_EVOLUTION_API_KEYS`, a JSON object `{"<instance>": "<key>"}`)."""
    evolution_timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    """Per request, on top of any typing delay Evolution holds a request open for."""

    @model_validator(mode="after")
    def _real_keys(self) -> EvolutionSettings:
        if self.evolution_api_keys:  # then the global key is only a fallback and may be absent
            for key in self.evolution_api_keys.values():
                self.refuse_placeholder("evolution_api_keys", key)
        else:
            self.refuse_placeholder("evolution_api_key", self.evolution_api_key)
        return self

    def evolution_keys(self) -> ApiKeys:
        return ApiKeys(self.evolution_api_key, self.evolution_api_keys)


# Failures, as the services see them


class EvolutionError(Exception):
    """Evolution answered, but not with success."""

    def __init__(self, endpoint: str, status_code: int, body: Any) -> None:
        super().__init__(f"{endpoint} answered {status_code}: {str(body)[:300]}")
        self.endpoint = endpoint
        self.status_code = status_code
        self.body = body


class EvolutionProtocolError(EvolutionError):
    """A success answer without what a success must carry (e.g. no `key.id`)."""


class MissingApiKey(Exception):
    """No key is configured for the instance a call goes through."""


class EvolutionUnavailable(DependencyUnavailable):
    """Evolution (or WhatsApp behind it) kept failing transiently: redeliver later."""


class EvolutionMisconfigured(DependencyUnavailable):
    """papo's configuration does not fit the Evolution server (a rejected or missing key, an unknown instance,
    an unactivated server). Fixable by an operator, so the message is redelivered rather than lost."""


class EvolutionRejected(PermanentError):
    """Evolution refused the request for good (a number not on WhatsApp, an invalid body)."""


class MethodNotAvailable(EvolutionRejected):
    """The instance's channel does not offer this call (`EVOLUTION`, `WHATSAPP-BUSINESS`: no presence, no
    read receipts)."""


Kind = Literal["transient", "misconfigured", "unsupported", "permanent"]


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: str
    """Fit for a log line: never a key, never a message text."""

    @property
    def transient(self) -> bool:
        return self.kind == "transient"

    def error(self, what: str) -> Exception:
        """The exception a service raises for this verdict: redelivery for transient and misconfigured,
        dead-letter for the rest."""
        message = f"{what}: {self.reason}"
        match self.kind:
            case "transient":
                return EvolutionUnavailable(message)
            case "misconfigured":
                return EvolutionMisconfigured(message)
            case "unsupported":
                return MethodNotAvailable(message)
            case _:
                return EvolutionRejected(message)


# Lower-cased fragments of Baileys' and Evolution's messages for conditions that pass on their own: a socket
# being re-established, a WhatsApp query timing out, WhatsApp's rate limit, an instance reconnecting.
_TRANSIENT_FRAGMENTS = (
    "connection closed",
    "connection lost",
    "connection was lost",
    "connection failure",
    "connection terminated",
    "stream errored",
    "timed out",
    "timeout",
    "rate-overlimit",
    "not connected",
    "socket hang up",
    "econnreset",
    "econnrefused",
    "etimedout",
    # The Cloud API channel's send when Meta's Graph API did not answer at all (its `post` returns nothing).
    "cannot read properties of undefined (reading 'message')",
)
_TRANSIENT_STATUSES = frozenset({408, 425, 429})
_METHOD_NOT_AVAILABLE = "method not available on"
# Meta Cloud API error codes, as the WHATSAPP-BUSINESS channel passes them through in a 201 body.
_META_TRANSIENT_CODES = frozenset({1, 2, 4, 17, 341, 80007, 130429, 131000, 131016, 131048, 131056, 133004})
_META_MISCONFIGURED_CODES = frozenset({0, 3, 10, 190, 131031, 133010})


def classify(error: BaseException) -> Verdict:
    """What a failed call to Evolution means: retry it (`transient`), fix the configuration
    (`misconfigured`), stop calling it on this channel (`unsupported`), or give up (`permanent`)."""
    if isinstance(error, httpx.TimeoutException):
        return Verdict("transient", f"Evolution API did not answer in time ({type(error).__name__})")
    if isinstance(error, httpx.TransportError):
        return Verdict("transient", f"Evolution API unreachable ({type(error).__name__})")
    if isinstance(error, MissingApiKey):
        return Verdict("misconfigured", str(error))
    if isinstance(error, EvolutionProtocolError):
        if meta := _meta_error(error.body):
            return _classify_meta(meta)
        if error.endpoint != "message/sendText":
            return Verdict("permanent", f"{error.endpoint} answered success without the media")
        # Evolution said it sent the message; retrying would send it twice.
        return Verdict("permanent", "Evolution API accepted the message without a message id")
    if isinstance(error, EvolutionError):
        return _classify_answer(error.status_code, error.body)
    return Verdict("permanent", f"unexpected {type(error).__name__}")


def _classify_answer(status: int, body: Any) -> Verdict:
    messages = list(_messages(body))
    detail = "; ".join(messages)[:300] or str(body)[:300]
    lowered = [m.lower() for m in messages]
    if isinstance(body, dict) and body.get("code") == "LICENSE_REQUIRED":
        return Verdict("misconfigured", "Evolution API is not activated (LICENSE_REQUIRED)")
    if status in (401, 403):
        return Verdict(
            "misconfigured", f"Evolution API refused the API key ({status}): check PAPO_EVOLUTION_API_KEYS"
        )
    if status == 404:
        return Verdict("misconfigured", f"Evolution API has no such instance or route (404): {detail}")
    if any(_METHOD_NOT_AVAILABLE in m for m in lowered):
        return Verdict("unsupported", detail)
    if not_on_whatsapp := _count_not_on_whatsapp(body):
        return Verdict("permanent", f"{not_on_whatsapp} number(s) not on WhatsApp")
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return Verdict("transient", f"Evolution API answered {status}: {detail}")
    if status == 400 and any(fragment in m for m in lowered for fragment in _TRANSIENT_FRAGMENTS):
        return Verdict("transient", f"WhatsApp connection trouble (400): {detail}")
    return Verdict("permanent", f"Evolution API rejected the request ({status}): {detail}")


def _meta_error(body: Any) -> dict[str, Any] | None:
    """Meta's error object, which the Cloud API channel returns as its sendText answer (HTTP 201) when the
    Graph API refused the send: `{"message", "type", "code", "error_data", "fbtrace_id"}`."""
    if isinstance(body, dict) and "key" not in body and ("fbtrace_id" in body or "error_data" in body):
        return body
    return None


def _classify_meta(error: dict[str, Any]) -> Verdict:
    code = error.get("code")
    detail = f"WhatsApp Cloud API error {code}: {str(error.get('message'))[:200]}"
    if code in _META_TRANSIENT_CODES:
        return Verdict("transient", detail)
    if code in _META_MISCONFIGURED_CODES:
        return Verdict("misconfigured", detail)
    return Verdict("permanent", detail)


def _messages(body: Any) -> Iterator[str]:
    """Every text inside Evolution's `response.message` (a string, a list, or lists of validation errors), or
    a top-level `message` (the licence gate's shape)."""
    if isinstance(body, str):
        yield body
        return
    if not isinstance(body, dict):
        return
    response = body.get("response")
    found = response.get("message") if isinstance(response, dict) else body.get("message")
    stack: list[Any] = [found]
    while stack:
        item = stack.pop(0)
        if isinstance(item, str):
            yield item
        elif isinstance(item, list):
            stack[:0] = item
        elif isinstance(item, dict) and "exists" not in item:  # `exists` entries carry phone numbers
            yield ", ".join(f"{key}={value}" for key, value in item.items())


def _count_not_on_whatsapp(body: Any) -> int:
    """How many `{"jid": ..., "exists": false}` entries Evolution returned for numbers without WhatsApp."""
    response = body.get("response") if isinstance(body, dict) else None
    found = response.get("message") if isinstance(response, dict) else None
    entries = found if isinstance(found, list) else [found]
    return sum(1 for entry in entries if isinstance(entry, dict) and entry.get("exists") is False)


# Retrying


RETRYABLE: tuple[type[BaseException], ...] = (EvolutionError, httpx.TransportError, MissingApiKey)
"""What a call to Evolution raises; anything else (Redis, a lost lock) propagates untouched."""


@dataclass(frozen=True)
class RetryPolicy:
    """Calls within one delivery of a message, before it is handed back for redelivery."""

    attempts: int = 4
    base_seconds: float = 0.5
    max_seconds: float = 8.0


async def call_with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    what: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `call` under papo's one retry policy (`papo_common.resilience.retry_transient`): transient failures
    are retried with exponential backoff and full jitter. A failure that is not transient is raised at once
    as its verdict's exception; a transient one that outlasts every attempt becomes `EvolutionUnavailable`,
    so the broker redelivers the message later."""

    async def classified() -> T:
        try:
            return await call()
        except RETRYABLE as error:
            verdict = classify(error)
            if verdict.kind == "misconfigured":
                logger.error(
                    "Evolution API configuration problem", extra={"what": what, "reason": verdict.reason}
                )
            raise verdict.error(what) from error

    retrying = retry_transient(
        attempts=policy.attempts,
        base_wait=policy.base_seconds,
        max_wait=policy.max_seconds,
        transient=(EvolutionUnavailable,),
        what=what,
        sleep=sleep,
    )
    try:
        return await retrying(classified)
    except DependencyUnavailable as exhausted:
        last = exhausted.__cause__
        if isinstance(last, EvolutionUnavailable) and not isinstance(exhausted, EvolutionUnavailable):
            raise EvolutionUnavailable(f"{last} (after {policy.attempts} attempts)") from last.__cause__
        raise


# The client


@dataclass(frozen=True)
class ApiKeys:
    """Which `apikey` each instance is called with: its own when mapped, else the global one. Several
    WhatsApp numbers can share a deployment, each with its own instance token; a call must never go out
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


class MediaTooLarge(Exception):
    """The media is larger than the caller's limit; the download was stopped."""


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
    """Calls one Evolution API server through a shared `httpx.AsyncClient`. Non-2xx answers raise
    `EvolutionError` with the parsed body, transport failures httpx's own errors: `classify` tells them
    apart, `call_with_retries` acts on that."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, api_keys: ApiKeys | SecretStr, timeout_seconds: float
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._api_keys = api_keys if isinstance(api_keys, ApiKeys) else ApiKeys(api_keys)
        self._timeout_seconds = timeout_seconds

    async def send_presence(
        self,
        instance: str,
        number: str,
        *,
        delay_ms: int,
        presence: str = "composing",
        timeout_seconds: float | None = None,
    ) -> None:
        """Show `presence` (typing) to `number` for `delay_ms`; returns when Evolution is done showing it."""
        body = {"number": number, "presence": presence, "delay": delay_ms}
        await self._post(
            "chat/sendPresence", instance, body, hold_ms=delay_ms, timeout_seconds=timeout_seconds
        )

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

    async def media_base64(self, instance: str, webhook_data: dict[str, Any], *, max_bytes: int) -> str:
        """A media message's bytes as base64, asked of Evolution with the webhook's whole `data`. Raises
        `MediaTooLarge` past `max_bytes`, `EvolutionProtocolError` when the answer carries no media."""
        url = f"{self._base_url}/chat/getBase64FromMediaMessage/{quote(instance, safe='')}"
        body = {"message": webhook_data, "convertToMp4": False}
        headers = {"apikey": self._api_keys.for_instance(instance)}
        # base64 is 4/3 of the bytes; the rest of the JSON is small.
        content, status = await self._read_limited(
            "POST", url, max_bytes * 4 // 3 + 8 * 1024, json=body, headers=headers
        )
        payload = _parse(content)
        if not 200 <= status < 300:
            raise EvolutionError("chat/getBase64FromMediaMessage", status, payload)
        encoded = payload.get("base64") if isinstance(payload, dict) else None
        if not isinstance(encoded, str) or not encoded:
            raise EvolutionProtocolError("chat/getBase64FromMediaMessage", status, "no base64 in the answer")
        return encoded

    async def download(self, url: str, *, max_bytes: int) -> bytes:
        """GET a media URL Evolution published (its S3 storage), without the API key."""
        content, status = await self._read_limited("GET", url, max_bytes)
        if not 200 <= status < 300:
            raise EvolutionError("media URL", status, f"HTTP {status}")
        return bytes(content)

    async def _read_limited(self, method: str, url: str, limit: int, **kwargs: Any) -> tuple[bytearray, int]:
        content = bytearray()
        async with self._http.stream(method, url, timeout=self._timeout_seconds, **kwargs) as response:
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > limit:
                    raise MediaTooLarge(f"media larger than the {limit}-byte limit")
            return content, response.status_code

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
        payload = _parse(response.content)
        if not response.is_success:
            raise EvolutionError(endpoint, response.status_code, payload)
        return payload


def _parse(content: bytes | bytearray) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return bytes(content[:500]).decode(errors="replace")
