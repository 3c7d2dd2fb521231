"""The CPU engine: faster-whisper on CTranslate2, int8 weights, one note after another."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from papo_transcribe.engines.base import DecodeOptions, EngineResult, Segment

logger = logging.getLogger(__name__)


class FasterWhisperEngine:
    """faster-whisper's `WhisperModel`. CTranslate2 already runs one note across all CPU threads, so a
    "batch" is decoded note by note: batching would only add padding work on a CPU."""

    name = "faster-whisper"

    def __init__(self, model: str, *, device: str, options: DecodeOptions, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel

        # int8 on CPU is ~2x faster than float32 at no measurable accuracy cost for Whisper base.
        compute_type = "int8" if device == "cpu" else "float16"
        self._model = WhisperModel(
            model, device=device, compute_type=compute_type, cpu_threads=cpu_threads, num_workers=1
        )
        self._options = options
        self.language = options.language if self._model.model.is_multilingual else "en"
        if self.language != options.language:
            logger.warning("model is English-only: decoding English", extra={"requested": options.language})

    def warm_up(self) -> None:
        """CTranslate2 initialises eagerly: one short decode is enough to fault the weights in."""
        segments, _ = self._model.transcribe(
            np.zeros(16_000, dtype=np.float32), language=self.language, beam_size=1, max_new_tokens=2
        )
        list(segments)

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[EngineResult]:
        """Transcribe each note in turn."""
        return [self._one(audio) for audio in audios]

    def _one(self, audio: np.ndarray) -> EngineResult:
        options = self._options
        segments, _info = self._model.transcribe(
            audio,
            language=self.language,
            task="transcribe",
            beam_size=options.beam_size,
            best_of=options.beam_size,
            temperature=options.temperature,
            condition_on_previous_text=False,
            no_speech_threshold=options.no_speech_threshold,
            log_prob_threshold=options.log_prob_threshold,
            compression_ratio_threshold=options.compression_ratio_threshold,
            # Cuts long pauses out of a note, where Whisper would otherwise invent text.
            vad_filter=True,
            without_timestamps=False,
        )
        return EngineResult(
            segments=tuple(
                Segment(
                    text=segment.text,
                    no_speech_prob=segment.no_speech_prob,
                    avg_logprob=segment.avg_logprob,
                )
                for segment in segments
            ),
            language=self.language,
        )
