"""Which database errors dead-letter a message, which mean PostgreSQL is down, and which are retried."""

from __future__ import annotations

import asyncpg
import pytest

from papo_common.errors import DependencyUnavailable, PermanentError
from papo_persist.database import WriteFailed, translate


def database_error(sqlstate: str, message: str = "boom") -> asyncpg.PostgresError:
    error = asyncpg.PostgresError(message)
    error.sqlstate = sqlstate  # type: ignore[misc]
    error.detail = "Failing row contains (a secret message)."  # type: ignore[misc]
    return error


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("22001", PermanentError),  # value too long
        ("23514", PermanentError),  # check constraint
        ("23502", PermanentError),  # not null
        ("54000", PermanentError),  # row too large
        ("08006", DependencyUnavailable),  # connection failure
        ("57P01", DependencyUnavailable),  # admin shutdown
        ("3D000", DependencyUnavailable),  # database dropped
        ("53300", DependencyUnavailable),  # too many connections
        ("40P01", WriteFailed),  # deadlock: redelivered
        ("42P01", WriteFailed),  # table missing: redelivered until fixed or dead-lettered
    ],
)
def test_database_errors_are_classified_by_sqlstate(sqlstate: str, expected: type[Exception]) -> None:
    assert type(translate(database_error(sqlstate))) is expected


def test_an_unreachable_server_is_unavailable() -> None:
    assert isinstance(translate(ConnectionRefusedError(111, "refused")), DependencyUnavailable)
    assert isinstance(translate(TimeoutError()), DependencyUnavailable)
    assert isinstance(translate(asyncpg.ConnectionDoesNotExistError("closed")), DependencyUnavailable)


def test_the_reason_keeps_the_server_message_but_never_the_parameters() -> None:
    reason = str(translate(database_error("22001", "value too long for type character varying(128)")))

    assert "value too long" in reason
    assert "22001" in reason
    assert "a secret message" not in reason


def test_a_bug_that_is_not_a_database_error_stays_itself() -> None:
    bug = KeyError("conversation_id")

    assert translate(bug) is bug
