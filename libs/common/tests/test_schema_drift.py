from __future__ import annotations

from pathlib import Path

from papo_common.schemas import render

SCHEMAS = Path(__file__).parents[1] / "schemas"


def test_committed_json_schemas_match_the_contracts() -> None:
    committed = {path.name: path.read_text() for path in SCHEMAS.glob("*.json")}
    assert committed == render(), "contracts changed: run `python -m papo_common.schemas` and review the diff"
