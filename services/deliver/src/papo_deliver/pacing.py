"""How long a person would take to type a text: the typing indicator shown before each message."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TypingPace:
    chars_per_second: float
    min_ms: int
    max_ms: int

    def typing_ms(self, text: str) -> int:
        """Milliseconds of "typing…" before `text` is sent: proportional to its length, within bounds, so a
        one-word answer still shows a moment of typing and a long one never keeps the person waiting long."""
        proportional = round(len(text) / self.chars_per_second * 1000)
        return max(self.min_ms, min(self.max_ms, proportional))
