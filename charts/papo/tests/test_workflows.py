"""The GitHub workflows: every action pinned by commit with its version beside it, least-privilege
permissions, a timeout on every job, one run per ref at a time."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))


def test_the_three_workflows_exist() -> None:
    assert {path.name for path in WORKFLOWS} >= {"ci.yml", "images.yml", "chart.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_hygiene(path: Path) -> None:
    text = path.read_text()
    workflow = yaml.safe_load(text)
    assert workflow["permissions"] == {"contents": "read"}, "least privilege at the top; jobs widen it"
    assert "${{ github.ref }}" in workflow["concurrency"]["group"]
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"{name} has no timeout-minutes"
        for write in [scope for scope, level in (job.get("permissions") or {}).items() if level == "write"]:
            assert write == "packages" and path.name == "images.yml", f"{name} may not write {write}"
    for line in re.findall(r"uses:\s*(\S+.*)", text):
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+", line.strip()), line
