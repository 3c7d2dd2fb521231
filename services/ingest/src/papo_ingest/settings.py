"""Settings of the ingest service (`PAPO_*` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from papo_common.settings import PapoSettings

MIB = 1024 * 1024


class IngestSettings(PapoSettings):
    """What ingest needs beyond the common settings: its port, the webhook secret and intake policy."""

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

    @model_validator(mode="after")
    def _webhook_secret_is_real(self) -> IngestSettings:
        if self.environment == "production" and self.webhook_allow_unauthenticated:
            raise ValueError(
                "PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED is a development switch; unset it in production"
            )
        self.refuse_placeholder("webhook_token", self.webhook_token)
        if not self.auth_required and not self.webhook_allow_unauthenticated:
            raise ValueError(
                "PAPO_WEBHOOK_TOKEN must be set (or PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED=true in development)"
            )
        return self

    @property
    def auth_required(self) -> bool:
        """Whether webhooks must prove they know the token (always, once a token is configured)."""
        return self.webhook_token is not None and bool(self.webhook_token.get_secret_value().strip())
