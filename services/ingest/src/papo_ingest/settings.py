"""Settings of the ingest service (`PAPO_*` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from papo_common.settings import DatabaseSettings

MIB = 1024 * 1024


class IngestSettings(DatabaseSettings):
    """What ingest needs beyond the common settings: its port, the webhook secret, intake policy, and the
    admin API's token. PostgreSQL (`PAPO_DATABASE_URL`) is used by the admin API only, never by webhooks."""

    ingest_port: int = Field(default=8080, ge=1, le=65535)
    """Port of the webhook, health, readiness and /metrics endpoints (one HTTP server)."""
    webhook_token: SecretStr | None = None
    """Shared secret: sent by Evolution as `x-papo-token`, or used as its `jwt_key` to sign a Bearer JWT."""
    webhook_allow_unauthenticated: bool = False
    """Development only: accept webhooks without a token when none is configured."""
    webhook_jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    """Clock skew tolerated when checking a JWT's `exp` and `iat`."""
    ingest_dedupe_ttl_seconds: int = Field(default=48 * 3600, ge=60)
    """How long a published message id is remembered; Evolution retries for about 20 minutes."""
    ingest_claim_ttl_seconds: float = Field(default=30.0, gt=0, le=600)
    """How long an in-flight claim lives if its holder dies before finishing the publish."""
    ingest_max_body_bytes: int = Field(default=16 * MIB, ge=1024)
    """Largest accepted webhook body; voice notes ride inside as base64."""
    ingest_publish_timeout_seconds: float = Field(default=5.0, gt=0, le=25)
    """Longest wait for the broker's confirm; kept well under Evolution's 30 s request timeout."""
    ingest_accept_groups: bool = False
    ingest_accept_status: bool = False
    ingest_accept_newsletters: bool = False
    admin_token: SecretStr | None = None
    """Bearer token of the admin API under `/admin`; unset, the admin API is off (its routes answer 404)."""

    @model_validator(mode="after")
    def _webhook_secret_is_real(self) -> IngestSettings:
        if self.environment == "production" and self.webhook_allow_unauthenticated:
            raise ValueError(
                "PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED is a development switch; unset it in production"
            )
        self.refuse_placeholder("webhook_token", self.webhook_token)
        if self.admin_enabled:
            self.refuse_placeholder("admin_token", self.admin_token)
            if self.auth_required and _same_secret(self.admin_token, self.webhook_token):
                raise ValueError("PAPO_ADMIN_TOKEN must differ from PAPO_WEBHOOK_TOKEN")
        if not self.auth_required and not self.webhook_allow_unauthenticated:
            raise ValueError(
                "PAPO_WEBHOOK_TOKEN must be set (or PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED=true in development)"
            )
        return self

    @property
    def auth_required(self) -> bool:
        """Whether webhooks must prove they know the token (always, once a token is configured)."""
        return self.webhook_token is not None and bool(self.webhook_token.get_secret_value().strip())

    @property
    def admin_enabled(self) -> bool:
        """Whether the admin API is served (only with a token: it erases data and replays dead letters)."""
        return self.admin_token is not None and bool(self.admin_token.get_secret_value().strip())


def _same_secret(first: SecretStr | None, second: SecretStr | None) -> bool:
    # Evolution holds the webhook token; it must never also open the admin API.
    return (
        first is not None
        and second is not None
        and first.get_secret_value().strip() == second.get_secret_value().strip()
    )
