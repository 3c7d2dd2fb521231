"""The local engine's plumbing with a tiny random model: chat template, bounded tokens, one generation at a
time, deadlines, readiness while loading, and each failure it handles."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from papo_common.errors import DependencyUnavailable
from papo_llm.engines import CompletionFailed, make_engine
from papo_llm.engines.local import GenerationTimedOut, LocalChatEngine, ModelLoading
from papo_llm.engines.model_loader import LoadedModel, load_model
from papo_llm.engines.model_locator import ModelSource
from papo_llm.settings import LlmSettings

PROMPT: list[Any] = [
    {"role": "system", "content": "S"},
    {"role": "user", "content": "oi"},
    {"role": "assistant", "content": "hello"},
    {"role": "user", "content": "oi hello"},
]


def engine_for(
    folder: Path,
    *,
    max_tokens: int = 4,
    timeout: float = 30.0,
    temperature: float = 0.0,
    slow_down: Callable[[LoadedModel], None] | None = None,
) -> LocalChatEngine:
    def load() -> LoadedModel:
        loaded = load_model(ModelSource(str(folder)), device="cpu", cache_root=folder / "unused-cache")
        if slow_down is not None:
            slow_down(loaded)
        return loaded

    return LocalChatEngine(
        load, model="tiny", temperature=temperature, max_tokens=max_tokens, timeout_seconds=timeout
    )


def sleep_every_step(seconds: float) -> Callable[[LoadedModel], None]:
    def install(loaded: LoadedModel) -> None:
        loaded.model.register_forward_pre_hook(lambda module, args: time.sleep(seconds))

    return install


async def test_the_prompt_goes_through_the_chat_template_and_usage_is_counted_by_the_tokenizer(
    tiny_model_dir: Path,
) -> None:
    engine = engine_for(tiny_model_dir, max_tokens=3)

    completion = await engine.complete(PROMPT)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = tokenizer.apply_chat_template(PROMPT, add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert completion.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    assert completion.text == "papo papo papo"
    assert completion.completion_tokens == 3
    assert completion.model == "tiny"
    await engine.aclose()


@pytest.mark.parametrize("max_tokens", [1, 7])
async def test_new_tokens_are_bounded_by_max_tokens(tiny_model_dir: Path, max_tokens: int) -> None:
    engine = engine_for(tiny_model_dir, max_tokens=max_tokens)

    completion = await engine.complete(PROMPT)

    assert completion.completion_tokens == max_tokens
    assert completion.text.split() == ["papo"] * max_tokens
    await engine.aclose()


async def test_a_positive_temperature_samples(tiny_model_dir: Path) -> None:
    # sampling draws from torch's global generator: seeded, so the draws do not depend on what ran before
    torch.manual_seed(1234)
    engine = engine_for(tiny_model_dir, temperature=0.7, max_tokens=30)

    async def one() -> str:
        try:
            return (await engine.complete(PROMPT)).text
        except CompletionFailed:
            return ""  # a draw of the end-of-turn token first: an empty answer

    answers = {await one() for _ in range(3)}

    # All logits are equal, so sampling draws uniformly from the vocabulary: three identical answers of
    # 30 tokens would mean it was greedy after all.
    assert len(answers) > 1
    await engine.aclose()


async def test_concurrent_completions_run_one_at_a_time_off_the_event_loop(tiny_model_dir: Path) -> None:
    in_flight, most = 0, 0
    guard = threading.Lock()

    def count_generations(loaded: LoadedModel) -> None:
        generate = loaded.model.generate

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal in_flight, most
            with guard:
                in_flight += 1
                most = max(most, in_flight)
            try:
                time.sleep(0.1)
                return generate(*args, **kwargs)
            finally:
                with guard:
                    in_flight -= 1

        loaded.model.generate = counted

    engine = engine_for(tiny_model_dir, slow_down=count_generations)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    answers = await asyncio.gather(*(engine.complete(PROMPT) for _ in range(4)))
    ticker.cancel()

    assert [answer.text for answer in answers] == ["papo papo papo papo"] * 4
    assert most == 1
    assert ticks >= 20, "the event loop was blocked while the model generated"
    await engine.aclose()


async def test_a_generation_that_outlasts_the_deadline_stops_and_times_out(tiny_model_dir: Path) -> None:
    engine = engine_for(tiny_model_dir, max_tokens=200, timeout=0.5, slow_down=sleep_every_step(0.05))
    started = time.monotonic()

    with pytest.raises(GenerationTimedOut, match="generation outlasted"):
        await engine.complete(PROMPT)

    # Stopped at the deadline, not after 200 steps of 50 ms.
    assert time.monotonic() - started < 3.0
    await engine.aclose()


async def test_a_completion_that_cannot_start_before_its_deadline_times_out_without_running(
    tiny_model_dir: Path,
) -> None:
    engine = engine_for(tiny_model_dir, max_tokens=200, timeout=0.6, slow_down=sleep_every_step(0.05))
    await engine.start()
    await _until_ready(engine)

    first, second = await asyncio.gather(
        engine.complete(PROMPT), engine.complete(PROMPT), return_exceptions=True
    )

    assert isinstance(first, GenerationTimedOut) and "generation outlasted" in str(first)
    assert isinstance(second, GenerationTimedOut) and "waited over" in str(second)
    await engine.aclose()


async def test_readiness_fails_until_the_model_has_loaded(tiny_model_dir: Path) -> None:
    release, loading = threading.Event(), threading.Event()

    def hold(loaded: LoadedModel) -> None:
        loading.set()
        release.wait(10)

    engine = engine_for(tiny_model_dir, slow_down=hold)
    [check] = engine.readiness_checks().values()

    with pytest.raises(ModelLoading):
        await check()
    await engine.start()
    waiting = asyncio.create_task(engine.complete(PROMPT))
    assert await asyncio.to_thread(loading.wait, 10), "the load started"
    with pytest.raises(ModelLoading):
        await check()
    assert not waiting.done()

    release.set()
    await _until_ready(engine)
    assert (await waiting).text == "papo papo papo papo"
    await engine.aclose()


async def test_a_model_that_fails_to_load_keeps_readiness_failing_and_completions_retryable() -> None:
    def broken_load() -> LoadedModel:
        raise OSError("model.safetensors is truncated")

    engine = LocalChatEngine(broken_load, model="broken", temperature=0, max_tokens=4, timeout_seconds=5)
    await engine.start()

    with pytest.raises(DependencyUnavailable, match=r"failed to load: model\.safetensors is truncated"):
        await engine.complete(PROMPT)
    [check] = engine.readiness_checks().values()
    with pytest.raises(OSError, match="truncated"):
        await check()
    await engine.aclose()


async def test_an_answer_with_no_text_is_permanent(tiny_silent_model_dir: Path) -> None:
    engine = engine_for(tiny_silent_model_dir)

    with pytest.raises(CompletionFailed, match="no text"):
        await engine.complete(PROMPT)
    await engine.aclose()


async def test_settings_select_and_configure_the_local_engine(tiny_model_dir: Path) -> None:
    settings = LlmSettings(
        llm_engine="local",
        llm_local_model=str(tiny_model_dir),
        llm_device="cpu",
        llm_temperature=0,
        llm_max_tokens=2,
    )

    engine = make_engine(settings)

    assert isinstance(engine, LocalChatEngine)
    assert engine.model == tiny_model_dir.name
    assert (await engine.complete(PROMPT)).text == "papo papo"
    await engine.aclose()


async def _until_ready(engine: LocalChatEngine) -> None:
    [check] = engine.readiness_checks().values()
    for _ in range(200):
        try:
            await check()
            return
        except ModelLoading:
            await asyncio.sleep(0.05)
    raise AssertionError("the model never loaded")
