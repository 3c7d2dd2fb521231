"""Chat Completions through the `openai` SDK: OpenAI itself or any compatible server (vLLM, Ollama,
llama.cpp server).

Retries are papo's one policy (`papo_common.resilience.retry_transient`), not the SDK's: its `max_retries`
is 0, so attempts are not multiplied by two retry layers, every attempt is seen by the circuit breaker, and a
test can replace the sleep. The policy honours the server's `Retry-After`. Transient failures that outlast
every attempt raise `DependencyUnavailable` (the burst is redelivered later); after
`PAPO_LLM_CIRCUIT_FAILURES` of them in a row the circuit opens and bursts are handed back without calling
the server until `PAPO_LLM_CIRCUIT_COOL_DOWN_SECONDS` have passed. A rejected request is `CompletionFailed`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from papo_common.resilience import CircuitBreaker, retry_transient
from papo_common.service import ReadinessCheck
from papo_llm.engines.base import ChatMessage, Completion, CompletionFailed
from papo_llm.engines.retry import ModelUnavailable, is_retryable, parse_retry_after, retry_after_of
from papo_llm.settings import LlmSettings

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class OpenAIChatEngine:
    """One chat completion per call, retried by papo's policy and guarded by a circuit breaker."""

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        model: str,
        temperature: float,
        max_tokens: int,
        max_attempts: int,
        backoff_base_seconds: float,
        backoff_max_seconds: float,
        breaker: CircuitBreaker,
        keyless: bool = False,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._client = client
        self._model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base_seconds
        self._backoff_max = backoff_max_seconds
        self._breaker = breaker
        # A keyless server (a local vLLM or Ollama) gets no Authorization header at all.
        self._extra_headers: dict[str, Any] = {"Authorization": openai.omit} if keyless else {}
        self._sleep = sleep

    @classmethod
    def from_settings(cls, settings: LlmSettings) -> OpenAIChatEngine:
        timeout = openai.Timeout(
            settings.llm_timeout_seconds, connect=min(10.0, settings.llm_timeout_seconds)
        )
        key = settings.llm_api_key
        client = openai.AsyncOpenAI(
            api_key=key.get_secret_value() if key is not None else None,
            base_url=settings.llm_base_url,
            timeout=timeout,
            max_retries=0,
            default_headers={"User-Agent": "papo-llm"},
            _enforce_credentials=False,
            # The SDK's aiohttp transport: with 64 turns in flight, httpx's pool checked every pooled
            # connection's socket on every request (a tenth of the llm's CPU); at 16 in flight a turn cost
            # 2.45-2.78x a raw round trip with httpx, 1.68-1.75x with aiohttp, in the same run
            # (bench/llm_turns.py, docs/performance.md).
            http_client=openai.DefaultAioHttpClient(timeout=timeout),
        )
        return cls(
            client,
            model=settings.llm_model,
            temperature=settings.llm_temperature,
            max_tokens=settings.llm_max_tokens,
            max_attempts=settings.llm_max_attempts,
            backoff_base_seconds=settings.llm_backoff_base_seconds,
            backoff_max_seconds=settings.llm_backoff_max_seconds,
            breaker=CircuitBreaker(
                "model server",
                threshold=settings.llm_circuit_failures,
                cool_down=settings.llm_circuit_cool_down_seconds,
            ),
            keyless=key is None,
        )

    @property
    def model(self) -> str:
        return self._model

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    async def start(self) -> None:
        """Nothing to prepare: the server is reached on the first completion."""

    def readiness_checks(self) -> dict[str, ReadinessCheck]:
        """`model_server` fails while the circuit is open (the server kept failing): not probed otherwise."""
        return {"model_server": self._breaker.readiness}

    async def complete(self, messages: list[ChatMessage]) -> Completion:
        """One completion; `DependencyUnavailable` when the server stays unavailable (or the circuit is open),
        `CompletionFailed` when it refuses the request."""
        policy = retry_transient(
            attempts=self._max_attempts,
            base_wait=self._backoff_base,
            max_wait=self._backoff_max,
            transient=(ModelUnavailable,),
            retry_after=retry_after_of,
            what="chat completion",
            sleep=self._sleep,
        )
        response: ChatCompletion = await policy(self._attempt, messages)
        return parse_completion(response, fallback_model=self._model)

    async def aclose(self) -> None:
        await self._client.close()

    async def _attempt(self, messages: list[ChatMessage]) -> ChatCompletion:
        with self._breaker.guard((ModelUnavailable,)):
            try:
                # `post` rather than `chat.completions.create`: the body is already plain JSON, and create's
                # walk over its TypedDict annotations cost a third of the SDK's CPU per call (bench/llm_turns.py)
                return await self._client.post(
                    "/chat/completions",
                    body={
                        "model": self._model,
                        "messages": messages,
                        "temperature": self._temperature,
                        "max_tokens": self._max_tokens,
                    },
                    cast_to=ChatCompletion,
                    options={"headers": self._extra_headers},
                )
            except openai.APITimeoutError as error:
                raise ModelUnavailable("timeout") from error
            except openai.APIConnectionError as error:
                raise ModelUnavailable(f"connection error ({type(error.__cause__).__name__})") from error
            except openai.APIStatusError as error:
                raise _classify(error) from error
            except openai.APIResponseValidationError as error:
                raise CompletionFailed("unparseable chat completion") from error


def _classify(error: openai.APIStatusError) -> Exception:
    body: dict[str, Any] = error.body if isinstance(error.body, dict) else {}
    # `body` is the error object itself for OpenAI errors; some servers nest it under "error"
    nested = body.get("error")
    detail: dict[str, Any] = nested if isinstance(nested, dict) else body
    code, kind = detail.get("code"), detail.get("type")
    # Only the status, type and code: a 401's message quotes part of the key.
    reason = f"HTTP {error.status_code} (type={kind}, code={code})"
    if is_retryable(error.status_code, code if isinstance(code, str) else None):
        return ModelUnavailable(
            reason, retry_after=parse_retry_after(error.response.headers.get("retry-after"))
        )
    return CompletionFailed(f"model server refused the request: {reason}")


def parse_completion(response: ChatCompletion, *, fallback_model: str) -> Completion:
    """The first choice's text and the usage of a chat completion; `CompletionFailed` when the body is not
    one (the SDK does not validate a server's answer strictly), or carries no text."""
    try:
        message = response.choices[0].message
        # A refusal is the model's own words to the person, so it is sent like any answer.
        text = str(message.content or message.refusal or "").strip()
        usage = response.usage
        completion = Completion(
            text=text,
            model=str(response.model or fallback_model),
            prompt_tokens=int(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=int(usage.completion_tokens or 0) if usage else 0,
        )
    except (AttributeError, IndexError, TypeError, ValueError) as error:
        raise CompletionFailed(f"unparseable chat completion ({type(error).__name__})") from error
    if not completion.text:
        raise CompletionFailed("the chat completion carried no text")
    return completion
