"""The settings every service shares. Each service subclasses `PapoSettings` with its own fields; all of them
read `PAPO_*` environment variables (the public names are listed in the README)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "changethis", "secret", "password"})


class PapoSettings(BaseSettings):
    """Connection strings, logging and telemetry switches common to all services."""

    model_config = SettingsConfigDict(env_prefix="PAPO_", extra="ignore", frozen=True)

    environment: Literal["development", "production"] = "development"
    rabbitmq_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    prefetch: int = Field(default=16, ge=1, le=1000)
    """Unacknowledged messages per consumer: bounded so one pod never hoards the backlog."""
    redelivery_horizon_seconds: float = Field(default=1800.0, gt=0)
    """How long a message keeps being redelivered with backoff while a dependency is down, counted from its
    first such failure; after that it is dead-lettered (`papo_common.resilience`)."""
    http_host: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    http_port: int = Field(default=8000, ge=1, le=65535)
    """Port of the health, readiness and /metrics endpoints."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    service_track: str = "stable"
    """`stable` or `canary`: a label on metrics and traces so a canary can be compared with stable."""
    redis_key_prefix: str = "papo"
    redis_allow_volatile: bool = False
    """Start in production although Redis has no append-only file: buffered bursts, dedupe marks and the
    delivery ledger then die with a Redis restart (see the README's guarantees)."""

    def refuse_placeholder(self, name: str, value: SecretStr | None) -> None:
        """Outside development a secret must be set to something real."""
        if self.environment == "production" and (
            value is None or value.get_secret_value().strip().lower() in _PLACEHOLDER_SECRETS
        ):
            raise ValueError(f"PAPO_{name.upper()} must be set to a real secret in production")


class DatabaseSettings(PapoSettings):
    """Settings of a service that reads or writes PostgreSQL."""

    database_url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    database_pool_size: int = Field(default=5, ge=1, le=100)

    @model_validator(mode="after")
    def _asyncpg_only(self) -> DatabaseSettings:
        if not self.database_url.get_secret_value().startswith("postgresql+asyncpg://"):
            raise ValueError("PAPO_DATABASE_URL must use the postgresql+asyncpg:// driver")
        return self
