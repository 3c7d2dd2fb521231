"""persist's settings: the database, and how messages are gathered into one transaction."""

from __future__ import annotations

from pydantic import Field, model_validator

from papo_common.settings import DatabaseSettings


class PersistSettings(DatabaseSettings):
    """`PAPO_*` settings of the persist service."""

    prefetch: int = Field(default=1000, ge=1, le=5000)
    """Sized to the batch: a batch can only fill with messages the broker has already handed over
    unacknowledged, and twice the batch size lets the next batch gather while the current one commits."""
    persist_batch_size: int = Field(default=500, ge=1, le=2500)
    """Most messages written in one transaction and acknowledged with one `basic.ack`."""
    persist_batch_wait_ms: int = Field(default=50, ge=0, le=5000)
    """Longest a message waits for others to join its batch."""
    persist_write_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Longest one transaction may take before the database counts as unavailable."""
    persist_outage_backoff_max_s: float = Field(default=5.0, gt=0, le=300)
    """While PostgreSQL is unreachable a batch is retried, unacknowledged, with jittered exponential backoff
    from 0.1 s up to this pause between attempts, for as long as the outage lasts."""

    @model_validator(mode="after")
    def _prefetch_fills_a_batch(self) -> PersistSettings:
        if self.prefetch < self.persist_batch_size:
            raise ValueError(
                f"PAPO_PREFETCH ({self.prefetch}) must be at least PAPO_PERSIST_BATCH_SIZE "
                f"({self.persist_batch_size}): a batch can never hold more than the unacknowledged messages"
            )
        return self
