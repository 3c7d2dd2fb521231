"""persist's settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from papo_persist.settings import PersistSettings


def test_defaults_let_a_batch_fill_while_the_previous_one_commits() -> None:
    settings = PersistSettings()

    assert (settings.persist_batch_size, settings.persist_batch_wait_ms) == (500, 50)
    assert settings.prefetch >= 2 * settings.persist_batch_size


def test_settings_come_from_papo_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPO_PERSIST_BATCH_SIZE", "20")
    monkeypatch.setenv("PAPO_PERSIST_BATCH_WAIT_MS", "10")

    settings = PersistSettings()

    assert (settings.persist_batch_size, settings.persist_batch_wait_ms) == (20, 10)


def test_a_prefetch_below_the_batch_size_is_refused() -> None:
    with pytest.raises(ValidationError, match="PAPO_PREFETCH"):
        PersistSettings(prefetch=50, persist_batch_size=100)
