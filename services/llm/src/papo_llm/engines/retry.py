"""Which failures of a model server are worth trying again, and what the server said about when."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529})
"""Rate limits, overload and gateway trouble. Any other 4xx describes a request that will fail again."""

PERMANENT_ERROR_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached"})
"""OpenAI answers 429 for an exhausted quota too; waiting does not refill it."""


class ModelUnavailable(Exception):
    """One attempt failed in a way a later one may not (a timeout, a refused connection, 5xx, 429); carries
    the server's `Retry-After`, if any."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def is_retryable(status: int, error_code: str | None = None) -> bool:
    """Whether an HTTP error status (with the body's `error.code`, when there is one) may succeed later."""
    if error_code in PERMANENT_ERROR_CODES:
        return False
    return status in RETRYABLE_STATUSES or status >= 500


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date. None when absent or
    unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def retry_after_of(error: BaseException) -> float | None:
    """The server's hint on a `ModelUnavailable`, for `papo_common.resilience.retry_transient`."""
    return error.retry_after if isinstance(error, ModelUnavailable) else None
