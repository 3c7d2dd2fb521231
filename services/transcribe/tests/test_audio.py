"""Decoding voice notes in memory, and refusing what cannot or should not be transcribed."""

from __future__ import annotations

import base64
import os

import pytest

from papo_transcribe.audio import AudioRejected, Limits, decode_audio, decode_base64, prepare
from papo_transcribe.engines.base import SAMPLE_RATE

from .conftest import clip_base64, clip_bytes

LIMITS = Limits(max_bytes=16 * 1024 * 1024, max_seconds=600)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def reason(data: str, limits: Limits = LIMITS) -> str:
    with pytest.raises(AudioRejected) as rejected:
        prepare(data, limits)
    return rejected.value.reason


def test_an_ogg_opus_voice_note_decodes_to_16k_mono_float32() -> None:
    samples = prepare(clip_base64("en_table.ogg"), LIMITS)
    assert samples.dtype.name == "float32" and samples.ndim == 1
    assert 4.5 < len(samples) / SAMPLE_RATE < 5.0
    assert 0.3 < float(abs(samples).max()) <= 1.0


def test_a_data_url_prefix_is_tolerated() -> None:
    assert decode_base64("data:audio/ogg;base64," + b64(b"OggS"), 1024) == b"OggS"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("!!! not base64 !!!", "invalid base64"),
        ("T2dnUw", "invalid base64"),  # bad padding
        ("", "empty audio"),
        (b64(os.urandom(4000)), "not decodable audio"),
        (b64(b"%PDF-1.7\n" + os.urandom(2000)), "not decodable audio"),
        (b64(b"\x89PNG\r\n\x1a\n" + os.urandom(300)), "not audio"),
        (b64(clip_bytes("en_table.ogg")[:200]), "not decodable audio"),  # the header and nothing else
        (clip_base64("silence.ogg"), "silent audio"),
        (clip_base64("noise.ogg"), "no speech detected"),
    ],
    ids=["garbage", "padding", "empty", "random-bytes", "pdf", "png", "header-only", "silence", "noise"],
)
def test_what_cannot_be_understood_is_refused_with_a_reason(data: str, expected: str) -> None:
    assert reason(data).startswith(expected)


def test_noise_is_passed_on_when_voice_detection_is_off() -> None:
    samples = prepare(clip_base64("noise.ogg"), Limits(LIMITS.max_bytes, LIMITS.max_seconds, vad=False))
    assert len(samples) == 3 * SAMPLE_RATE


def test_a_note_over_the_byte_cap_is_refused_before_decoding() -> None:
    assert reason(clip_base64("en_table.ogg"), Limits(max_bytes=2048, max_seconds=600)).startswith(
        "audio is larger than the 2048-byte limit"
    )


def test_a_note_over_the_duration_cap_is_refused() -> None:
    with pytest.raises(AudioRejected, match=r"audio is too long \(\d+ s; the limit is 2 s\)"):
        decode_audio(clip_bytes("en_table.ogg"), max_seconds=2)


def test_a_truncated_upload_keeps_the_speech_before_the_cut() -> None:
    raw = clip_bytes("en_table.ogg")
    samples = decode_audio(raw[: len(raw) // 2], max_seconds=600)
    assert 1.0 < len(samples) / SAMPLE_RATE < 4.0
