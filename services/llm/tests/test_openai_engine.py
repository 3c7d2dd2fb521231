"""The OpenAI-compatible engine against the fake server: wire format, retries and what is permanent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from papo_llm.engines import CompletionFailed, make_engine
from papo_llm.engines.openai import OpenAIChatEngine
from papo_llm.engines.retry import Backoff
from papo_llm.settings import LlmSettings
from papo_testing.fake_openai import FakeOpenAI

PROMPT: list[Any] = [{"role": "system", "content": "S"}, {"role": "user", "content": "oi"}]


@pytest.fixture
async def ai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def engine_for(
    base_url: str, *, max_attempts: int = 3, timeout: float = 5.0
) -> tuple[OpenAIChatEngine, list[float]]:
    pauses: list[float] = []

    async def record_pause(seconds: float) -> None:
        pauses.append(seconds)

    engine = OpenAIChatEngine(
        httpx.AsyncClient(base_url=base_url + "/", timeout=timeout),
        model="gpt-test",
        temperature=0.3,
        max_tokens=50,
        max_attempts=max_attempts,
        backoff=Backoff(base_seconds=0.2, max_seconds=2.0),
        sleep=record_pause,
    )
    return engine, pauses


async def test_a_completion_sends_the_configured_body_and_reads_text_usage_and_model(ai: FakeOpenAI) -> None:
    ai.model = "gpt-test-2025-01-01"
    engine, _ = engine_for(ai.base_url)

    completion = await engine.complete(PROMPT)

    assert completion.text == "[fake reply to 2 messages] oi"
    assert completion.model == "gpt-test-2025-01-01"
    assert completion.prompt_tokens > 0 and completion.completion_tokens > 0
    assert ai.requests[0].body == {
        "model": "gpt-test",
        "messages": PROMPT,
        "temperature": 0.3,
        "max_tokens": 50,
    }
    await engine.aclose()


async def test_the_api_key_is_a_bearer_token_and_absent_without_a_key(ai: FakeOpenAI) -> None:
    with_key = make_engine(LlmSettings(llm_base_url=ai.base_url, llm_api_key="sk-papo"))
    without_key = make_engine(LlmSettings(llm_base_url=ai.base_url + "/"))

    await with_key.complete(PROMPT)
    await without_key.complete(PROMPT)

    assert ai.requests[0].headers["authorization"] == "Bearer sk-papo"
    assert "authorization" not in ai.requests[1].headers
    assert "sk-papo" not in repr(LlmSettings(llm_api_key="sk-papo"))
    await with_key.aclose()
    await without_key.aclose()


async def test_server_errors_are_retried_with_backoff(ai: FakeOpenAI) -> None:
    ai.fail_next(500, times=2)
    engine, pauses = engine_for(ai.base_url)

    completion = await engine.complete(PROMPT)

    assert completion.text.endswith("oi")
    assert [r.status for r in ai.requests] == [500, 500, 200]
    assert len(pauses) == 2 and all(0 <= p <= 2.0 for p in pauses)
    await engine.aclose()


async def test_a_rate_limit_waits_at_least_its_retry_after(ai: FakeOpenAI) -> None:
    ai.fail_next(429, retry_after=1.5)
    engine, pauses = engine_for(ai.base_url)

    await engine.complete(PROMPT)

    assert pauses == [1.5]
    await engine.aclose()


async def test_transient_failures_that_outlast_every_attempt_are_permanent(ai: FakeOpenAI) -> None:
    ai.fail_next(503, times=3)
    engine, pauses = engine_for(ai.base_url)

    with pytest.raises(CompletionFailed, match="gave up after 3 attempts"):
        await engine.complete(PROMPT)
    assert len(ai.requests) == 3 and len(pauses) == 2
    await engine.aclose()


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_a_rejected_request_fails_at_once(ai: FakeOpenAI, status: int) -> None:
    ai.fail_next(status)
    engine, pauses = engine_for(ai.base_url)

    with pytest.raises(CompletionFailed, match=f"HTTP {status}") as failure:
        await engine.complete(PROMPT)
    assert len(ai.requests) == 1 and pauses == []
    assert "sk-" not in str(failure.value)
    await engine.aclose()


async def test_a_hung_server_is_a_timeout_and_retried(ai: FakeOpenAI) -> None:
    ai.hang_next()
    engine, pauses = engine_for(ai.base_url, timeout=0.3)

    completion = await engine.complete(PROMPT)

    assert completion.text.endswith("oi") and len(pauses) == 1
    await engine.aclose()


async def test_a_refused_connection_is_retried_then_given_up() -> None:
    engine, pauses = engine_for("http://127.0.0.1:9/v1", max_attempts=2)

    with pytest.raises(CompletionFailed, match="connection error"):
        await engine.complete(PROMPT)
    assert len(pauses) == 1
    await engine.aclose()


def mock_engine(payload: Any, status: int = 200) -> OpenAIChatEngine:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(payload, bytes):
            return httpx.Response(status, content=payload)
        return httpx.Response(status, json=payload)

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer), base_url="http://llm.local/v1/")
    return OpenAIChatEngine(
        client, model="local", temperature=0, max_tokens=10, max_attempts=1, backoff=Backoff(0, 0)
    )


async def test_a_server_without_usage_or_model_still_answers() -> None:
    engine = mock_engine({"choices": [{"message": {"role": "assistant", "content": " Olá! "}}]})

    completion = await engine.complete(PROMPT)

    assert (completion.text, completion.model, completion.prompt_tokens) == ("Olá!", "local", 0)


async def test_a_refusal_is_the_answer() -> None:
    engine = mock_engine(
        {"choices": [{"message": {"content": None, "refusal": "Não posso ajudar com isso."}}]}
    )

    assert (await engine.complete(PROMPT)).text == "Não posso ajudar com isso."


@pytest.mark.parametrize(
    "payload",
    [
        b"<html>bad gateway</html>",
        {"choices": []},
        {"object": "list"},
        {"choices": [{"message": {"content": " "}}]},
    ],
)
async def test_an_unparseable_or_empty_answer_is_permanent(payload: Any) -> None:
    with pytest.raises(CompletionFailed):
        await mock_engine(payload).complete(PROMPT)


async def test_an_exhausted_quota_is_permanent() -> None:
    engine = mock_engine(
        {"error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}, 429
    )

    with pytest.raises(CompletionFailed, match="insufficient_quota"):
        await engine.complete(PROMPT)


async def test_fake_concurrency_is_recorded(ai: FakeOpenAI) -> None:
    ai.latency = 0.2
    engine, _ = engine_for(ai.base_url)

    await asyncio.gather(engine.complete(PROMPT), engine.complete(PROMPT))

    assert ai.max_in_flight == 2 and ai.requests[0].overlaps(ai.requests[1])
    await engine.aclose()


def test_the_fake_also_runs_for_synchronous_callers_and_speaks_openais_error_shape() -> None:
    with FakeOpenAI(model="gpt-fake") as fake, httpx.Client(base_url=fake.base_url + "/") as client:
        assert client.get("models").json()["data"][0]["id"] == "gpt-fake"
        fake.fail_next(429, retry_after=2)
        limited = client.post("chat/completions", json={"model": "m", "messages": PROMPT})
        answered = client.post("chat/completions", json={"model": "m", "messages": PROMPT}).json()

    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(limited.json()["error"]) == {"message", "type", "param", "code"}
    assert answered["object"] == "chat.completion" and answered["model"] == "gpt-fake"
    assert answered["choices"][0]["finish_reason"] == "stop"
    usage = answered["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
