"""Turns a claimed burst into the `Burst` contract: ordered by when things were said, not when they arrived."""

from __future__ import annotations

from datetime import UTC, datetime

from papo_common.contracts import UNDERSTOOD_NOTHING, Burst, BurstItem
from papo_debounce.store import Flushing, StoredItem


def _text_of(item: StoredItem, flushing: Flushing) -> str:
    if item.kind == "text":
        return item.text or ""
    transcript = flushing.transcripts.get(item.message_id)
    # No transcript yet means the transcription timeout passed: the marker lets the assistant ask again.
    if transcript is None or not (transcript.get("text") or "").strip():
        return UNDERSTOOD_NOTHING
    return str(transcript["text"]).strip()


def build_burst(flushing: Flushing) -> Burst:
    """The burst as the llm sees it. Ties on `messageTimestamp` (one-second resolution) keep the order ingest
    received them in, which neither debounce's concurrent handlers nor its replicas can shuffle; then the
    order debounce took them in."""
    ordered = sorted(flushing.items, key=lambda item: (item.sent_at, item.received_at, item.arrival))
    first_at = datetime.fromtimestamp(flushing.first_at, UTC)
    return Burst(
        burst_id=flushing.burst_id,
        conversation=flushing.conversation,
        chat_id=flushing.chat_id,
        push_name=flushing.push_name,
        items=tuple(
            BurstItem(
                message_id=item.message_id,
                kind=item.kind,
                text=_text_of(item, flushing),
                sent_at=item.sent_at,
                transcribed=item.kind == "audio",
            )
            for item in ordered
        ),
        inbound_seq=flushing.inbound_seq,
        previous_inbound_seq=flushing.previous_seq,
        reason=flushing.reason,
        first_received_at=first_at,
        flushed_at=datetime.fromtimestamp(flushing.claimed_at, UTC),
    )
