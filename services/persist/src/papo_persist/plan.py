"""Turns a batch of row writes into what one transaction executes: merged conversations, deduplicated and
consistently ordered message rows.

Deduplication is needed because PostgreSQL refuses an `INSERT ... ON CONFLICT DO UPDATE` that touches one row
twice, and a batch can hold a message twice (a redelivery landing next to the original). Ordering every
statement's rows by key makes concurrent transactions (several replicas) take row locks in the same order,
which keeps them from deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from papo_persist.rows import ConversationRow, RowWrite, WriteKind

WRITE_ORDER: tuple[WriteKind, ...] = ("inbound", "operator", "transcript", "reply", "delivery", "session")
"""Statement order inside a transaction: a message's own row before what completes it, so an inbound audio
and its transcript (or a reply and its delivery) in one batch end up as the same row, fully filled."""


@dataclass(frozen=True)
class BatchPlan:
    known_conversations: list[dict[str, Any]]
    """Conversations named by messages that carry their chat id, one per (instance, user_id)."""
    placeholder_conversations: list[dict[str, Any]]
    """Conversations only a transcript or a delivery names, to create if missing."""
    messages: dict[WriteKind, list[RowWrite]]
    """Message rows by statement, in `WRITE_ORDER`, one per (instance, external_id) within a statement."""

    @property
    def conversation_keys(self) -> list[tuple[str, str]]:
        every = (*self.known_conversations, *self.placeholder_conversations)
        return [(c["instance"], c["user_id"]) for c in every]


def plan_batch(writes: Sequence[RowWrite]) -> BatchPlan:
    """The statements' rows for a batch of writes."""
    known = _merge_known(w.conversation for w in writes if w.conversation.known)
    known_keys = {(c["instance"], c["user_id"]) for c in known}
    placeholders = {
        (c.instance, c.user_id): _conversation_values(c)
        for w in writes
        if not (c := w.conversation).known and (c.instance, c.user_id) not in known_keys
    }
    by_kind: dict[WriteKind, list[RowWrite]] = {}
    for kind in WRITE_ORDER:
        unique = _dedupe([w for w in writes if w.kind == kind])
        if unique:
            by_kind[kind] = sorted(unique, key=lambda w: w.key)
    return BatchPlan(known, [placeholders[key] for key in sorted(placeholders)], by_kind)


def _merge_known(rows: Iterable[ConversationRow]) -> list[dict[str, Any]]:
    """One row per conversation: chat id from its newest message, push name from its newest message that
    has one, last message time the latest."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r.last_message_at is not None, r.last_message_at)):
        key = (row.instance, row.user_id)
        previous = merged.get(key)
        values = _conversation_values(row)
        if previous is not None and values["push_name"] is None:
            values["push_name"] = previous["push_name"]
        merged[key] = values
    return [merged[key] for key in sorted(merged)]


def _dedupe(writes: list[RowWrite]) -> list[RowWrite]:
    """One write per key: the first, except that a transcript with text beats one without."""
    chosen: dict[tuple[str, str], RowWrite] = {}
    for write in writes:
        current = chosen.get(write.key)
        if current is None or (current.message.get("text") is None and write.message.get("text")):
            chosen[write.key] = write
    return list(chosen.values())


def _conversation_values(row: ConversationRow) -> dict[str, Any]:
    return {
        "instance": row.instance,
        "user_id": row.user_id,
        "chat_id": row.chat_id,
        "push_name": row.push_name,
        "last_message_at": row.last_message_at,
    }
