"""Opaque cursors for history pages: where the previous page ended, as (sent_at, id).

Keyset pagination on (sent_at, id) is stable while rows are written: a new message never shifts a page, and
two messages with the same `sent_at` are ordered by id. The cursor is opaque to clients (base64url JSON), so
its shape may change; it is not signed, because it only positions a read inside a conversation the URL
already names.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

_VERSION = 1


class InvalidCursor(ValueError):
    """The `before` parameter is not a cursor this API wrote."""


@dataclass(frozen=True)
class Cursor:
    """The last row of a page: the next page holds the rows strictly older than it."""

    sent_at: datetime
    id: int

    def encode(self) -> str:
        payload = [_VERSION, self.sent_at.astimezone(UTC).isoformat(), self.id]
        raw = json.dumps(payload, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            version, sent_at, row_id = json.loads(raw)
            moment = datetime.fromisoformat(sent_at)
        except (binascii.Error, ValueError, TypeError) as error:
            raise InvalidCursor("before is not a cursor returned by this API") from error
        if version != _VERSION or not isinstance(row_id, int) or moment.tzinfo is None:
            raise InvalidCursor("before is not a cursor returned by this API")
        return cls(sent_at=moment, id=row_id)
