"""papo's PostgreSQL schema (SQLModel over asyncpg). persist writes it; llm reads history from it."""

from papo_common.db.engine import make_engine, make_session_factory
from papo_common.db.models import Conversation, Message, MessageRole, PersonIdentity
from papo_common.db.outages import asyncpg_dsn, postgres_unavailable

__all__ = [
    "Conversation",
    "Message",
    "MessageRole",
    "PersonIdentity",
    "asyncpg_dsn",
    "make_engine",
    "make_session_factory",
    "postgres_unavailable",
]
