"""transcribe's settings: public names, defaults, and the combinations it refuses."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from papo_transcribe.settings import TranscribeSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = TranscribeSettings()
    assert settings.transcribe_engine is None  # picked at start: transformers with CUDA, else faster-whisper
    assert settings.transcribe_model is None  # the packaged multilingual base
    assert settings.transcribe_language == "pt"
    assert settings.transcribe_temperature == 0.0
    assert settings.transcribe_device == "auto"
    assert settings.prefetch >= settings.transcribe_batch_size


def test_public_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "PAPO_TRANSCRIBE_ENGINE": "transformers",
        "PAPO_TRANSCRIBE_MODEL": "openai/whisper-small",
        "PAPO_TRANSCRIBE_LANGUAGE": "es",
        "PAPO_TRANSCRIBE_DEVICE": "cuda",
        "PAPO_TRANSCRIBE_BATCH_SIZE": "4",
        "PAPO_TRANSCRIBE_BATCH_WAIT_MS": "25",
        "PAPO_TRANSCRIBE_BEAM_SIZE": "1",
        "PAPO_TRANSCRIBE_TEMPERATURE": "0.2",
        "PAPO_TRANSCRIBE_MAX_SECONDS": "120",
        "PAPO_TRANSCRIBE_MAX_BYTES": "1048576",
        "PAPO_EVOLUTION_URL": "http://evolution:8080",
        "PAPO_EVOLUTION_API_KEY": "s3cr3t-key",
    }.items():
        monkeypatch.setenv(name, value)
    settings = TranscribeSettings()
    assert settings.transcribe_engine == "transformers"
    assert settings.transcribe_model == "openai/whisper-small"
    assert (settings.transcribe_language, settings.transcribe_device) == ("es", "cuda")
    assert (settings.transcribe_batch_size, settings.transcribe_batch_wait_ms) == (4, 25)
    assert (settings.transcribe_beam_size, settings.transcribe_temperature) == (1, 0.2)
    assert (settings.transcribe_max_seconds, settings.transcribe_max_bytes) == (120, 1048576)
    assert settings.evolution_url == "http://evolution:8080"
    assert settings.evolution_api_key.get_secret_value() == "s3cr3t-key"
    assert "s3cr3t-key" not in repr(settings)


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValidationError):
        TranscribeSettings(transcribe_engine="whisper.cpp")  # type: ignore[arg-type]


def test_prefetch_below_the_batch_size_is_refused() -> None:
    with pytest.raises(ValidationError, match="PAPO_PREFETCH must be at least PAPO_TRANSCRIBE_BATCH_SIZE"):
        TranscribeSettings(prefetch=2, transcribe_batch_size=8)


def test_production_needs_a_real_evolution_key() -> None:
    with pytest.raises(ValidationError, match="PAPO_EVOLUTION_API_KEY"):
        TranscribeSettings(environment="production")
    assert TranscribeSettings(environment="production", evolution_api_key="a-real-key")  # type: ignore[arg-type]
