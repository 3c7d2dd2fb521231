"""The several JSON encodings of Baileys' 64-bit numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from papo_ingest.evolution.values import epoch_to_datetime, to_float, to_int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1760439737, 1760439737),
        ("1760439737", 1760439737),
        (" 42 ", 42),
        (42.0, 42),
        ("42.0", 42),
        ({"low": 8712, "high": 0, "unsigned": True}, 8712),
        ({"low": -1, "high": 0, "unsigned": True}, 4294967295),
        ({"low": 1260455104, "high": 409, "unsigned": False}, 409 * 2**32 + 1260455104),
        ({"low": -1, "high": -1, "unsigned": False}, -1),
        ({"low": 0, "high": -1, "unsigned": True}, 0xFFFFFFFF << 32),
        (True, None),
        (None, None),
        ("abc", None),
        (4.5, None),
        ({"low": "1", "high": 0}, None),
        ([1], None),
    ],
)
def test_to_int(value: Any, expected: int | None) -> None:
    assert to_int(value) == expected


def test_to_float() -> None:
    assert to_float(4) == 4.0
    assert to_float("4.25") == 4.25
    assert to_float("nan") is None
    assert to_float({"low": 3, "high": 0}) == 3.0


def test_epoch_to_datetime() -> None:
    expected = datetime(2025, 10, 14, 11, 2, 17, tzinfo=UTC)
    assert epoch_to_datetime(int(expected.timestamp())) == expected
    assert epoch_to_datetime(int(expected.timestamp()) * 1000) == expected
    assert epoch_to_datetime(0) is None
    assert epoch_to_datetime(10**30) is None
