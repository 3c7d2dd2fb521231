"""The webhook endpoint: authenticate, read and decode the body, hand it to the intake, answer.

Status codes follow what Evolution does with them: 2xx ends the delivery, 400/401/403/404/422 stop its
retries, anything else (503 here) is retried with backoff for about 20 minutes.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import msgspec
from litestar import Request, post
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.params import FromPath
from litestar.response.base import ASGIResponse

from papo_common.metrics import WEBHOOKS
from papo_ingest.auth import WebhookAuthenticator
from papo_ingest.intake import ACCEPTED, DUPLICATE, Intake, Outcome
from papo_ingest.openapi import WEBHOOK_RESPONSES, WEBHOOK_SECURITY, WebhookOperation

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"
_REJECTION_STATUS = {"bad_json": 400, "too_large": 413}
_STATUS_CODES = {"accepted": 200, "duplicate": 200, "ignored": 200, "unavailable": 503}


def require_webhook_token(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """401 unless the request carries the token or a JWT signed with it.

    Called first thing in each webhook handler rather than as a Litestar guard: a guard copies the route
    handler object on every request, 3 % of a webhook's CPU."""
    authenticator: WebhookAuthenticator = connection.app.state.authenticator
    failure = authenticator.check(connection.headers)
    if failure is not None:
        _counted("unauthorized", failure.reason).inc()
        logger.warning("webhook refused", extra={"reason": failure.reason, "client": _client(connection)})
        raise NotAuthorizedException(detail=failure.detail)


@post(
    "/webhook/evolution",
    status_code=200,
    operation_class=WebhookOperation,
    responses=WEBHOOK_RESPONSES,
    security=[{WEBHOOK_SECURITY: []}],
    tags=["webhook"],
)
async def evolution_webhook(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Evolution's webhook in its default mode: every event posted to one URL."""
    return await _receive(request, path_event=None)


@post(
    "/webhook/evolution/{event:str}",
    status_code=200,
    operation_class=WebhookOperation,
    responses=WEBHOOK_RESPONSES,
    security=[{WEBHOOK_SECURITY: []}],
    tags=["webhook"],
)
async def evolution_webhook_by_event(request: Request[Any, Any, Any], event: FromPath[str]) -> ASGIResponse:
    """Evolution's "webhook by events" mode: the event, kebab-cased, is the last path segment."""
    return await _receive(request, path_event=event)


async def _receive(request: Request[Any, Any, Any], *, path_event: str | None) -> ASGIResponse:
    require_webhook_token(request)
    intake: Intake = request.app.state.intake
    try:
        raw = await request.body()
    except RequestEntityTooLarge:
        return answer(Outcome("rejected", "too_large", "the body exceeds PAPO_INGEST_MAX_BODY_BYTES"))
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return answer(Outcome("rejected", "bad_json", "the body is not valid JSON"))
    except RecursionError:
        # msgspec recurses once per level: about a thousand nested arrays or objects exhaust the stack
        return answer(Outcome("rejected", "bad_json", "the body is nested too deeply"))
    return answer(await intake.receive(body, path_event=path_event))


def answer(outcome: Outcome) -> ASGIResponse:
    """The HTTP answer to an outcome, counted in `papo_webhooks`.

    An ASGI response, not a Litestar `Response`: Litestar would render the same body and headers anew for
    every webhook, 3 % of its CPU. The answers to an accepted and a duplicate webhook are made once."""
    _counted(outcome.status, outcome.reason).inc()
    fixed = _FIXED_ANSWERS.get(outcome)
    if fixed is not None:
        return fixed
    if outcome.status in ("rejected", "unavailable"):
        logger.warning(
            "webhook %s", outcome.status, extra={"reason": outcome.reason, "detail": outcome.detail}
        )
    return _rendered(outcome)


def _rendered(outcome: Outcome) -> ASGIResponse:
    content: dict[str, str] = {"status": outcome.status}
    if outcome.reason:
        content["reason"] = outcome.reason
    if outcome.detail:
        content["detail"] = outcome.detail
    headers = None
    if outcome.status == "unavailable":
        headers = {"retry-after": RETRY_AFTER_SECONDS}
    status_code = _STATUS_CODES.get(outcome.status) or _REJECTION_STATUS.get(outcome.reason, 422)
    return ASGIResponse(
        body=msgspec.json.encode(content),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


# an ASGIResponse keeps nothing of a request: one instance answers every webhook with that outcome
_FIXED_ANSWERS = {outcome: _rendered(outcome) for outcome in (ACCEPTED, DUPLICATE)}


@functools.cache
def _counted(status: str, reason: str) -> Any:
    """The `papo_webhooks` child of one outcome, made once (statuses and reasons are short fixed codes)."""
    return WEBHOOKS.labels(outcome=status, reason=reason)


def _client(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else "unknown"
