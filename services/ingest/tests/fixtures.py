"""Evolution webhook fixtures shared by the unit tests (the JSON lives in tests/fixtures/evolution/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "evolution"


def fixture(name: str) -> dict[str, Any]:
    """A webhook body as Evolution posts it."""
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return body


def all_fixture_names() -> list[str]:
    return sorted(path.stem for path in FIXTURES.glob("*.json"))
