"""The one interface both speech-to-text engines implement, and what they return."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16_000
"""Whisper's input: mono float32 PCM at 16 kHz."""


@dataclass(frozen=True)
class DecodeOptions:
    """How every note is decoded, from the settings."""

    language: str = "pt"
    beam_size: int = 5
    temperature: float = 0.0
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4


@dataclass(frozen=True)
class Segment:
    """A stretch of recognised speech with the decoder's confidence signals, when the engine gives them."""

    text: str
    no_speech_prob: float | None = None
    avg_logprob: float | None = None


@dataclass(frozen=True)
class EngineResult:
    segments: tuple[Segment, ...]
    language: str


class Engine(Protocol):
    """A loaded Whisper model. Not thread-safe: the batcher calls it from one worker thread at a time."""

    name: str
    """Label on metrics and on the published transcript."""
    language: str
    """The language it decodes in (an English-only model always decodes English)."""

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[EngineResult]:
        """Transcribe 16 kHz mono float32 clips; the results are in the order of `audios`."""
        ...

    def warm_up(self) -> None:
        """Pay for lazy initialisation (CUDA kernels, allocator) before the first person's note does."""
        ...
