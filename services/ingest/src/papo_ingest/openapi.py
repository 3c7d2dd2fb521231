"""ingest's OpenAPI document (`/schema/openapi.json`): the webhook's body and answers, and the admin API.

The webhook reads its body itself (decoding it into a model first would cost a second pass over voice notes'
base64), so its request body is described here, from the contracts' limits, as Evolution API v2 sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from litestar.enums import RequestEncodingType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIMediaType,
    Operation,
    Reference,
    RequestBody,
    Schema,
    SecurityScheme,
)
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import Body

from papo_common.contracts.base import INSTANCE_MAX_LENGTH, JID_MAX_LENGTH, MESSAGE_ID_MAX_LENGTH

T = TypeVar("T")

StrictBody = Annotated[
    T, Body(media_type=RequestEncodingType.JSON, schema_extra={"additionalProperties": False})
]
"""A JSON body whose model forbids unknown fields, documented as such (Litestar leaves it out)."""

WEBHOOK_SECURITY = "webhookToken"
ADMIN_SECURITY = "adminToken"

_STRING = Schema(type=OpenAPIType.STRING)
_BOOLEAN = Schema(type=OpenAPIType.BOOLEAN)
_NUMBER = Schema(type=OpenAPIType.NUMBER)
_EPOCH = Schema(
    one_of=[Schema(type=OpenAPIType.INTEGER), _STRING, Schema(type=OpenAPIType.OBJECT)],
    description="epoch seconds: a number, a numeric string or a protobuf Long `{low, high, unsigned}`",
)


def _object(
    properties: dict[str, Schema | Reference], *, required: list[str] | None = None, **extra: Any
) -> Schema:
    return Schema(type=OpenAPIType.OBJECT, properties=properties, required=required, **extra)


def _text(name: str) -> Schema:
    return _object({name: _STRING})


MESSAGE = _object(
    {
        "conversation": _STRING,
        "extendedTextMessage": _text("text"),
        "imageMessage": _text("caption"),
        "videoMessage": _text("caption"),
        "documentMessage": _text("caption"),
        "audioMessage": _object(
            {"mimetype": _STRING, "seconds": _NUMBER, "ptt": _BOOLEAN, "fileLength": _EPOCH}
        ),
        "base64": _STRING,
    },
    description="the WhatsApp message (Baileys' shape); wrappers such as `ephemeralMessage` are unwrapped",
)

WEBHOOK_BODY = _object(
    {
        "event": Schema(
            type=OpenAPIType.STRING,
            min_length=1,
            examples=["messages.upsert", "send.message", "connection.update"],
            description="Evolution's event; other events are answered `ignored`",
        ),
        "instance": Schema(type=OpenAPIType.STRING, min_length=1, max_length=INSTANCE_MAX_LENGTH),
        "data": _object(
            {
                "key": _object(
                    {
                        "id": Schema(type=OpenAPIType.STRING, min_length=1, max_length=MESSAGE_ID_MAX_LENGTH),
                        "remoteJid": Schema(type=OpenAPIType.STRING, min_length=1, max_length=JID_MAX_LENGTH),
                        "remoteJidAlt": _STRING,
                        "participant": _STRING,
                        "fromMe": _BOOLEAN,
                    },
                    required=["id", "remoteJid"],
                ),
                "pushName": _STRING,
                "message": MESSAGE,
                "messageType": _STRING,
                "messageTimestamp": _EPOCH,
                "state": Schema(
                    type=OpenAPIType.STRING, description="`connection.update`: open, connecting, close"
                ),
            }
        ),
        "destination": _STRING,
        "date_time": _STRING,
        "sender": _STRING,
        "server_url": _STRING,
        "apikey": Schema(one_of=[_STRING, Schema(type=OpenAPIType.NULL)]),
    },
    required=["event", "data"],
    description="An Evolution API v2 webhook",
)


@dataclass
class WebhookOperation(Operation):
    """The webhook's operation, with the body it reads by hand."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"application/json": OpenAPIMediaType(schema=WEBHOOK_BODY)}, required=True
        )


@dataclass(frozen=True)
class WebhookAnswer:
    """What the webhook answers. `reason` is a short fixed code; `detail` says more, never the message."""

    status: str
    reason: str | None = None
    detail: str | None = None


def _answer(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=WebhookAnswer, description=description, generate_examples=False)


WEBHOOK_RESPONSES = {
    200: _answer("accepted (published and confirmed by RabbitMQ), a duplicate, or an event papo ignores"),
    400: _answer("the body is not JSON, or is nested too deeply: Evolution stops retrying"),
    401: _answer("no valid webhook token or JWT: Evolution stops retrying"),
    413: _answer("the body exceeds PAPO_INGEST_MAX_BODY_BYTES"),
    422: _answer("well-formed JSON that can never be a message (see the README's rules): no retries"),
    503: _answer("RabbitMQ or Redis is unavailable; Evolution retries, with `retry-after`"),
}


@dataclass(frozen=True)
class FieldError:
    key: str | None
    message: str | None


@dataclass(frozen=True)
class ErrorAnswer:
    """An admin error: `unauthorized`, `unavailable` (a dependency is down; retry) or `error`; `errors` names
    the parameters or body fields that were wrong."""

    status: str
    detail: str
    errors: list[FieldError] | None = None


def _error(description: str) -> ResponseSpec:
    return ResponseSpec(data_container=ErrorAnswer, description=description, generate_examples=False)


ADMIN_RESPONSES = {
    400: _error("a parameter or the body is invalid"),
    401: _error("no valid admin bearer token"),
    404: _error("no such conversation"),
    503: _error("PostgreSQL, Redis or RabbitMQ is unavailable; retry"),
}


def openapi_config() -> OpenAPIConfig:
    """Served at `/schema/openapi.json`."""
    return OpenAPIConfig(
        title="papo ingest",
        version="1",
        description="Evolution API v2 webhooks in; the admin API (when PAPO_ADMIN_TOKEN is set).",
        path="/schema",
        render_plugins=[JsonRenderPlugin()],
        components=Components(
            security_schemes={
                WEBHOOK_SECURITY: SecurityScheme(
                    type="apiKey",
                    name="x-papo-token",
                    security_scheme_in="header",
                    description="PAPO_WEBHOOK_TOKEN, or `Authorization: Bearer <HS256 JWT>` signed with it",
                ),
                ADMIN_SECURITY: SecurityScheme(type="http", scheme="bearer", description="PAPO_ADMIN_TOKEN"),
            }
        ),
    )
