"""Decoding of the scalar fields Evolution sends in more than one JSON encoding.

Baileys' 64-bit integers (`messageTimestamp`, `fileLength`) reach the webhook as a number, a numeric string
or a protobuf `Long` object `{low, high, unsigned}`, depending on the Evolution version and the code path.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

_MILLISECONDS_THRESHOLD = 100_000_000_000
"""An epoch value above this is in milliseconds: in seconds it would be after the year 5000."""


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
    """A float from a number, a numeric string or a Long object."""
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return _float_or_none(value.strip())
    as_int = to_int(value)
    return float(as_int) if as_int is not None else None


def epoch_to_datetime(value: Any) -> datetime | None:
    """A UTC datetime from epoch seconds (or milliseconds) in any of the encodings; None if unusable."""
    number = to_int(value)
    if number is None or number <= 0:
        return None
    seconds = number / 1000 if number > _MILLISECONDS_THRESHOLD else number
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _float_or_none(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
