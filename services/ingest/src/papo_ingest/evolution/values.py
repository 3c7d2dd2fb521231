"""Decoding of the scalar fields Evolution sends in more than one JSON encoding.

Baileys' 64-bit integers (`messageTimestamp`, `fileLength`) reach the webhook as a number, a numeric string
or a protobuf `Long` object `{low, high, unsigned}`, depending on the Evolution version and the code path.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from papo_common.contracts.base import PUSH_NAME_MAX_LENGTH

_MILLISECONDS_THRESHOLD = 100_000_000_000
"""An epoch value above this is in milliseconds: in seconds it would be after the year 5000."""
_LARGEST_EPOCH_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last moment a datetime holds; anything larger is garbage, not a time."""
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def to_int(value: Any) -> int | None:
    """An integer from a number, a numeric string or a Long object; None when it is none of those."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            return to_int(_float_or_none(text))
    if isinstance(value, dict) and "low" in value and "high" in value:
        low, high = value.get("low"), value.get("high")
        if isinstance(low, int) and isinstance(high, int) and not isinstance(low, bool):
            unsigned_high = high & 0xFFFFFFFF if value.get("unsigned") else high
            return (unsigned_high << 32) | (low & 0xFFFFFFFF)
    return None


def to_float(value: Any) -> float | None:
    """A finite float from a number, a numeric string or a Long object."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _float_or_none(value.strip())
    as_int = to_int(value)
    if as_int is None:
        return None
    try:
        return float(as_int)
    except OverflowError:  # an integer beyond 1.8e308
        return None


def epoch_to_datetime(value: Any) -> datetime | None:
    """A UTC datetime from epoch seconds (or milliseconds) in any of the encodings; None if unusable."""
    number = to_int(value)
    if number is None or number <= 0 or number > _LARGEST_EPOCH_MS:
        return None
    seconds = number / 1000 if number > _MILLISECONDS_THRESHOLD else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def storable_text(value: str) -> str:
    """Text as PostgreSQL can store it: NUL characters removed (they carry nothing a person wrote)."""
    return value.replace("\x00", "") if "\x00" in value else value


def display_name(value: Any) -> str | None:
    """A person's WhatsApp name fit to show and store: control characters removed, cut to the contract's
    limit (WhatsApp itself allows 25 characters), None when nothing is left."""
    if not isinstance(value, str):
        return None
    name = _CONTROL_CHARACTERS.sub("", value).strip()[:PUSH_NAME_MAX_LENGTH].strip()
    return name or None


def _float_or_none(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
