"""Settings of the simulator (`PAPO_*` environment variables, the same names the services read)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from papo_common.settings import PapoSettings


class SimulatorSettings(PapoSettings):
    """Where the simulator listens, where it posts webhooks, and the secrets both sides must agree on."""

    simulator_host: str = "127.0.0.1"
    simulator_port: int = Field(default=8081, ge=0, le=65535)
    """Its Evolution API and its page, on one port: `PAPO_EVOLUTION_URL` points here."""
    simulator_webhook_url: str = "http://127.0.0.1:8080/webhook/evolution"
    """Where the simulated Evolution posts its webhooks: papo's ingest."""
    webhook_token: SecretStr | None = None
    """Sent as `x-papo-token` on every webhook, as an Evolution instance's webhook `headers` would."""
    evolution_api_key: SecretStr = SecretStr("")
    """The `apikey` papo must present; empty accepts any key (a development convenience of the simulator)."""
    admin_url: str = "http://127.0.0.1:8080"
    """ingest's admin API, read for each turn's timeline (transcripts, model answers)."""
    admin_token: SecretStr | None = None
    debounce_seconds: float = Field(default=15.0, ge=0)
    """papo's quiet window, shown in the timeline."""
