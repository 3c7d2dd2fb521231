"""Writes a batch of contracts to PostgreSQL in one transaction."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy.dialects.postgresql import Insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import ReturningInsert

from papo_common.metrics import PERSISTED_ROWS
from papo_persist import statements
from papo_persist.failures import translate
from papo_persist.plan import BatchPlan, plan_batch
from papo_persist.rows import PersistedContract, RowWrite, WriteKind, row_write


class PostgresWriter:
    """Writes contracts as rows, all of a batch in one transaction or none; counts the rows written."""

    def __init__(self, engine: AsyncEngine, *, timeout_s: float) -> None:
        self._engine = engine
        self._timeout_s = timeout_s

    async def write(self, contracts: Sequence[PersistedContract]) -> None:
        """Write `contracts` in one transaction. Raises `PermanentError` when a row can never be written,
        `DependencyUnavailable` when PostgreSQL cannot be reached (or takes longer than the timeout: the
        transaction may then have committed, which a retry turns into a no-op)."""
        plan = plan_batch([row_write(contract) for contract in contracts])
        try:
            async with asyncio.timeout(self._timeout_s):
                written = await self._run(plan)
        except Exception as error:
            translated = translate(error)
            if translated is error:
                raise
            raise translated from None  # the original's text renders the statement's parameters
        for kind, count in written.items():
            PERSISTED_ROWS.labels(kind=kind).inc(count)

    async def _run(self, plan: BatchPlan) -> Counter[WriteKind]:
        written: Counter[WriteKind] = Counter()
        async with self._engine.begin() as connection:
            ids = await _conversation_ids(connection, plan)
            for kind, writes in plan.messages.items():
                rows = [{**w.message, "conversation_id": ids[_conversation_key(w)]} for w in writes]
                result = await connection.execute(_message_statement(kind), rows)
                written[kind] = len(result.all())
        return written


async def _conversation_ids(connection: AsyncConnection, plan: BatchPlan) -> dict[tuple[str, str], int]:
    if plan.known_conversations:
        await connection.execute(_upsert_conversations(), plan.known_conversations)
    if plan.placeholder_conversations:
        await connection.execute(_ensure_conversations(), plan.placeholder_conversations)
    result = await connection.execute(statements.conversation_ids(plan.conversation_keys))
    return {(instance, user_id): id_ for id_, instance, user_id in result.all()}


def _conversation_key(write: RowWrite) -> tuple[str, str]:
    return write.conversation.instance, write.conversation.user_id


@cache
def _message_statement(kind: WriteKind) -> ReturningInsert[Any]:
    return statements.upsert_messages(kind)


@cache
def _upsert_conversations() -> Insert:
    return statements.upsert_conversations()


@cache
def _ensure_conversations() -> Insert:
    return statements.ensure_conversations()
