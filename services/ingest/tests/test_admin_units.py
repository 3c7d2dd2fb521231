"""The admin API's plain parts: bearer-token check, history cursors, user ids from URLs, erasure's SCAN
pattern, and how dead letters are described and routed back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import SecretStr

from papo_common.contracts import ConversationRef
from papo_common.redis import ConversationKeys
from papo_ingest.admin.conversations import InvalidConversation, canonical_user_id, conversation_from_path
from papo_ingest.admin.dead_letters import DEAD_LETTER_QUEUES, jsonable, original_route
from papo_ingest.admin.dependencies import AdminAuthenticator
from papo_ingest.admin.erasure import key_pattern
from papo_ingest.admin.history import Cursor, InvalidCursor

TOKEN = "adm-" + "0123456789abcdef" * 3
auth = AdminAuthenticator(SecretStr(TOKEN))


# --- auth ---


def test_the_bearer_token_is_accepted_in_any_scheme_case() -> None:
    assert auth.allows({"authorization": f"Bearer {TOKEN}"})
    assert auth.allows({"authorization": f"bearer {TOKEN}"})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": ""},
        {"authorization": "Bearer "},
        {"authorization": f"Bearer {TOKEN}x"},
        {"authorization": f"Bearer {TOKEN[:-1]}"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": TOKEN},
        {"x-papo-token": TOKEN},
    ],
)
def test_anything_else_is_refused(headers: dict[str, str]) -> None:
    assert not auth.allows(headers)


def test_an_empty_token_cannot_build_an_authenticator() -> None:
    with pytest.raises(ValueError, match="empty"):
        AdminAuthenticator(SecretStr("  "))


def test_short_tokens_are_flagged() -> None:
    assert AdminAuthenticator(SecretStr("short")).short
    assert not auth.short


# --- cursors ---


def test_a_cursor_round_trips_to_the_microsecond() -> None:
    cursor = Cursor(datetime(2026, 11, 22, 12, 0, 1, 123456, tzinfo=UTC), 42)
    assert Cursor.decode(cursor.encode()) == cursor


def test_a_cursor_is_normalised_to_utc_and_opaque() -> None:
    local = datetime(2026, 11, 22, 9, 0, tzinfo=timezone(timedelta(hours=-3)))
    token = Cursor(local, 7).encode()
    assert "2026" not in token and "=" not in token
    assert Cursor.decode(token).sent_at == datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "zzz",
        "!!!",
        Cursor(datetime(2026, 1, 1, tzinfo=UTC), 1).encode()[:-3],
        "WzIsIjIwMjYtMDEtMDFUMDA6MDA6MDArMDA6MDAiLDFd",  # version 2
        "WzEsIjIwMjYtMDEtMDFUMDA6MDA6MDAiLDFd",  # no time zone
        "WzEsIjIwMjYtMDEtMDFUMDA6MDA6MDArMDA6MDAiLCIxIl0",  # id is a string
    ],
)
def test_anything_but_our_cursor_is_refused(token: str) -> None:
    with pytest.raises(InvalidCursor):
        Cursor.decode(token)


# --- user ids in URLs ---


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("5511999990000", "5511999990000@s.whatsapp.net"),
        ("+5511999990000", "5511999990000@s.whatsapp.net"),
        (" 5511999990000 ", "5511999990000@s.whatsapp.net"),
        ("5511999990000@s.whatsapp.net", "5511999990000@s.whatsapp.net"),
        ("5511999990000:12@s.whatsapp.net", "5511999990000@s.whatsapp.net"),
        ("123456789012345@lid", "123456789012345@lid"),
        ("120363041234567890@g.us", "120363041234567890@g.us"),
    ],
)
def test_user_ids_are_canonical_jids(raw: str, canonical: str) -> None:
    assert canonical_user_id(raw) == canonical


@pytest.mark.parametrize(
    "raw", ["", "abc", "12", "55 11 99999", "5511999990000@example.com", "@s.whatsapp.net", "a*b@lid"]
)
def test_other_user_ids_are_refused(raw: str) -> None:
    with pytest.raises(InvalidConversation):
        canonical_user_id(raw)


def test_the_instance_must_fit_the_database() -> None:
    assert conversation_from_path("loja", "5511999990000") == ConversationRef(
        instance="loja", user_id="5511999990000@s.whatsapp.net"
    )
    for instance in ("", "   ", "x" * 129):
        with pytest.raises(InvalidConversation):
            conversation_from_path(instance, "5511999990000")


# --- erasure's SCAN pattern ---


def test_the_pattern_is_the_conversations_keys_pattern() -> None:
    conversation = ConversationRef(instance="loja", user_id="5511999990000@s.whatsapp.net")
    assert key_pattern("papo", conversation) == ConversationKeys("papo", conversation).pattern


def test_glob_characters_in_names_are_escaped() -> None:
    conversation = ConversationRef(instance="loja*[1]?", user_id="5511999990000@s.whatsapp.net")
    assert key_pattern("p\\x", conversation) == (
        "p\\\\x:conv:{loja\\*\\[1\\]\\?:5511999990000@s.whatsapp.net}:*"
    )


# --- dead letters ---

X_DEATH: list[dict[str, Any]] = [
    {
        "count": 2,
        "reason": "delivery_limit",
        "queue": "papo.llm",
        "time": datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        "exchange": "papo",
        "routing-keys": ["burst.ready"],
    },
    {"count": 1, "reason": "rejected", "queue": "papo.other", "routing-keys": ["other.key"]},
]


def test_the_original_route_is_the_most_recent_death() -> None:
    assert original_route({"x-death": X_DEATH}) == ("burst.ready", "papo.llm")


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-death": []}, {"x-death": "nonsense"}, {"x-death": [{"queue": 3, "routing-keys": []}]}],
)
def test_no_original_route_without_a_usable_x_death(headers: dict[str, Any]) -> None:
    assert original_route(headers) == (None, None)


def test_header_values_become_json() -> None:
    assert jsonable({"x-death": X_DEATH[:1], "raw": b"bytes", "n": 3}) == {
        "x-death": [
            {
                "count": 2,
                "reason": "delivery_limit",
                "queue": "papo.llm",
                "time": "2026-11-22T12:00:00+00:00",
                "exchange": "papo",
                "routing-keys": ["burst.ready"],
            }
        ],
        "raw": "bytes",
        "n": 3,
    }


def test_only_topologys_dead_letter_queues_are_admin_queues() -> None:
    assert "papo.llm.dlq" in DEAD_LETTER_QUEUES
    assert all(name.startswith("papo.") and name.endswith(".dlq") for name in DEAD_LETTER_QUEUES)
    assert "papo.llm" not in DEAD_LETTER_QUEUES
