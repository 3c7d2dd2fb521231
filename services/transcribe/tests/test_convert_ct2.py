"""The CTranslate2 → Hugging Face converter: the same network, so the same outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from papo_transcribe.convert_ct2 import read_ct2_variables

from .conftest import clip_base64

pytestmark = pytest.mark.slow


def test_the_converted_encoder_computes_what_ctranslate2_computes(
    tiny_en_ct2: Path, tiny_en_hf: Path
) -> None:
    import ctranslate2
    import torch
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    from papo_transcribe.audio import Limits, prepare

    audio = prepare(clip_base64("en_table.ogg"), Limits(1 << 24, 60))
    features = WhisperFeatureExtractor.from_pretrained(tiny_en_hf)(
        audio, sampling_rate=16_000, return_tensors="np"
    )
    mel = features["input_features"].astype(np.float32)

    reference = ctranslate2.models.Whisper(str(tiny_en_ct2), device="cpu", compute_type="float32")
    expected = np.array(reference.encode(ctranslate2.StorageView.from_array(mel)))
    model = WhisperForConditionalGeneration.from_pretrained(tiny_en_hf, dtype=torch.float32).eval()
    with torch.inference_mode():
        actual = model.model.encoder(torch.from_numpy(mel)).last_hidden_state.numpy()
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=2e-2, rtol=0)
    assert float(np.abs(actual - expected).mean()) < 1e-3


def test_language_and_task_can_be_forced_after_conversion(base_ct2: Path, tmp_path: Path) -> None:
    from papo_transcribe.convert_ct2 import convert

    convert(base_ct2, tmp_path)
    generation = json.loads((tmp_path / "generation_config.json").read_text())
    assert generation["lang_to_id"]["<|pt|>"] == 50267
    assert generation["task_to_id"] == {"transcribe": 50359, "translate": 50358}
    assert generation["is_multilingual"] is True
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["vocab_size"], config["d_model"], config["encoder_layers"]) == (51865, 512, 6)


def test_the_ct2_reader_resolves_aliases(tiny_en_ct2: Path) -> None:
    variables = read_ct2_variables(tiny_en_ct2 / "model.bin")
    assert variables["decoder/projection/weight"] is variables["decoder/embeddings/weight"]


def test_the_command_line(tiny_en_ct2: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "papo_transcribe.convert_ct2", str(tiny_en_ct2), str(tmp_path / "hf")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= {
        path.name for path in (tmp_path / "hf").iterdir()
    }


def test_a_non_whisper_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x06\x00\x00\x00\x0a\x00TransSpec\x00")
    with pytest.raises(ValueError, match="not a Whisper model"):
        read_ct2_variables(tmp_path / "model.bin")
