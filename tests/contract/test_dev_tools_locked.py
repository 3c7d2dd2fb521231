"""requirements-dev.txt (for pip users) and the workspace's locked `dev` group list the same tools."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_requirements_dev_matches_the_locked_dev_group() -> None:
    listed = [
        line.strip()
        for line in (REPO / "requirements-dev.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    group = tomllib.loads((REPO / "pyproject.toml").read_text())["dependency-groups"]["dev"]
    assert sorted(listed) == sorted(group), "add the tool to both, then run `make lock`"
    lock = (REPO / "uv.lock").read_text()
    for requirement in group:
        name = requirement.split(">")[0].split("=")[0].strip()
        assert f'name = "{name}"' in lock, f"{name} is not in uv.lock: run `make lock`"
