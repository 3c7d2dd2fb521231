"""What a PostgreSQL error means for a message: the database is away (try again later), or something else.

Shared by the services that talk to PostgreSQL through asyncpg directly (persist writes, the llm reads), so
that an outage means the same redelivery with backoff in both, never a dead letter or a hot requeue loop.
"""

from __future__ import annotations

import asyncpg

from papo_common.errors import DependencyUnavailable

UNAVAILABLE_SQLSTATES = (
    "08",  # connection exception
    "28",  # invalid authorization
    "3D000",  # the database does not exist (dropped, or not created yet)
    "53",  # insufficient resources: too many connections, disk full
    "57P",  # operator intervention: shutting down, starting up, connection terminated
)


def postgres_unavailable(error: BaseException) -> DependencyUnavailable | None:
    """The `DependencyUnavailable` to raise when `error` says PostgreSQL cannot serve now (unreachable,
    timed out, restarting, out of connections), else None. Its text has the SQLSTATE and PostgreSQL's own
    message, never the statement's parameters (which hold people's messages)."""
    if isinstance(error, OSError | asyncpg.InterfaceError):  # TimeoutError and refused connections included
        return DependencyUnavailable(f"PostgreSQL unreachable: {type(error).__name__}: {error}"[:500])
    if isinstance(error, asyncpg.InternalClientError):
        # What asyncpg 0.32 raises for a query sent on a pooled connection PostgreSQL has just cut
        # (`pg_terminate_backend`, a restart) before the client read the FATAL: "cannot switch to state 11;
        # another operation (2) is in progress". The pool replaces that connection for the next query.
        return DependencyUnavailable(f"PostgreSQL connection cut: {type(error).__name__}: {error}"[:500])
    if isinstance(error, asyncpg.PostgresError) and str(error.sqlstate or "").startswith(
        UNAVAILABLE_SQLSTATES
    ):
        return DependencyUnavailable(f"PostgreSQL unavailable: {postgres_reason(error)}")
    return None


def postgres_reason(error: asyncpg.PostgresError) -> str:
    """SQLSTATE and message alone: the error's text would add its DETAIL, which quotes the failing row."""
    return f"{type(error).__name__} {error.sqlstate or ''}: {error.args[0] if error.args else ''}"[:500]


def asyncpg_dsn(database_url: str) -> str:
    """The `postgresql://` DSN asyncpg takes, from papo's SQLAlchemy-style `postgresql+asyncpg://` URL."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
