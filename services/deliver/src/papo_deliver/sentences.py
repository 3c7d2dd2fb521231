"""Where sentences end in Portuguese text as an assistant writes it: not after "Sr." or "Dra.", not inside
"R$ 1.234,56" or a URL, not at an ellipsis or "etc." that the sentence goes on after, not after the number
of a list item; but after "!", "?", "...", "…" or "etc." followed by a capital, and with the emojis that
close a sentence ("Claro! 😊") kept in it.
"""

from __future__ import annotations

import re

Piece = tuple[str, str]
"""(the whitespace that joined it to the previous piece in the original, its text)."""

_EMOJI = "\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\ufe0f\u200d"
# A sentence ends with . ! ? or an ellipsis, maybe closed by quotes or brackets, maybe followed by emojis that
# belong to it ("Claro! 😊"); the next sentence starts after the whitespace.
_SENTENCE_END = re.compile(rf"[.!?…]+[\"'”’»)\]]*(?:[ \t]*[{_EMOJI}]+)*(?P<space>\s+)(?=\S)")

# Portuguese abbreviations that are followed by a capitalised name or a number, never by a new sentence:
# "Sr. João", "Dra. Ana", "Av. Paulista", "nº. 10". "etc." is not here: it often does end a sentence.
# fmt: off
_NO_BREAK_AFTER = frozenset({
    "sr", "sra", "srs", "sras", "srta", "dr", "dra", "drs", "dras", "prof", "profa", "profs", "exmo", "exma",
    "ilmo", "ilma", "sto", "sta", "av", "r", "al", "rod", "n", "nº", "núm", "num", "tel", "cel", "ex", "p",
    "pág", "pag", "cap", "art", "inc", "vol", "ed", "fig", "cf", "dept", "depto",
})
# fmt: on


def split_sentences(text: str) -> list[Piece]:
    """The sentences of `text`, each with the whitespace that preceded it."""
    pieces: list[Piece] = []
    start, sep = 0, ""
    for match in _SENTENCE_END.finditer(text):
        if _is_boundary(text, start, match):
            pieces.append((sep, text[start : match.start("space")]))
            start, sep = match.end(), match.group("space")
    pieces.append((sep, text[start:]))
    return pieces


def _is_boundary(text: str, start: int, match: re.Match[str]) -> bool:
    following = text[match.end()]
    if following.islower():  # "Bom... deixa eu ver", "etc. e tal": the sentence goes on
        return False
    if text[match.start()] != "." or text[match.start() : match.start() + 2] == "..":
        return True
    word = text[start : match.start()].rsplit(maxsplit=1)[-1:]
    before = word[0].lstrip("(\"'“‘«").lower() if word else ""
    if before in _NO_BREAK_AFTER or (len(before) == 1 and before.isalpha()):  # "Dra. Ana", "J. Silva"
        return False
    # "1. Abra o app": a list number at the start of a line is not a sentence
    return not (before.isdigit() and not text[start : match.start()].strip()[: -len(before)].strip())
