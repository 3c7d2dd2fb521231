"""The base every message on the broker derives from.

Contracts are frozen and reject unknown fields: a producer that adds a field without a reviewed change to
this package fails loudly instead of being silently ignored by an older consumer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps on the broker must be timezone-aware")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]
"""A datetime that is always timezone-aware and normalised to UTC."""

NonEmptyStr = Annotated[str, Field(min_length=1)]


def utcnow() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


class Contract(BaseModel):
    """Base class of all broker messages: immutable, strict about unknown fields, versioned."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ConversationRef(Contract):
    """Who a conversation is with, as seen from one WhatsApp number (an Evolution instance).

    `user_id` is the canonical identity of the person: a `@s.whatsapp.net` JID when one is known, else their
    `@lid`. The same person writing to two instances is two conversations, never one.
    """

    instance: NonEmptyStr
    user_id: NonEmptyStr

    @property
    def key(self) -> str:
        """The conversation key used in Redis keys, locks, and logs."""
        return f"{self.instance}:{self.user_id}"
