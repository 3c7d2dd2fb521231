"""The local model is set up to answer quickly on a small shared machine: half the cores, short answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from papo_llm.engines import model_loader
from papo_llm.engines.local import LOCAL_MAX_TOKENS, LocalChatEngine
from papo_llm.engines.model_locator import ModelSource
from papo_llm.settings import LlmSettings


@pytest.mark.parametrize(("cores", "threads"), [(None, 1), (1, 1), (2, 1), (8, 4)])
def test_torch_uses_half_the_cores(monkeypatch: pytest.MonkeyPatch, cores: int | None, threads: int) -> None:
    monkeypatch.setattr(model_loader.os, "cpu_count", lambda: cores)
    assert model_loader.cpu_threads() == threads


def test_loading_on_cpu_sets_torch_threads(monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> None:
    monkeypatch.setattr(model_loader, "cpu_threads", lambda: 1)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model_loader.load_model(
            ModelSource(str(tiny_model_dir)), device="cpu", cache_root=tiny_model_dir / "c"
        )
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_local_engine_caps_new_tokens(tiny_model_dir: Path) -> None:
    settings = LlmSettings(llm_engine="local", llm_local_model=str(tiny_model_dir), llm_max_tokens=400)
    engine = LocalChatEngine.from_settings(settings)
    assert engine._max_tokens == LOCAL_MAX_TOKENS
    small = LocalChatEngine.from_settings(settings.model_copy(update={"llm_max_tokens": 20}))
    assert small._max_tokens == 20
