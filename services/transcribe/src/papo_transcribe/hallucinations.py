"""What Whisper says when nobody speaks, and how to tell it from what people say.

Trained on subtitled video, Whisper fills silence and noise with subtitle credits and video outros
("Legendas pela comunidade Amara.org", "Obrigado por assistir"), and can loop on one phrase. Segments it
itself marks as probably silent, credit lines, and decoding loops are removed here.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable

from papo_transcribe.engines.base import Segment

_CREDIT_MARKERS = (
    "amara org",
    "legendas pela comunidade",
    "legendado por",
    "legendas por",
    "legenda por",
    "subtitles by",
    "subtitulos por",
    "subtitulos realizados por",
    "sous titres realises par",
    "untertitel im auftrag",
    "untertitelung des zdf",
    "obrigado por assistir",
    "obrigada por assistir",
    "thank you for watching",
    "thanks for watching",
    "gracias por ver",
    "inscreva se no canal",
    "se inscreva no canal",
    "ative o sininho",
    "like and subscribe",
    "please subscribe",
)
"""Credit lines and outros: never part of a WhatsApp voice note, always Whisper recalling its training set."""

_WHOLE_SEGMENT = frozenset(
    {"legendas", "legenda", "musica", "aplausos", "risos", "music", "applause", "blank audio", "silencio"}
)
"""Sound captions that are hallucinations only when they are the whole segment ("[Música]", "(risos)")."""

_LOOP_COMPRESSION_RATIO = 2.4
"""Whisper's own threshold: text this compressible is the decoder repeating itself."""


def normalize(text: str) -> str:
    """Lowercase, without accents or punctuation, single-spaced: for comparing, never for output."""
    stripped = unicodedata.normalize("NFKD", text.casefold())
    letters = "".join(char for char in stripped if not unicodedata.combining(char))
    return " ".join(re.sub(r"[^\w]+", " ", letters).split())


def compression_ratio(text: str) -> float:
    """How much zlib shrinks the text; above ~2.4, Whisper is looping."""
    raw = text.encode()
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def is_hallucination(text: str) -> bool:
    """A credit line, an outro, a bare sound caption, or nothing but punctuation and symbols."""
    plain = normalize(text)
    return not plain or plain in _WHOLE_SEGMENT or any(marker in plain for marker in _CREDIT_MARKERS)


def collapse_repeats(text: str, *, max_run: int = 3, longest_phrase: int = 10) -> str:
    """Cut a phrase repeated more than `max_run` times in a row down to one: "o que é o que é o que é
    o que é" becomes "o que é". Short legitimate repeats ("não, não, não") are left alone."""
    words = text.split()
    keys = [normalize(word) for word in words]
    for size in range(1, longest_phrase + 1):
        kept_words: list[str] = []
        kept_keys: list[str] = []
        index = 0
        while index < len(words):
            phrase = keys[index : index + size]
            run = 1
            while keys[index + run * size : index + (run + 1) * size] == phrase and len(phrase) == size:
                run += 1
            step = size * run if run > max_run else 1
            kept_words.extend(words[index : index + (size if run > max_run else 1)])
            kept_keys.extend(keys[index : index + (size if run > max_run else 1)])
            index += step
        words, keys = kept_words, kept_keys
    return " ".join(words)


def clean_text(segments: Iterable[Segment], *, no_speech_threshold: float, log_prob_threshold: float) -> str:
    """The note's text without hallucinated segments and loops; empty when nothing real remains."""
    kept: list[str] = []
    for segment in segments:
        text = segment.text.strip()
        silent = segment.no_speech_prob is not None and segment.no_speech_prob > no_speech_threshold
        unsure = segment.avg_logprob is None or segment.avg_logprob < log_prob_threshold
        # The segment's own text, not its 30 s window's: a person repeating a sentence is not a loop.
        looping = compression_ratio(text) > _LOOP_COMPRESSION_RATIO
        if (silent and (unsure or looping)) or is_hallucination(text):
            continue
        kept.append(text)
    return collapse_repeats(" ".join(kept)).strip()
