from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr, ValidationError

from papo_common.service import run_checks
from papo_common.settings import DatabaseSettings, PapoSettings


def test_environment_variables_configure_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPO_RABBITMQ_URL", "amqp://u:p@rabbit:5672/")
    monkeypatch.setenv("PAPO_PREFETCH", "7")
    settings = PapoSettings()
    assert settings.rabbitmq_url.get_secret_value() == "amqp://u:p@rabbit:5672/"
    assert settings.prefetch == 7
    assert "u:p" not in repr(settings), "secrets never show in logs or reprs"


def test_database_url_must_use_asyncpg() -> None:
    with pytest.raises(ValidationError, match="asyncpg"):
        DatabaseSettings(database_url=SecretStr("postgresql://x@y/z"))


def test_placeholder_secrets_are_refused_in_production() -> None:
    production = PapoSettings(environment="production")
    with pytest.raises(ValueError, match="PAPO_WEBHOOK_TOKEN"):
        production.refuse_placeholder("webhook_token", SecretStr("changeme"))
    PapoSettings().refuse_placeholder("webhook_token", SecretStr("changeme"))  # development tolerates it


async def test_readiness_reports_each_dependency() -> None:
    async def ok() -> None:
        return None

    async def down() -> None:
        raise ConnectionError("refused")

    async def hangs() -> None:
        await asyncio.sleep(60)

    results = await run_checks({"redis": ok, "postgres": down, "model": hangs})
    assert results["redis"] == "ok"
    assert results["postgres"].startswith("error: ConnectionError")
    assert results["model"].startswith("error: TimeoutError")
