"""Settings of the transcribe service (`PAPO_TRANSCRIBE_*`, `PAPO_EVOLUTION_*`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from papo_common.evolution import EvolutionSettings

MIB = 1024 * 1024

EngineName = Literal["transformers", "faster-whisper"]


class TranscribeSettings(EvolutionSettings):
    """What transcribe needs beyond the common settings: the engine, its model and the limits of a note.
    Where Evolution is and which key each instance is called with: `EvolutionSettings`."""

    transcribe_engine: EngineName | None = None
    """`transformers` (GPU) or `faster-whisper` (CPU); unset picks transformers when CUDA is available."""
    transcribe_model: str | None = None
    """A local folder in the engine's format, or a hub id; unset uses the packaged multilingual base model."""
    transcribe_language: str = Field(default="pt", min_length=2, max_length=8)
    """Forced, because Whisper's auto-detection mislabels short Portuguese notes."""
    transcribe_device: Literal["auto", "cpu", "cuda"] = "auto"
    transcribe_batch_size: int = Field(default=8, ge=1, le=64)
    """Most notes decoded in one forward pass (the transformers engine batches; faster-whisper loops)."""
    transcribe_batch_wait_ms: int = Field(default=50, ge=0, le=5_000)
    """How long the first note of a batch waits for company before the batch runs anyway."""
    transcribe_beam_size: int = Field(default=5, ge=1, le=10)
    transcribe_temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    """0 decodes deterministically; the temperature-fallback ladder turned 4 s notes into 30 s of work."""
    transcribe_max_seconds: float = Field(default=600.0, gt=0)
    """Longer notes are refused with a clear reason instead of tying a worker up for minutes."""
    transcribe_max_bytes: int = Field(default=16 * MIB, ge=1024)
    """WhatsApp's own media limit is 16 MiB."""
    transcribe_vad: bool = True
    """Refuse notes in which the voice activity detector hears no speech (Whisper invents text there)."""
    transcribe_no_speech_threshold: float = Field(default=0.6, ge=0.0, le=1.0)
    transcribe_cpu_threads: int = Field(default=0, ge=0, le=256)
    """Threads for CPU inference; 0 uses every core this process may run on."""
    transcribe_fetch_attempts: int = Field(default=4, ge=1, le=10)
    """Tries of one Evolution media download before the message is redelivered later, with backoff."""
    transcribe_fetch_backoff_seconds: float = Field(default=0.5, ge=0.0, le=30.0)
    """First pause between download tries; it doubles each time, with jitter, capped at 8 s."""
    evolution_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    """A media download can be large and Evolution may first fetch it from WhatsApp or Meta."""

    @model_validator(mode="after")
    def _consistent(self) -> TranscribeSettings:
        if self.prefetch < self.transcribe_batch_size:
            # The micro-batcher only ever sees as many notes at once as the broker lets this consumer hold.
            raise ValueError("PAPO_PREFETCH must be at least PAPO_TRANSCRIBE_BATCH_SIZE")
        return self
