"""Which failures of the model server are retried, and what a `Retry-After` says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from papo_llm.engines.retry import is_retryable, parse_retry_after


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504, 529])
def test_rate_limits_and_server_errors_are_retried(status: int) -> None:
    assert is_retryable(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 413, 422])
def test_a_rejected_request_is_not_retried(status: int) -> None:
    assert not is_retryable(status)


def test_an_exhausted_quota_is_not_retried_although_it_is_a_429() -> None:
    assert not is_retryable(429, "insufficient_quota")
    assert is_retryable(429, "rate_limit_exceeded")


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("Thu, 01 May 2025 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 May 2025 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
