"""The base every message on the broker derives from.

Contracts are frozen and reject unknown fields: a producer that adds a field without a reviewed change to
this package fails loudly instead of being silently ignored by an older consumer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps on the broker must be timezone-aware")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]
"""A datetime that is always timezone-aware and normalised to UTC."""

NonEmptyStr = Annotated[str, Field(min_length=1)]

# The widths of the database's columns (`papo_common.db.models` uses these same constants), so whatever a
# contract accepts, PostgreSQL stores.
INSTANCE_MAX_LENGTH = 128
JID_MAX_LENGTH = 128
MESSAGE_ID_MAX_LENGTH = 256
PUSH_NAME_MAX_LENGTH = 256
BURST_ID_MAX_LENGTH = 320
MODEL_NAME_MAX_LENGTH = 128
CONVERSATION_KEY_MAX_LENGTH = 200
"""`instance:user_id` at most this long, so the ids derived from it (a burst id, the reply id stored in a
256-character column) fit their columns too."""

PRINTABLE = r"^[^\x00-\x1f\x7f-\x9f]*$"
"""No control characters (C0, DEL, C1)."""
_NO_NUL = r"^[^\x00]*$"


def _identifier(max_length: int) -> StringConstraints:
    # printable because identifiers end up in URLs (Evolution's /message/sendText/{instance}), Redis keys,
    # logs and PostgreSQL, which refuses NUL
    return StringConstraints(min_length=1, max_length=max_length, pattern=PRINTABLE)


InstanceName = Annotated[str, _identifier(INSTANCE_MAX_LENGTH)]
Jid = Annotated[str, _identifier(JID_MAX_LENGTH)]
MessageId = Annotated[str, _identifier(MESSAGE_ID_MAX_LENGTH)]
PushName = Annotated[str, StringConstraints(max_length=PUSH_NAME_MAX_LENGTH, pattern=_NO_NUL)]
StorableText = Annotated[str, StringConstraints(pattern=_NO_NUL)]
"""Text PostgreSQL can store: anything but NUL."""


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

    instance: InstanceName
    user_id: Jid

    @model_validator(mode="after")
    def _key_fits(self) -> ConversationRef:
        if len(self.key) > CONVERSATION_KEY_MAX_LENGTH:
            raise ValueError(f"instance and user_id together exceed {CONVERSATION_KEY_MAX_LENGTH} characters")
        return self

    @property
    def key(self) -> str:
        """The conversation key used in Redis keys, locks, and logs."""
        return f"{self.instance}:{self.user_id}"
