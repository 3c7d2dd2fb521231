"""Rehydration from PostgreSQL: which stored messages become history, and how they read."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from papo_common.contracts import UNDERSTOOD_NOTHING, ConversationRef
from papo_common.db import asyncpg_dsn, make_engine
from papo_common.errors import DependencyUnavailable
from papo_llm.archive import HistoryArchive, turn_from_row, turns_from_rows
from papo_llm.prompt import Turn
from papo_llm.settings import VOICE_NOTE_MARK
from papo_testing import infra


def test_each_role_reads_as_its_side_of_the_conversation() -> None:
    assert turn_from_row("user", "text", "oi", None) == Turn("user", "oi")
    assert turn_from_row("assistant", "text", "Olá!", None) == Turn("assistant", "Olá!")
    assert turn_from_row("operator", "text", "Aqui é o João.", None) == Turn("assistant", "Aqui é o João.")


def test_voice_notes_show_their_transcript_or_the_marker_and_pending_ones_are_skipped() -> None:
    assert turn_from_row("user", "audio", "bom dia", None) == Turn("user", f"{VOICE_NOTE_MARK}bom dia")
    assert turn_from_row("user", "audio", None, "too noisy") == Turn(
        "user", f"{VOICE_NOTE_MARK}{UNDERSTOOD_NOTHING}"
    )
    assert turn_from_row("user", "audio", None, None) is None
    assert turn_from_row("operator", "audio", None, None) is None


def test_a_truncated_window_drops_its_oldest_turn_which_may_be_partial() -> None:
    rows = [("user", "text", "b", None), ("assistant", "text", "B", None), ("user", "text", "c", None)]

    assert turns_from_rows(rows, complete=True) == [
        Turn("user", "b"),
        Turn("assistant", "B"),
        Turn("user", "c"),
    ]
    assert turns_from_rows(rows, complete=False) == [Turn("assistant", "B"), Turn("user", "c")]


def test_which_stored_messages_are_answered_comes_from_the_replies_not_from_time() -> None:
    from datetime import UTC, datetime

    from papo_llm.archive import recall_from_rows

    def at(second: int) -> datetime:
        return datetime(2025, 5, 1, 12, 0, second, tzinfo=UTC)

    rows = [
        ("m1", "user", "text", "oi", None, None, at(1)),
        ("late-m0", "user", "text", "bom dia", None, None, at(1)),  # arrived after m1 was answered
        ("r1", "assistant", "text", "Olá!", None, ["m1"], at(5)),
        ("m2", "user", "audio", None, None, None, at(6)),  # still being transcribed
        ("m3", "user", "text", "tudo bem?", None, None, at(7)),
    ]

    recalled = recall_from_rows(rows, complete=True, carryover_turns=0)

    assert [m.message_id for m in recalled.pending] == ["late-m0", "m3"]
    assert recalled.seen == ["m1"]
    assert recalled.turns == [Turn("user", "oi"), Turn("assistant", "Olá!")]


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with infra.postgres_database() as url:
        yield url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def archive(database_url: str) -> AsyncIterator[HistoryArchive]:
    archive = HistoryArchive()
    await archive.open(asyncpg_dsn(database_url), max_size=2)
    yield archive
    await archive.close()


async def test_recalled_turns_leave_out_pending_messages_and_other_conversations(
    engine: AsyncEngine, archive: HistoryArchive, make_burst, make_item
) -> None:
    burst = make_burst(make_item("now-1", "e o horário?", seconds=100), make_item("now-2", "?", seconds=101))
    me = burst.conversation
    t0 = burst.items[0].sent_at
    other_instance = ConversationRef(instance="other", user_id=me.user_id)
    async with engine.begin() as connection:
        ids = {}
        for conversation in (me, other_instance):
            ids[conversation.key] = (
                await connection.execute(
                    text(
                        "INSERT INTO conversations (instance, user_id, chat_id) VALUES (:i, :u, :u) RETURNING id"
                    ),
                    {"i": conversation.instance, "u": conversation.user_id},
                )
            ).scalar_one()
        rows = [
            (me, "old-1", "user", "text", "quanto custa?", -50),
            (me, "op-1", "operator", "text", "Custa 30 reais.", -40),
            (me, "reply-1", "assistant", "text", "Mais alguma dúvida?", -39),
            (me, "now-1", "user", "text", "e o horário?", 0),
            (me, "later-1", "user", "text", "said after the burst", 30),
            (other_instance, "x-1", "user", "text", "another tenant", -45),
        ]
        for conversation, external_id, role, kind, body, seconds in rows:
            await connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, instance, external_id, role, kind, text, sent_at)"
                    " VALUES (:c, :i, :e, :r, :k, :t, :s)"
                ),
                {
                    "c": ids[conversation.key],
                    "i": conversation.instance,
                    "e": external_id,
                    "r": role,
                    "k": kind,
                    "t": body,
                    "s": t0 + timedelta(seconds=seconds),
                },
            )

    recalled = await archive.recall(me, max_rows=50)

    assert recalled.turns == [
        Turn("user", "quanto custa?"),
        Turn("assistant", "Custa 30 reais.\nMais alguma dúvida?"),
    ]
    assert [m.message_id for m in recalled.pending] == ["now-1", "later-1"], "no reply covers them"
    assert recalled.seen == ["old-1"], "a human answered it"
    assert (await archive.recall(me, max_rows=50, exclude_message_ids=["now-1"])).pending[0].content == (
        "said after the burst"
    )
    await archive.ping()


async def test_a_reset_written_just_after_the_burst_was_sent_still_starts_a_new_session(
    engine: AsyncEngine, archive: HistoryArchive, make_burst, make_item
) -> None:
    from papo_common.contracts import ConversationRef as Ref

    burst = make_burst(make_item("new-1", "oi", seconds=10))
    me = Ref(instance="reset-race", user_id=burst.conversation.user_id)
    t0 = burst.items[0].sent_at
    async with engine.begin() as connection:
        conversation_id = (
            await connection.execute(
                text(
                    "INSERT INTO conversations (instance, user_id, chat_id) VALUES (:i, :u, :u) RETURNING id"
                ),
                {"i": me.instance, "u": me.user_id},
            )
        ).scalar_one()
        # messageTimestamp has one-second resolution: the close can be stamped after the next message
        for external_id, role, kind, body, offset in [
            ("old-1", "user", "text", "quero um bolo de fubá", -20.0),
            ("r-1", "assistant", "text", "De que tamanho?", -19.0),
            ("close", "system", "session_closed", "reset", 0.6),
        ]:
            await connection.execute(
                text(
                    "INSERT INTO messages (conversation_id, instance, external_id, role, kind, text, sent_at)"
                    " VALUES (:c, :i, :e, :r, :k, :t, :s)"
                ),
                {
                    "c": conversation_id,
                    "i": me.instance,
                    "e": external_id,
                    "r": role,
                    "k": kind,
                    "t": body,
                    "s": t0 + timedelta(seconds=offset),
                },
            )
    recalled = await archive.recall(me, max_rows=50, carryover_turns=4)
    assert recalled.turns == [], "nothing from before the reset"


async def test_postgresql_away_means_try_again_later_not_a_bug(database_url: str) -> None:
    """An unreachable server, a missing database, or a connection PostgreSQL cut: each is
    `DependencyUnavailable` (the turn is redelivered with backoff), and a cut connection is replaced."""
    me = ConversationRef(instance="loja", user_id="5511900000001@s.whatsapp.net")
    for dsn in ("postgresql://postgres@127.0.0.1:1/test", asyncpg_dsn(database_url) + "-gone"):
        away = HistoryArchive()
        await away.open(dsn, max_size=1)
        with pytest.raises(DependencyUnavailable):
            await away.recall(me, max_rows=10)
        await away.close()

    archive = HistoryArchive()
    await archive.open(asyncpg_dsn(database_url), max_size=1)
    try:
        await archive.ping()
        database = database_url.rsplit("/", 1)[1]
        await infra.admin_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        with contextlib.suppress(
            DependencyUnavailable
        ):  # noticed on this read: the turn goes back to the queue
            await archive.recall(me, max_rows=10)
        assert (await archive.recall(me, max_rows=10)).turns == []
    finally:
        await archive.close()
