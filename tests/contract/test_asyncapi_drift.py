"""The committed AsyncAPI documents describe what the services really consume."""

from __future__ import annotations

from pathlib import Path

import pytest

from papo_common.asyncapi import CONSUMERS, render

DOCS = Path(__file__).parents[2] / "docs" / "asyncapi"


@pytest.mark.parametrize("service", CONSUMERS)
def test_committed_asyncapi_matches_the_service(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPO_LLM_ENGINE", "openai")  # documenting llm needs no model on disk
    committed = (DOCS / f"{service}.json").read_text()
    assert committed == render(service), (
        f"{service}'s contracts or queue changed: run `python -m papo_common.asyncapi` and review the diff"
    )
