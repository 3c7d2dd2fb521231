"""Chat Completions over HTTP: OpenAI itself or any compatible server (vLLM, Ollama, llama.cpp server)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from papo_common.service import ReadinessCheck
from papo_llm.engines.base import ChatMessage, Completion, CompletionFailed
from papo_llm.engines.retry import Backoff, TransientFailure, is_retryable, parse_retry_after
from papo_llm.settings import LlmSettings

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class OpenAIChatEngine:
    """`POST {base_url}/chat/completions`, retrying rate limits, server errors and network trouble with
    backoff; anything else, or running out of attempts, raises `CompletionFailed`."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        model: str,
        temperature: float,
        max_tokens: int,
        max_attempts: int,
        backoff: Backoff,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> OpenAIChatEngine:
        headers = {"User-Agent": "papo-llm"}
        if settings.llm_api_key is not None:
            headers["Authorization"] = f"Bearer {settings.llm_api_key.get_secret_value()}"
        timeout = settings.llm_timeout_seconds
        client = httpx.AsyncClient(
            base_url=settings.llm_base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
        )
        return cls(
            client,
            model=settings.llm_model,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            max_attempts=settings.llm_max_attempts,
            backoff=Backoff(settings.llm_backoff_base_seconds, settings.llm_backoff_max_seconds),
        )

    @property
    def model(self) -> str:
        return self._model

    async def start(self) -> None:
        """Nothing to prepare: the server is reached on the first completion."""

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        return {}

    async def complete(self, messages: list[ChatMessage]) -> Completion:
        """One completion, retried on transient failures up to the configured number of attempts."""
        body = {
            "model": self._model,
            "messages": messages,
            "temperature": self._temperature,
            "max_tokens": self._max_tokens,
        }
        for attempt in range(1, self._max_attempts + 1):
            try:
                return await self._attempt(body)
            except TransientFailure as failure:
                if attempt == self._max_attempts:
                    raise CompletionFailed(f"gave up after {attempt} attempts: {failure.reason}") from failure
                delay = self._backoff.delay(attempt, retry_after=failure.retry_after)
                logger.warning(
                    "chat completion failed, retrying",
                    extra={"reason": failure.reason, "attempt": attempt, "retry_in_seconds": round(delay, 2)},
                )
                await self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _attempt(self, body: dict[str, Any]) -> Completion:
        try:
            response = await self._client.post("chat/completions", json=body)
        except httpx.TimeoutException as error:
            raise TransientFailure(f"timeout ({type(error).__name__})") from error
        except httpx.TransportError as error:
            raise TransientFailure(f"connection error ({type(error).__name__})") from error
        if response.status_code >= 400:
            raise _error_for(response)
        return parse_completion(response, fallback_model=self._model)


def _error_for(response: httpx.Response) -> Exception:
    code: str | None = None
    kind: str | None = None
    try:
        error = response.json().get("error") or {}
        code, kind = error.get("code"), error.get("type")
    except (ValueError, AttributeError):
        pass
    # Only the status, type and code: a 401's message quotes part of the key.
    reason = f"HTTP {response.status_code} (type={kind}, code={code})"
    if is_retryable(response.status_code, code):
        return TransientFailure(reason, retry_after=parse_retry_after(response.headers.get("retry-after")))
    return CompletionFailed(f"model server refused the request: {reason}")


def parse_completion(response: httpx.Response, *, fallback_model: str) -> Completion:
    """The first choice's text and the usage of a Chat Completions response; `CompletionFailed` when the
    body is not one, or carries no text."""
    try:
        payload = response.json()
        message = payload["choices"][0]["message"]
        # A refusal is the model's own words to the person, so it is sent like any answer.
        text = message.get("content") or message.get("refusal") or ""
        usage = payload.get("usage") or {}
        completion = Completion(
            text=str(text).strip(),
            model=str(payload.get("model") or fallback_model),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as error:
        raise CompletionFailed(f"unparseable chat completion ({type(error).__name__})") from error
    if not completion.text:
        raise CompletionFailed("the chat completion carried no text")
    return completion
