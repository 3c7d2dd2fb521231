"""persist's settings: the database, and how messages are gathered into one transaction."""

from __future__ import annotations

from pydantic import Field, model_validator

from papo_common.settings import DatabaseSettings


class PersistSettings(DatabaseSettings):
    """`PAPO_*` settings of the persist service."""

    prefetch: int = Field(default=200, ge=1, le=1000)
    """Higher than the base default: a batch can only fill with messages the broker has already handed over
    unacknowledged, and twice the batch size lets the next batch gather while the current one commits."""
    persist_batch_size: int = Field(default=100, ge=1, le=1000)
    """Most messages written in one transaction."""
    persist_batch_wait_ms: int = Field(default=50, ge=0, le=5000)
    """Longest a message waits for others to join its batch."""
    persist_write_timeout_s: float = Field(default=10.0, gt=0, le=300)
    """Longest one transaction may take before the database counts as unavailable."""
    persist_outage_retry_s: float = Field(default=30.0, ge=0, le=600)
    """While PostgreSQL is unreachable a batch is retried with backoff this long before its messages are
    nacked (and redelivered, until the queue's delivery limit dead-letters them)."""

    @model_validator(mode="after")
    def _prefetch_fills_a_batch(self) -> PersistSettings:
        if self.prefetch < self.persist_batch_size:
            raise ValueError(
                f"PAPO_PREFETCH ({self.prefetch}) must be at least PAPO_PERSIST_BATCH_SIZE "
                f"({self.persist_batch_size}): a batch can never hold more than the unacknowledged messages"
            )
        return self
