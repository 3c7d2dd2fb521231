"""From a voice note's bytes to Whisper's input, refusing what cannot or should not be transcribed.

Everything happens in memory: PyAV (FFmpeg's libraries, bundled in its wheel) reads OGG/Opus, MP4/AAC, MP3
and the rest from a `BytesIO`, so no temp file exists to clean up.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
from dataclasses import dataclass

import av
import numpy as np

from papo_transcribe.engines.base import SAMPLE_RATE

logger = logging.getLogger(__name__)

_SILENCE_PEAK = 10 ** (-50 / 20)
"""Peak below -50 dBFS: digital silence or a pocket recording. Whisper invents text for these."""
_MIN_SECONDS = 0.1


class AudioRejected(Exception):
    """The note cannot be understood; `reason` is what the published Transcript says."""

    def __init__(self, reason: str, *, audio_seconds: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.audio_seconds = audio_seconds


@dataclass(frozen=True)
class Limits:
    max_bytes: int
    max_seconds: float
    vad: bool = True


def decode_base64(data: str, max_bytes: int) -> bytes:
    """The bytes of a base64 string (a `data:` URL prefix is tolerated); refuses oversize before decoding."""
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    if len(data) * 3 // 4 > max_bytes + 3:
        raise AudioRejected(f"audio is larger than the {max_bytes}-byte limit")
    try:
        raw = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise AudioRejected(f"invalid base64 ({error})") from error
    if not raw:
        raise AudioRejected("empty audio (no bytes)")
    return raw


def decode_audio(raw: bytes, max_seconds: float) -> np.ndarray:
    """Mono float32 PCM at 16 kHz; refuses bytes that hold no audio and notes longer than `max_seconds`."""
    limit = int(max_seconds * SAMPLE_RATE)
    chunks: list[np.ndarray] = []
    decoded = 0
    try:
        with av.open(io.BytesIO(raw), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioRejected("not audio: the file has no audio stream")
            stream = container.streams.audio[0]
            declared = (
                float(stream.duration * stream.time_base) if stream.duration and stream.time_base else 0
            )
            if declared > max_seconds + 1:
                raise AudioRejected(_too_long(declared, max_seconds), audio_seconds=declared)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            try:
                for frame in container.decode(stream):
                    for out in resampler.resample(frame):
                        chunks.append(out.to_ndarray().reshape(-1))
                        decoded += out.samples
                    if decoded > limit:
                        raise AudioRejected(_too_long(decoded / SAMPLE_RATE, max_seconds))
            except av.FFmpegError:
                # A truncated upload still carries the speech before the cut: keep it when there is some.
                if decoded < SAMPLE_RATE / 2:
                    raise
                logger.warning("audio is damaged after %.1f s; using what decoded", decoded / SAMPLE_RATE)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as error:
        detail = getattr(error, "strerror", None) or str(error)
        raise AudioRejected(f"not decodable audio ({detail})"[:300]) from error
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    return samples.astype(np.float32, copy=False)


def _too_long(seconds: float, max_seconds: float) -> str:
    return f"audio is too long ({seconds:.0f} s; the limit is {max_seconds:.0f} s)"


def has_speech(samples: np.ndarray) -> bool:
    """Whether Silero VAD (shipped inside faster-whisper) hears any speech."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return bool(get_speech_timestamps(samples, VadOptions(min_speech_duration_ms=200)))


def prepare(data: str, limits: Limits) -> np.ndarray:
    """base64 in, Whisper's input out, or `AudioRejected` with the reason. CPU-bound: run it in a thread."""
    samples = decode_audio(decode_base64(data, limits.max_bytes), limits.max_seconds)
    seconds = len(samples) / SAMPLE_RATE
    if seconds < _MIN_SECONDS:
        raise AudioRejected("empty audio (no sound in the file)", audio_seconds=seconds)
    if float(np.max(np.abs(samples))) < _SILENCE_PEAK:
        raise AudioRejected("silent audio", audio_seconds=seconds)
    if limits.vad and not has_speech(samples):
        raise AudioRejected("no speech detected in the audio", audio_seconds=seconds)
    return samples
