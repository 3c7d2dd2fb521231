from __future__ import annotations

from pydantic import Field, model_validator

from papo_common.settings import PapoSettings


class DebounceSettings(PapoSettings):
    debounce_seconds: float = Field(default=15.0, gt=0)
    """Quiet time that ends a burst; every new message restarts it."""
    debounce_max_wait_seconds: float = Field(default=60.0, gt=0)
    """A burst is flushed this long after its first message even if the person keeps typing."""
    debounce_max_messages: int = Field(default=20, ge=1)
    """A burst with this many messages is flushed at once."""
    debounce_transcription_timeout_seconds: float = Field(default=120.0, gt=0)
    """How long a burst waits for a voice note's transcript before the "not understood" marker stands in."""
    debounce_poll_interval_ms: int = Field(default=200, ge=10, le=10_000)
    debounce_claim_lease_seconds: float = Field(default=30.0, gt=0)
    """A replica that claimed a burst has this long to publish it before another replica takes over."""
    debounce_seen_ttl_seconds: int = Field(default=172_800, ge=60)
    """How long a message id is remembered, so a redelivered message never joins a second burst."""

    takeover_pause_seconds: float = Field(default=1800.0, gt=0)
    """An operator message from the business phone pauses the bot for its conversation this long (renewed by
    each operator message)."""
    stale_message_seconds: float = Field(default=3600.0, gt=0)
    """A message older than this when it arrives (an instance reconnecting after hours) is recorded but not
    answered."""

    @model_validator(mode="after")
    def _window_fits_cap(self) -> DebounceSettings:
        if self.debounce_max_wait_seconds < self.debounce_seconds:
            raise ValueError("PAPO_DEBOUNCE_MAX_WAIT_SECONDS must be at least PAPO_DEBOUNCE_SECONDS")
        return self
