"""The `Burst` built from a claimed burst: no broker, no Redis."""

from __future__ import annotations

from datetime import timedelta

from papo_common.contracts import UNDERSTOOD_NOTHING
from papo_debounce.burst import build_burst
from papo_debounce.store import Flushing, StoredItem
from papo_testing.factories import ANA, T0


def flushing(*items: StoredItem, transcripts: dict[str, dict[str, str | None]] | None = None) -> Flushing:
    return Flushing(
        conversation=ANA,
        token="t",
        burst_id="3f2a",
        items=items,
        transcripts=transcripts or {},
        chat_id=ANA.user_id,
        push_name="Ana",
        inbound_seq=len(items),
        reason="quiet",
        first_at=T0.timestamp(),
        claimed_at=T0.timestamp() + 15,
        paused=None,
    )


def test_items_follow_when_they_were_said_then_arrival() -> None:
    burst = build_burst(
        flushing(
            StoredItem("B", "text", "segundo", T0 + timedelta(seconds=1), arrival=1),
            StoredItem("C", "text", "terceiro", T0 + timedelta(seconds=1), arrival=3),
            StoredItem("A", "text", "primeiro", T0, arrival=2),
        )
    )
    assert [item.text for item in burst.items] == ["primeiro", "segundo", "terceiro"]
    assert burst.burst_id == "3f2a" and burst.inbound_seq == 3
    assert (burst.flushed_at - burst.first_received_at).total_seconds() == 15


def test_items_said_in_one_second_follow_the_order_ingest_received_them_in() -> None:
    # debounce's concurrent handlers (and its replicas) may take a burst's messages in any order
    second = T0.timestamp() + 5
    burst = build_burst(
        flushing(
            StoredItem("C", "text", "to the city centre", T0, arrival=1, received_at=second + 0.4),
            StoredItem("A", "text", "hi", T0, arrival=3, received_at=second + 0.1),
            StoredItem("B", "text", "do you deliver?", T0, arrival=2, received_at=second + 0.2),
        )
    )
    assert [item.text for item in burst.items] == ["hi", "do you deliver?", "to the city centre"]


def test_voice_notes_take_their_transcript_or_the_marker() -> None:
    burst = build_burst(
        flushing(
            StoredItem("V1", "audio", None, T0, arrival=1),
            StoredItem("V2", "audio", None, T0, arrival=2),
            StoredItem("V3", "audio", None, T0, arrival=3),
            transcripts={"V1": {"text": " um bolo ", "failure": None}, "V2": {"text": None, "failure": "x"}},
        )
    )
    assert [item.text for item in burst.items] == ["um bolo", UNDERSTOOD_NOTHING, UNDERSTOOD_NOTHING]
    assert all(item.transcribed for item in burst.items)
