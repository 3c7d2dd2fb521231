"""papo's PostgreSQL schema (SQLModel over asyncpg). persist writes it; llm reads history from it."""

from papo_common.db.engine import make_engine, make_session_factory
from papo_common.db.models import Conversation, Message, MessageRole, PersonIdentity

__all__ = ["Conversation", "Message", "MessageRole", "PersonIdentity", "make_engine", "make_session_factory"]
