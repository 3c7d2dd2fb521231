"""Which PostgreSQL errors mean "the database is away, try again later"."""

from __future__ import annotations

import asyncpg
import pytest

from papo_common.db.outages import postgres_unavailable


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connect call failed"),
        TimeoutError(),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        # a query racing the FATAL of a backend PostgreSQL terminated, on asyncpg 0.32
        asyncpg.InternalClientError("cannot switch to state 11; another operation (2) is in progress"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.InvalidCatalogNameError('database "gone" does not exist'),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    ],
    ids=type,
)
def test_an_outage_is_dependency_unavailable(error: BaseException) -> None:
    assert postgres_unavailable(error) is not None


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.UndefinedColumnError("no such column"),
        ValueError(),
    ],
    ids=type,
)
def test_anything_else_is_not(error: BaseException) -> None:
    assert postgres_unavailable(error) is None
