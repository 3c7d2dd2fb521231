"""Each turn's timeline: what the simulator saw on the wire (webhooks and papo's answers to them, media
fetches, typing, sends, read receipts) joined with what papo recorded in PostgreSQL (transcripts, the
model's answer and when it was made)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from papo_simulator.world import Chat, ChatMessage, Observation


@dataclass
class Step:
    label: str
    at: float | None
    detail: str = ""


@dataclass
class Turn:
    message_ids: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)


def _epoch(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def _turns_of(messages: list[ChatMessage]) -> list[tuple[list[ChatMessage], list[ChatMessage]]]:
    """The person's messages, each group with the bot messages that followed it."""
    turns: list[tuple[list[ChatMessage], list[ChatMessage]]] = []
    for message in messages:
        if message.author == "contact":
            if not turns or turns[-1][1]:
                turns.append(([], []))
            turns[-1][0].append(message)
        elif message.author == "bot" and turns:
            turns[-1][1].append(message)
    return turns


def build_timeline(chat: Chat, *, debounce_seconds: float) -> list[Turn]:
    rows = {row.get("external_id"): row for row in chat.history}
    replies = [row for row in chat.history if row.get("role") == "assistant"]
    timeline: list[Turn] = []
    for asked, answered in _turns_of(chat.messages):
        ids = {m.id for m in asked} | {m.id for m in answered}
        seen = [o for o in chat.observations if o.message_id in ids]
        first_out = answered[0].at if answered else None
        turn = Turn(message_ids=[m.id for m in asked])
        for message in asked:
            turn.steps += [Step("webhook", o.at, o.detail) for o in seen if _is(o, message, "webhook")]
            if message.kind == "audio":
                turn.steps += _transcription(message, seen, rows.get(message.id))
        last_in = asked[-1].at
        window_closes = last_in + debounce_seconds
        turn.steps.append(
            Step("debounce wait", window_closes, f"{debounce_seconds:g} s quiet after the last message")
        )
        reply = next(
            (r for r in replies if (_epoch(r.get("sent_at")) or 0) >= last_in and first_out is not None), None
        )
        if reply is not None:
            made = _epoch(reply["sent_at"])
            turn.steps.append(
                Step(
                    "model call",
                    made,
                    f"answer recorded {made - window_closes:+.1f} s after the window closed" if made else "",
                )
            )
        typing = _typing_between(chat.observations, last_in, first_out)
        turn.steps += typing
        for o in seen:
            if o.what == "delivery":
                turn.steps.append(Step("delivery", o.at, o.detail))
        turn.steps += [Step("read", o.at, o.detail) for o in seen if o.what == "read"]
        turn.steps.sort(key=lambda step: step.at or 0)
        timeline.append(turn)
    return timeline


def _is(observation: Observation, message: ChatMessage, what: str) -> bool:
    return observation.message_id == message.id and observation.what == what


def _transcription(message: ChatMessage, seen: list[Observation], row: dict[str, Any] | None) -> list[Step]:
    steps = [
        Step("transcription started", o.at, "papo fetched the voice note")
        for o in seen
        if _is(o, message, "media fetched")
    ]
    if row is not None and row.get("text"):
        steps.append(Step("transcription", steps[-1].at if steps else message.at, f"“{row['text']}”"))
    elif row is not None and row.get("transcription_failure"):
        steps.append(Step("transcription failed", message.at, str(row["transcription_failure"])))
    return steps


def _typing_between(observations: list[Observation], start: float, end: float | None) -> list[Step]:
    return [
        Step("typing", o.at, o.detail)
        for o in observations
        if o.what == "typing" and o.at >= start and (end is None or o.at <= end)
    ]
