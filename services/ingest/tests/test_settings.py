"""Ingest refuses to start without a real webhook secret, unless explicitly opted out in development."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from papo_ingest.settings import IngestSettings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAPO_WEBHOOK_TOKEN", "PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED", "PAPO_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


def test_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPO_WEBHOOK_TOKEN", "s3cr3t-value")
    monkeypatch.setenv("PAPO_INGEST_DEDUPE_TTL_SECONDS", "3600")
    settings = IngestSettings()
    assert settings.auth_required
    assert settings.ingest_dedupe_ttl_seconds == 3600
    assert "s3cr3t-value" not in repr(settings)


def test_no_token_in_development_refuses_to_start() -> None:
    with pytest.raises(ValidationError, match="PAPO_WEBHOOK_TOKEN must be set"):
        IngestSettings()


def test_explicit_opt_in_runs_unauthenticated_in_development() -> None:
    settings = IngestSettings(webhook_allow_unauthenticated=True)
    assert not settings.auth_required


def test_a_token_wins_over_the_opt_in() -> None:
    assert IngestSettings(webhook_token="abc", webhook_allow_unauthenticated=True).auth_required


@pytest.mark.parametrize("token", [None, "", "changeme", "secret"])
def test_production_refuses_placeholder_tokens(token: str | None) -> None:
    with pytest.raises(ValidationError, match="real secret"):
        IngestSettings(environment="production", webhook_token=token)


def test_production_refuses_the_unauthenticated_switch() -> None:
    with pytest.raises(ValidationError, match="development switch"):
        IngestSettings(environment="production", webhook_token="x" * 40, webhook_allow_unauthenticated=True)


def test_defaults() -> None:
    settings = IngestSettings(webhook_token="x" * 40)
    assert settings.ingest_port == 8080
    assert settings.ingest_dedupe_ttl_seconds == 48 * 3600
    assert settings.ingest_max_body_bytes == 16 * 1024 * 1024
    assert not (
        settings.ingest_accept_groups or settings.ingest_accept_status or settings.ingest_accept_newsletters
    )
