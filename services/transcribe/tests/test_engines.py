"""Both engines on real speech (espeak-ng clips, OGG/Opus like WhatsApp's) with real, offline weights."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from papo_transcribe.audio import Limits, prepare
from papo_transcribe.engines.base import SAMPLE_RATE, DecodeOptions, Engine
from papo_transcribe.hallucinations import clean_text

from .conftest import GREEDY_EN, clip_base64

pytestmark = pytest.mark.slow


def samples(name: str) -> np.ndarray:
    return prepare(clip_base64(name), Limits(max_bytes=1 << 24, max_seconds=600))


def texts(engine: Engine, *names: str) -> list[str]:
    results = engine.transcribe_batch([samples(name) for name in names])
    return [clean_text(r.segments, no_speech_threshold=0.6, log_prob_threshold=-1.0).lower() for r in results]


def long_note() -> np.ndarray:
    """A 35-second note (Whisper's window is 30 s): both English clips, three times, with pauses."""
    pause = np.zeros(SAMPLE_RATE, dtype=np.float32)
    note = np.concatenate([samples("en_table.ogg"), pause, samples("en_weather.ogg"), pause] * 3)
    assert len(note) / SAMPLE_RATE > 33
    return note


def assert_no_loop(text: str) -> None:
    words = text.split()
    assert len(words) < 100, f"looping: {len(words)} words"
    assert text.count("table") <= 4 and text.count("weather") <= 4


@pytest.fixture(scope="module")
def fw_tiny_en(tiny_en_ct2: Path) -> Engine:
    from papo_transcribe.engines.faster_whisper import FasterWhisperEngine

    return FasterWhisperEngine(str(tiny_en_ct2), device="cpu", options=GREEDY_EN, cpu_threads=2)


@pytest.fixture(scope="module")
def hf_tiny_en(tiny_en_hf: Path) -> Iterator[Engine]:
    from papo_transcribe.engines.transformers import TransformersEngine

    yield TransformersEngine(str(tiny_en_hf), device="cpu", options=GREEDY_EN, cpu_threads=2)


def test_faster_whisper_transcribes_english(fw_tiny_en: Engine) -> None:
    table, weather = texts(fw_tiny_en, "en_table.ogg", "en_weather.ogg")
    assert all(word in table for word in ("table", "two people", "tomorrow evening"))
    # tiny.en in int8 hears "park after" as "power-caster" in some batched runs: key words only
    assert all(word in weather for word in ("weather", "sunny", "lunch"))


def test_faster_whisper_transcribes_portuguese_with_the_packaged_base(base_ct2: Path) -> None:
    from papo_transcribe.engines.faster_whisper import FasterWhisperEngine

    engine = FasterWhisperEngine(
        str(base_ct2), device="cpu", options=DecodeOptions(language="pt"), cpu_threads=2
    )
    assert engine.language == "pt"
    [pizza] = texts(engine, "pt_pizza.ogg")
    assert "pizza" in pizza and "jantar" in pizza


def test_faster_whisper_long_note_has_no_repetition_loop(fw_tiny_en: Engine) -> None:
    [result] = fw_tiny_en.transcribe_batch([long_note()])
    text = clean_text(result.segments, no_speech_threshold=0.6, log_prob_threshold=-1.0).lower()
    assert "table" in text and "lunch" in text
    assert_no_loop(text)


def test_an_english_only_model_decodes_english_whatever_the_setting(tiny_en_ct2: Path) -> None:
    from papo_transcribe.engines.faster_whisper import FasterWhisperEngine

    engine = FasterWhisperEngine(
        str(tiny_en_ct2), device="cpu", options=DecodeOptions(language="pt"), cpu_threads=2
    )
    assert engine.language == "en"


def test_transformers_transcribes_a_batch_in_one_pass(hf_tiny_en: Engine) -> None:
    table, weather = texts(hf_tiny_en, "en_table.ogg", "en_weather.ogg")
    assert all(word in table for word in ("table", "two people", "tomorrow evening"))
    assert all(word in weather for word in ("weather", "sunny", "lunch"))


def test_transformers_long_note_in_a_mixed_batch_has_no_repetition_loop(hf_tiny_en: Engine) -> None:
    long, short = hf_tiny_en.transcribe_batch([long_note(), samples("en_weather.ogg")])
    text = long.segments[0].text.lower()
    assert "table" in text and "weather" in text and "lunch" in text
    assert_no_loop(text)
    assert "sunny" in short.segments[0].text.lower()


def test_transformers_transcribes_portuguese_with_the_packaged_base_converted(base_ct2: Path) -> None:
    from papo_transcribe.engines.transformers import TransformersEngine
    from papo_transcribe.model_locator import hf_from_ct2

    options = DecodeOptions(language="pt", beam_size=1)
    engine = TransformersEngine(str(hf_from_ct2(base_ct2)), device="cpu", options=options, cpu_threads=2)
    [pizza] = texts(engine, "pt_pizza.ogg")
    assert "pizza" in pizza and "jantar" in pizza


def test_transformers_loads_a_save_pretrained_folder(random_hf: Path) -> None:
    from papo_transcribe.engines.transformers import TransformersEngine

    engine = TransformersEngine(str(random_hf), device="cpu", options=GREEDY_EN, cpu_threads=2)
    engine.warm_up()
    results = engine.transcribe_batch([samples("en_table.ogg"), samples("en_weather.ogg")])
    assert len(results) == 2 and all(isinstance(r.segments[0].text, str) for r in results)
