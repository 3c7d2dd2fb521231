"""Splitting a long reply into WhatsApp messages a person would send: a wall of text is hard to read on a phone.

A reply that fits in `max_chars` stays one message. A longer one is cut at the coarsest boundary that makes
the pieces fit — paragraphs, then lines (list items stay whole), then sentences, then words — and the pieces
are packed greedily back into messages of at most `max_chars`. A fenced code block is kept whole when it
fits and otherwise split between its lines, each part fenced again. A URL is never cut. When there would be
more than `max_chunks` messages, the tail is merged into the last one: nothing is ever dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from papo_deliver.sentences import Piece, split_sentences

_FENCE = "```"
_WHITESPACE = re.compile(r"\s+")
_URL = re.compile(r"^\W*(?:https?://|www\.)", re.IGNORECASE)


def split_reply(text: str, *, max_chars: int, max_chunks: int) -> tuple[str, ...]:
    """The messages `text` is sent as, in order; joined back, they hold all of its words."""
    text = text.replace("\r\n", "\n").strip()
    if len(text) <= max_chars:
        return (text,)
    pieces = [(sep, chunk.strip()) for sep, chunk in _split(text, max_chars, 0)]
    pieces = [(sep, chunk) for sep, chunk in pieces if chunk]
    if len(pieces) > max_chunks:
        tail = pieces[max_chunks - 1][1] + "".join(sep + chunk for sep, chunk in pieces[max_chunks:])
        pieces = [*pieces[: max_chunks - 1], ("", tail)]
    return tuple(chunk for _, chunk in pieces)


def _split(text: str, limit: int, level: int) -> list[Piece]:
    """Pieces of `text` each at most `limit` long (a URL may exceed it), cutting at `_LEVELS[level]` or finer."""
    if len(text) <= limit:
        return [("", text)]
    if _is_fenced(text):
        return _split_code(text, limit)
    if level == len(_LEVELS):
        if _URL.match(text):
            return [("", text)]
        return [("", text[i : i + limit]) for i in range(0, len(text), limit)]
    packed: list[Piece] = []
    for sep, part in _LEVELS[level](text):
        sub = _split(part, limit, level + 1)
        # A part that needs several messages starts a new one, so a message begins at the coarsest
        # boundary available rather than in the middle of a paragraph; its tail may take what follows.
        if len(sub) == 1 and packed and _fits(packed[-1], sep, sub[0][1], limit):
            packed[-1] = (packed[-1][0], packed[-1][1] + sep + sub[0][1])
        else:
            packed.append((sep, sub[0][1]))
        packed.extend(sub[1:])
    return packed


def _fits(previous: Piece, sep: str, text: str, limit: int) -> bool:
    return len(previous[1]) + len(sep) + len(text) <= limit


def _pack(pieces: list[Piece], limit: int) -> list[Piece]:
    """Join consecutive pieces, with their original separators, while the result fits."""
    packed: list[Piece] = []
    for sep, text in pieces:
        if packed and _fits(packed[-1], sep, text, limit):
            packed[-1] = (packed[-1][0], packed[-1][1] + sep + text)
        else:
            packed.append((sep, text))
    return packed


def _paragraphs(text: str) -> list[Piece]:
    """Blocks separated by blank lines; a fenced code block is one block even with blank lines inside."""
    return _blocks(text, lambda line: not line.strip(), "\n\n")


def _lines(text: str) -> list[Piece]:
    """Lines; an indented line continues the list item above it, and a fenced block stays together."""
    return _blocks(text, lambda line: True, "\n")


def _blocks(text: str, is_break: Callable[[str], bool], sep: str) -> list[Piece]:
    blocks: list[list[str]] = [[]]
    in_fence = False
    for line in text.split("\n"):
        starts_fence = line.lstrip().startswith(_FENCE)
        if not in_fence and is_break(line) and blocks[-1] and not _continues(line, blocks[-1]):
            blocks.append([])
        if line.strip() or in_fence:
            blocks[-1].append(line)
        if starts_fence:
            in_fence = not in_fence if line.strip().count(_FENCE) == 1 else in_fence
    joined = ["\n".join(block).strip("\n").rstrip() for block in blocks if block]
    return [("" if index == 0 else sep, block) for index, block in enumerate(joined)]


def _continues(line: str, block: list[str]) -> bool:
    return bool(line.strip()) and line[:1] in " \t" and not block[-1].lstrip().startswith(_FENCE)


def _words(text: str) -> list[Piece]:
    pieces: list[Piece] = []
    position, sep = 0, ""
    for match in _WHITESPACE.finditer(text):
        pieces.append((sep, text[position : match.start()]))
        position, sep = match.end(), match.group()
    pieces.append((sep, text[position:]))
    return [piece for piece in pieces if piece[1]]


def _is_fenced(text: str) -> bool:
    """One fenced code block and nothing else."""
    lines = text.strip().split("\n")
    inner_fences = [line for line in lines[1:-1] if line.lstrip().startswith(_FENCE)]
    return (
        len(lines) >= 2 and lines[0].startswith(_FENCE) and lines[-1].strip() == _FENCE and not inner_fences
    )


def _split_code(text: str, limit: int) -> list[Piece]:
    """A code block too long for one message: its lines in parts, each fenced again so it still renders."""
    lines = text.strip().split("\n")
    opening, body = lines[0], lines[1:-1]
    inner_limit = max(1, limit - len(opening) - len(_FENCE) - 2)
    parts = _pack([("\n", piece) for line in body for piece in _split_line(line, inner_limit)], inner_limit)
    return [("" if i == 0 else "\n", f"{opening}\n{part}\n{_FENCE}") for i, (_, part) in enumerate(parts)]


def _split_line(line: str, limit: int) -> list[str]:
    if len(line) <= limit:
        return [line]
    return [piece for _, piece in _split(line, limit, len(_LEVELS) - 1)]


_LEVELS: tuple[Callable[[str], list[Piece]], ...] = (_paragraphs, _lines, split_sentences, _words)
