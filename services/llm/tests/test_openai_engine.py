"""The OpenAI-compatible engine: the SDK's wire format, papo's retries, the circuit breaker, what is permanent.

Tests against the fake server (a real HTTP server on 127.0.0.1) are integration tests; the rest answer through
an in-process mock transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import openai
import pytest

from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.resilience import CircuitBreaker, CircuitOpen
from papo_llm.engines import CompletionFailed, make_engine
from papo_llm.engines.openai import OpenAIChatEngine
from papo_llm.settings import LlmSettings
from papo_testing.fake_openai import FakeOpenAI

PROMPT: list[Any] = [{"role": "system", "content": "S"}, {"role": "user", "content": "oi"}]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def ai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


def engine_for(
    base_url: str,
    *,
    max_attempts: int = 3,
    timeout: float = 5.0,
    http_client: httpx2.AsyncClient | None = None,
    breaker: CircuitBreaker | None = None,
) -> tuple[OpenAIChatEngine, list[float]]:
    pauses: list[float] = []

    async def record_pause(seconds: float) -> None:
        pauses.append(seconds)

    client = openai.AsyncOpenAI(
        api_key="sk-test",
        base_url=base_url,
        timeout=timeout,
        max_retries=0,
        # the transport `from_settings` uses, so timeouts and refusals read as they will in production
        http_client=http_client or openai.DefaultAioHttpClient(timeout=timeout),
    )
    engine = OpenAIChatEngine(
        client,
        model="gpt-test",
        temperature=0.3,
        max_tokens=50,
        max_attempts=max_attempts,
        backoff_base_seconds=0.2,
        backoff_max_seconds=2.0,
        breaker=breaker or CircuitBreaker("model server", threshold=100, clock=Clock()),
        sleep=record_pause,
    )
    return engine, pauses


def mock_engine(payload: Any, status: int = 200, **kwargs: Any) -> tuple[OpenAIChatEngine, list[float]]:
    """An engine whose every request is answered in process with `payload` (bytes, JSON, or a callable)."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        body = payload(request) if callable(payload) else payload
        if isinstance(body, httpx2.Response):
            return body
        if isinstance(body, bytes):
            return httpx2.Response(status, content=body)
        return httpx2.Response(status, json=body)

    client = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    return engine_for("http://llm.local/v1", http_client=client, **kwargs)


def error(status: int, code: str | None = None, *, retry_after: str | None = None) -> httpx2.Response:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    body = {"error": {"message": "m", "type": "server_error", "param": None, "code": code}}
    return httpx2.Response(status, json=body, headers=headers)


class Script:
    """Answers the given responses in turn, then a completion."""

    def __init__(self, *responses: httpx2.Response) -> None:
        self.responses = list(responses)
        self.statuses: list[int] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        response = self.responses.pop(0) if self.responses else httpx2.Response(200, json=completion("oi"))
        self.statuses.append(response.status_code)
        return response


def completion(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-test",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


# --- against the fake server (integration) -----------------------------------------------------------------


@pytest.mark.integration
async def test_a_completion_sends_the_configured_body_and_reads_text_usage_and_model(ai: FakeOpenAI) -> None:
    ai.model = "gpt-test-2025-01-01"
    engine, _ = engine_for(ai.base_url)

    answer = await engine.complete(PROMPT)

    assert answer.text == "[fake reply to 2 messages] oi"
    assert answer.model == "gpt-test-2025-01-01"
    assert answer.prompt_tokens > 0 and answer.completion_tokens > 0
    assert ai.requests[0].body == {
        "model": "gpt-test",
        "messages": PROMPT,
        "temperature": 0.3,
        "max_tokens": 50,
    }
    await engine.aclose()


@pytest.mark.integration
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


@pytest.mark.integration
async def test_the_fakes_errors_read_as_the_sdks_typed_errors(ai: FakeOpenAI) -> None:
    ai.fail_next(429, retry_after=1.5)
    ai.fail_next(401)
    engine, pauses = engine_for(ai.base_url)

    with pytest.raises(CompletionFailed, match=r"HTTP 401 .*code=invalid_api_key") as failure:
        await engine.complete(PROMPT)

    assert pauses == [1.5], "the 429 waited its Retry-After"
    assert "sk-" not in str(failure.value)
    await engine.aclose()


@pytest.mark.integration
async def test_a_hung_server_is_a_timeout_and_retried(ai: FakeOpenAI) -> None:
    ai.hang_next()
    engine, pauses = engine_for(ai.base_url, timeout=0.3)

    answer = await engine.complete(PROMPT)

    assert answer.text.endswith("oi") and len(pauses) == 1
    await engine.aclose()


@pytest.mark.integration
async def test_a_refused_connection_is_retried_then_unavailable() -> None:
    engine, pauses = engine_for("http://127.0.0.1:9/v1", max_attempts=2)

    with pytest.raises(DependencyUnavailable) as failure:
        await engine.complete(PROMPT)
    assert not isinstance(failure.value, PermanentError)
    assert len(pauses) == 1
    await engine.aclose()


@pytest.mark.integration
async def test_fake_concurrency_is_recorded(ai: FakeOpenAI) -> None:
    ai.latency = 0.2
    engine, _ = engine_for(ai.base_url)

    await asyncio.gather(engine.complete(PROMPT), engine.complete(PROMPT))

    assert ai.max_in_flight == 2 and ai.requests[0].overlaps(ai.requests[1])
    await engine.aclose()


@pytest.mark.integration
def test_the_fake_also_runs_for_synchronous_callers_and_speaks_openais_error_shape() -> None:
    with FakeOpenAI(model="gpt-fake") as fake, httpx2.Client(base_url=fake.base_url + "/") as client:
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


# --- in process ----------------------------------------------------------------------------------------------


async def test_server_errors_are_retried_with_backoff() -> None:
    script = Script(error(500), error(502))
    engine, pauses = mock_engine(script)

    answer = await engine.complete(PROMPT)

    assert answer.text == "oi" and script.statuses == [500, 502, 200]
    assert len(pauses) == 2 and all(0 <= p <= 2.0 for p in pauses)


async def test_a_rate_limit_waits_at_least_its_retry_after_within_the_cap() -> None:
    engine, pauses = mock_engine(Script(error(429, retry_after="1.5"), error(429, retry_after="60")))

    await engine.complete(PROMPT)

    assert pauses == [1.5, 2.0]


async def test_transient_failures_that_outlast_every_attempt_mean_the_model_is_unavailable() -> None:
    script = Script(error(503), error(503), error(503))
    engine, pauses = mock_engine(script)

    with pytest.raises(DependencyUnavailable, match="after 3 attempts") as failure:
        await engine.complete(PROMPT)
    assert not isinstance(failure.value, PermanentError), "an outage is redelivered, never dead-lettered"
    assert script.statuses == [503, 503, 503] and len(pauses) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
async def test_a_rejected_request_fails_at_once(status: int) -> None:
    script = Script(error(status, "invalid_api_key"))
    engine, pauses = mock_engine(script)

    with pytest.raises(CompletionFailed, match=f"HTTP {status}"):
        await engine.complete(PROMPT)
    assert script.statuses == [status] and pauses == []


async def test_an_exhausted_quota_is_permanent() -> None:
    engine, _ = mock_engine(Script(error(429, "insufficient_quota")))

    with pytest.raises(CompletionFailed, match="insufficient_quota"):
        await engine.complete(PROMPT)


async def test_a_dead_provider_opens_the_circuit_so_bursts_stop_calling_it_until_the_cool_down() -> None:
    clock = Clock()
    breaker = CircuitBreaker("model server", threshold=3, cool_down=30, clock=clock)
    script = Script(*[error(503)] * 3)
    engine, _ = mock_engine(script, breaker=breaker)
    with pytest.raises(DependencyUnavailable):
        await engine.complete(PROMPT)
    checks = engine.readiness_checks()

    with pytest.raises(CircuitOpen):
        await engine.complete(PROMPT)
    with pytest.raises(CircuitOpen):
        await checks["model_server"]()
    assert len(script.statuses) == 3, "an open circuit makes no request"

    clock.now += 30
    assert (await engine.complete(PROMPT)).text == "oi"
    await checks["model_server"]()


async def test_a_permanent_answer_does_not_open_the_circuit() -> None:
    breaker = CircuitBreaker("model server", threshold=1, clock=Clock())
    engine, _ = mock_engine(Script(error(400)), breaker=breaker)
    with pytest.raises(CompletionFailed):
        await engine.complete(PROMPT)
    assert breaker.state == "closed"


async def test_a_server_without_usage_or_model_still_answers() -> None:
    engine, _ = mock_engine({"choices": [{"message": {"role": "assistant", "content": " Olá! "}}]})
    engine._model = "local"

    answer = await engine.complete(PROMPT)

    assert (answer.text, answer.prompt_tokens) == ("Olá!", 0)


async def test_a_refusal_is_the_answer() -> None:
    engine, _ = mock_engine(
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
    engine, _ = mock_engine(payload)
    with pytest.raises(CompletionFailed):
        await engine.complete(PROMPT)
