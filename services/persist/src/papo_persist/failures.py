"""What a database error means for the messages of a batch.

- The row can never be written (a value too long, a constraint it breaks): `PermanentError`, so the message
  goes to the dead-letter queue at once.
- PostgreSQL cannot be reached, or is shutting down, or the database is gone: `DependencyUnavailable`, so the
  batch is retried as a whole and then redelivered; no message is to blame.
- Anything else the database says (a deadlock, a missing table): `WriteFailed`, retried by redelivery.

The new error carries the SQLSTATE and PostgreSQL's own message but never SQLAlchemy's rendering of the
statement, whose parameters hold people's messages.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError, StatementError

from papo_common.errors import DependencyUnavailable, PermanentError

_PERMANENT_SQLSTATE_CLASSES = (
    "22",  # data exception: a value too long, out of range, badly encoded
    "23",  # integrity constraint violation that no ON CONFLICT covers
    "54",  # program limit exceeded: a row too large to index
)
_UNAVAILABLE_SQLSTATES = (
    "08",  # connection exception
    "28",  # invalid authorization
    "3D000",  # the database does not exist (dropped, or not created yet)
    "53",  # insufficient resources: too many connections, disk full
    "57P",  # operator intervention: shutting down, starting up
)


class WriteFailed(Exception):
    """PostgreSQL refused a batch for a reason that a later attempt may not meet."""


def translate(error: Exception) -> Exception:
    """The error to raise for `error`; `error` itself when it is not a database error (a bug stays a bug)."""
    if isinstance(error, OSError | asyncpg.InterfaceError):  # TimeoutError and refused connections included
        return DependencyUnavailable(f"PostgreSQL unreachable: {type(error).__name__}: {error}"[:500])
    sqlstate = _sqlstate(error)
    reason = f"{type(error).__name__} {sqlstate or ''}: {_server_message(error)}"[:500]
    if sqlstate.startswith(_PERMANENT_SQLSTATE_CLASSES):
        return PermanentError(f"PostgreSQL refused the row: {reason}")
    if sqlstate.startswith(_UNAVAILABLE_SQLSTATES) or _connection_lost(error):
        return DependencyUnavailable(f"PostgreSQL unavailable: {reason}")
    if isinstance(error, StatementError | asyncpg.PostgresError):
        return WriteFailed(reason)
    return error


def _sqlstate(error: Exception) -> str:
    source = error.orig if isinstance(error, StatementError) else error
    return str(getattr(source, "sqlstate", None) or "")


def _server_message(error: Exception) -> str:
    if isinstance(error, StatementError):
        return str(error.orig) if error.orig is not None else type(error).__name__
    return str(error)


def _connection_lost(error: Exception) -> bool:
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    return isinstance(error, InterfaceError) or (
        isinstance(error, StatementError) and isinstance(error.orig, OSError | asyncpg.InterfaceError)
    )
