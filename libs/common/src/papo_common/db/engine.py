"""Async engine and session factory."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def make_engine(url: str, *, pool_size: int = 5) -> AsyncEngine:
    """An asyncpg engine that checks connections before use, so a PostgreSQL restart costs one error at most.

    No overflow: a checkout beyond `pool_size` waits for a connection instead of opening one that is closed
    again on return. Under load that churn (a TLS attempt, authentication, a close) cost more CPU than the
    queries themselves (the llm's history reads, bench/pipeline_overhead.py)."""
    # hide_parameters: error messages would otherwise quote bound parameters, i.e. people's messages
    return create_async_engine(
        url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True, hide_parameters=True
    )


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)
