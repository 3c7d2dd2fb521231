"""One voice note to one `Transcript`: bytes, decoding, refusals, the model, and the hallucination filter.

Everything a person could have sent (an empty, silent, broken, huge or endless note) ends as a Transcript
with `text=None` and a `failure` reason, so debounce can stand its marker in and answer the rest of the
burst. Only transient trouble (Evolution down, the model not loaded) raises, to be retried by redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from papo_common.contracts import InboundMessage, Transcript
from papo_common.metrics import TRANSCRIPTION_AUDIO_SECONDS, TRANSCRIPTION_SECONDS, TRANSCRIPTIONS
from papo_transcribe.audio import AudioRejected, Limits, prepare
from papo_transcribe.engines import SAMPLE_RATE, DecodeOptions
from papo_transcribe.hallucinations import clean_text
from papo_transcribe.media import VoiceNoteMedia
from papo_transcribe.speech import SpeechModel

logger = logging.getLogger(__name__)


class Transcriber:
    """Turns `InboundMessage`s of kind audio into `Transcript`s. No broker in sight: the handler publishes."""

    def __init__(
        self, model: SpeechModel, media: VoiceNoteMedia, limits: Limits, options: DecodeOptions
    ) -> None:
        self._model = model
        self._media = media
        self._limits = limits
        self._options = options

    async def transcribe(self, message: InboundMessage) -> Transcript:
        """The transcript of a voice note, or a failed one saying why it could not be understood."""
        started = time.perf_counter()
        try:
            samples = await self._samples(message)
            seconds = len(samples) / SAMPLE_RATE
            result = await self._model.transcribe(samples)
            text = clean_text(
                result.segments,
                no_speech_threshold=self._options.no_speech_threshold,
                log_prob_threshold=self._options.log_prob_threshold,
            )
            if not text:
                raise AudioRejected("no speech recognised", audio_seconds=seconds)
        except AudioRejected as rejected:
            logger.info(
                "voice note not understood",
                extra={"message_id": message.message_id, "reason": rejected.reason},
            )
            return self.failure(message, rejected.reason, audio_seconds=rejected.audio_seconds)
        elapsed = time.perf_counter() - started
        TRANSCRIPTION_SECONDS.labels(engine=self._model.name).observe(elapsed)
        TRANSCRIPTION_AUDIO_SECONDS.labels(engine=self._model.name).inc(seconds)
        TRANSCRIPTIONS.labels(engine=self._model.name, outcome="ok").inc()
        logger.info(
            "voice note transcribed",
            extra={
                "message_id": message.message_id,
                "audio_s": round(seconds, 2),
                "took_s": round(elapsed, 2),
            },
        )
        return Transcript(
            conversation=message.conversation,
            message_id=message.message_id,
            sent_at=message.sent_at,
            text=text,
            language=result.language,
            engine=self._model.name,
            audio_seconds=round(seconds, 3),
        )

    def failure(
        self, message: InboundMessage, reason: str, *, audio_seconds: float | None = None
    ) -> Transcript:
        """A transcript that says the note was not understood, and why."""
        TRANSCRIPTIONS.labels(engine=self._model.name, outcome="failed").inc()
        return Transcript(
            conversation=message.conversation,
            message_id=message.message_id,
            sent_at=message.sent_at,
            text=None,
            failure=reason,
            engine=self._model.name,
            audio_seconds=round(audio_seconds, 3) if audio_seconds is not None else None,
        )

    async def _samples(self, message: InboundMessage) -> np.ndarray:
        audio = message.audio
        if audio is None:
            raise AudioRejected("the message carries no audio")
        # What the webhook declares is checked first, so an oversize note is refused without downloading it.
        if audio.seconds is not None and audio.seconds > self._limits.max_seconds:
            raise AudioRejected(
                f"audio is too long ({audio.seconds:.0f} s; the limit is {self._limits.max_seconds:.0f} s)",
                audio_seconds=audio.seconds,
            )
        if audio.file_length is not None and audio.file_length > self._limits.max_bytes:
            raise AudioRejected(f"audio is larger than the {self._limits.max_bytes}-byte limit")
        if audio.base64 is not None:
            encoded = audio.base64
        else:
            assert audio.media_request is not None  # the contract guarantees one of the two
            encoded = await self._media.fetch_base64(message.conversation.instance, audio.media_request)
        return await asyncio.to_thread(prepare, encoded, self._limits)
