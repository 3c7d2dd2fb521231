"""Words a person can send to steer the conversation: start over, or ask for a human.

Matching is on whole messages, case- and accent-insensitive and ignoring punctuation and emoji, so "Atendente!"
and "atendênte" match "atendente", while "não preciso de atendente" does not trigger anything.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Literal

from papo_common.contracts import Burst

Command = Literal["human", "reset"]

_NOT_WORD = re.compile(r"[^\w\s]", flags=re.UNICODE)
_SPACES = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Lower case, no accents, no punctuation or emoji, single spaces."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _SPACES.sub(" ", _NOT_WORD.sub(" ", bare)).strip()


class KeywordMatcher:
    def __init__(self, *, reset: Iterable[str], human: Iterable[str]) -> None:
        self._reset = {normalize(word) for word in reset} - {""}
        self._human = {normalize(word) for word in human} - {""}

    def command_in(self, burst: Burst) -> Command | None:
        """The command a burst carries, if any message of it is exactly a keyword. Asking for a human wins
        over starting over: a person who asks for both wants to talk to someone."""
        said = {normalize(item.text) for item in burst.items}
        if said & self._human:
            return "human"
        if said & self._reset:
            return "reset"
        return None
