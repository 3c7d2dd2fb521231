"""deliver's settings: where Evolution API is and with which keys, how a reply is split and paced, how
failures are retried."""

from __future__ import annotations

from pydantic import Field, model_validator

from papo_common.evolution import EvolutionSettings


class DeliverSettings(EvolutionSettings):
    """Read from `PAPO_*` environment variables; the API keys are secrets and never logged. Where Evolution
    is and with which keys each instance is called: `EvolutionSettings`."""

    deliver_typing_cps: float = Field(default=30.0, gt=0)
    """Characters per second a person would type: the typing indicator lasts len(text) / cps."""
    deliver_typing_min_ms: int = Field(default=800, ge=0)
    deliver_typing_max_ms: int = Field(default=6000, ge=0, le=60_000)

    deliver_max_chunk_chars: int = Field(default=600, ge=80, le=4096)
    """A longer reply is split into several messages of at most this many characters."""
    deliver_max_chunks: int = Field(default=5, ge=1, le=20)
    """At most this many messages per reply; the tail is merged into the last one, never dropped."""
    deliver_min_send_interval_ms: int = Field(default=1500, ge=0, le=60_000)
    """Least time between two messages sent through one instance, across all replicas (0: no spacing)."""
    deliver_mark_read: bool = True
    """Mark the messages a reply answers as read before typing it."""
    deliver_courtesy_timeout_seconds: float = Field(default=3.0, gt=0, le=30)
    """How long a typing indicator or read receipt may take beyond its own delay before it is given up: they
    are cosmetic, so a slow Evolution must not hold the reply."""
    deliver_refusal_memory_seconds: int = Field(default=3600, ge=0)
    """How long an instance whose channel refused typing or read receipts ("Method not available") is not
    asked for them again (0: ask every time)."""

    deliver_retry_attempts: int = Field(default=4, ge=1, le=20)
    """Calls to Evolution per send within one delivery of the message, before it is handed back for
    redelivery."""
    deliver_retry_base_seconds: float = Field(default=0.5, ge=0)
    deliver_retry_max_seconds: float = Field(default=8.0, ge=0)

    deliver_sent_ttl_seconds: int = Field(default=3 * 24 * 3600, ge=60)
    """How long a sent reply is remembered, so a redelivery within that time is not sent again."""
    deliver_lock_ttl_seconds: float = Field(default=10.0, ge=3, le=300)
    """Lease of the per-reply lock, renewed every third of it while held (and before every call to Evolution):
    how soon a reply whose sender was killed can be taken over."""
    deliver_echo_wait_seconds: float = Field(default=5.0, ge=0, le=300)
    """How long a redelivery waits for the echo of a chunk whose send was started but never recorded (the
    previous holder was killed mid-send) before it sends the chunk again. The echo normally arrives within
    milliseconds; when ingest could not take it, Evolution retries it about 5 s later, so a longer wait
    trades a slower recovery for fewer repeats."""

    deliver_order_hold_seconds: float = Field(default=15.0, ge=0, le=120)
    """How long a reply waits in the handler for the conversation's earlier reply to be sent, before it is
    handed back for redelivery with backoff."""
    deliver_order_horizon_seconds: float = Field(default=600.0, gt=0)
    """How long a reply waits in all for the conversation's earlier reply; after that the earlier one is
    abandoned and this one is sent. Capped at half the redelivery horizon, so waiting never dead-letters."""

    @property
    def order_horizon_seconds(self) -> float:
        """The order horizon in force: never so long that a waiting reply reaches the redelivery horizon."""
        return min(self.deliver_order_horizon_seconds, self.redelivery_horizon_seconds / 2)

    @model_validator(mode="after")
    def _coherent(self) -> DeliverSettings:
        if self.deliver_typing_min_ms > self.deliver_typing_max_ms:
            raise ValueError("PAPO_DELIVER_TYPING_MIN_MS must not exceed PAPO_DELIVER_TYPING_MAX_MS")
        if self.deliver_retry_base_seconds > self.deliver_retry_max_seconds:
            raise ValueError("PAPO_DELIVER_RETRY_BASE_SECONDS must not exceed PAPO_DELIVER_RETRY_MAX_SECONDS")
        return self
