"""JSON Schema of every contract, written to `libs/common/schemas/` and checked for drift by the tests, so a
change to a contract is always a visible, reviewed change."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from papo_common.contracts import ALL_CONTRACTS


def render() -> dict[str, str]:
    """File name -> JSON Schema text, one file per contract."""
    return {
        f"{contract.__name__}.json": json.dumps(contract.model_json_schema(), indent=2, sort_keys=True) + "\n"
        for contract in ALL_CONTRACTS
    }


def write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in render().items():
        (folder / name).write_text(text)


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("libs/common/schemas"))
