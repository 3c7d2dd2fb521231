"""Whether a failed call to Evolution API is worth retrying.

Evolution returns almost every failure inside a send as HTTP 400 (`BadRequestException(error.toString())`),
whether WhatsApp's socket was closed for a moment or the number does not exist, and a few as 500. So the
status code alone decides nothing for a 400: the message inside Evolution's envelope
`{"status": 400, "error": "Bad Request", "response": {"message": [...]}}` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from papo_deliver.evolution import EvolutionError, EvolutionProtocolError

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
)
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Verdict:
    transient: bool
    reason: str


def classify(error: BaseException) -> Verdict:
    """Transient (retry later) or permanent (dead-letter now), with a reason fit for a log line."""
    if isinstance(error, httpx.TimeoutException):
        return Verdict(True, f"Evolution API did not answer in time ({type(error).__name__})")
    if isinstance(error, httpx.TransportError):
        return Verdict(True, f"Evolution API unreachable ({type(error).__name__}: {error})")
    if isinstance(error, EvolutionProtocolError):
        # Evolution said it sent the message; retrying would send it twice.
        return Verdict(False, f"Evolution API accepted the message without a message id: {error}")
    if isinstance(error, EvolutionError):
        return _classify_answer(error.status_code, error.body)
    return Verdict(False, f"unexpected {type(error).__name__}: {error}")


def _classify_answer(status: int, body: Any) -> Verdict:
    messages = list(_messages(body))
    detail = "; ".join(messages)[:300] or str(body)[:300]
    if isinstance(body, dict) and body.get("code") == "LICENSE_REQUIRED":
        return Verdict(False, f"Evolution API is not activated (LICENSE_REQUIRED): {detail}")
    if not_on_whatsapp := _numbers_not_on_whatsapp(body):
        return Verdict(False, f"not on WhatsApp: {', '.join(not_on_whatsapp)}")
    if status >= 500 or status in _TRANSIENT_STATUSES:
        return Verdict(True, f"Evolution API answered {status}: {detail}")
    if status == 400 and any(fragment in m.lower() for m in messages for fragment in _TRANSIENT_FRAGMENTS):
        return Verdict(True, f"WhatsApp connection trouble (400): {detail}")
    if status in (401, 403):
        return Verdict(False, f"Evolution API refused the API key ({status})")
    if status == 404:
        return Verdict(False, f"Evolution API has no such instance or route (404): {detail}")
    return Verdict(False, f"Evolution API rejected the request ({status}): {detail}")


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
        elif isinstance(item, dict):
            yield ", ".join(f"{key}={value}" for key, value in item.items())


def _numbers_not_on_whatsapp(body: Any) -> list[str]:
    """The JIDs of `{"jid": ..., "exists": false}` entries Evolution returns for numbers without WhatsApp."""
    response = body.get("response") if isinstance(body, dict) else None
    found = response.get("message") if isinstance(response, dict) else None
    entries = found if isinstance(found, list) else [found]
    return [
        str(entry.get("jid") or entry.get("number"))
        for entry in entries
        if isinstance(entry, dict) and entry.get("exists") is False
    ]
