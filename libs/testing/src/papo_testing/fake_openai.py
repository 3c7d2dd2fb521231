"""A fake of OpenAI's Chat Completions API: a real HTTP server on 127.0.0.1 speaking the real wire format.

    async with FakeOpenAI() as ai:          # or `with FakeOpenAI() as ai:` for services run as subprocesses
        settings = LlmSettings(llm_base_url=ai.base_url, ...)
        ai.responder = lambda messages: "Olá!"
        ai.fail_next(500, times=2)
        ...
        ai.requests[-1].messages            # what the model was asked

The server runs in its own thread with its own event loop, so it answers whatever the test's loop is doing,
and the same object serves async tests and subprocess-based end-to-end tests.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn

Messages = list[dict[str, Any]]
Responder = Callable[[Messages], str | Awaitable[str]]

_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "The request was invalid."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided: sk-te****st."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Country not supported."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again later."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


def default_responder(messages: Messages) -> str:
    """Deterministic: says how many messages the prompt had and echoes the last user message."""
    last_user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return f"[fake reply to {len(messages)} messages] {last_user}"


def estimate_tokens(text: str) -> int:
    """About four characters a token, like OpenAI's rule of thumb; deterministic for assertions."""
    return max(1, len(text) // 4)


@dataclass
class RecordedRequest:
    """One chat completion request as the server received it. Times are `time.monotonic()`."""

    body: dict[str, Any]
    headers: dict[str, str]
    received_at: float
    finished_at: float | None = None
    status: int | None = None

    @property
    def messages(self) -> Messages:
        return list(self.body.get("messages") or [])

    @property
    def last_user_message(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m.get("role") == "user"), "")

    def overlaps(self, other: RecordedRequest) -> bool:
        """Whether the two requests were being served at the same time."""
        end, other_end = self.finished_at or time.monotonic(), other.finished_at or time.monotonic()
        return self.received_at < other_end and other.received_at < end


@dataclass
class _Failure:
    status: int | None
    """None: hang until the client gives up (or the server stops)."""
    retry_after: float | None = None
    body: dict[str, Any] | None = None


@dataclass
class FakeOpenAI:
    """The fake server. `responder`, `latency` and `model` may be changed while it runs."""

    responder: Responder = default_responder
    latency: float = 0.0
    model: str | None = None
    """The `model` to report; None echoes the request's."""
    api_key: str | None = None
    """When set, requests without `Authorization: Bearer <api_key>` get a 401."""
    requests: list[RecordedRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _failures: deque[_Failure] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None
    _port: int = 0

    @property
    def base_url(self) -> str:
        """What a client sets as its OpenAI base URL (ends in `/v1`)."""
        return f"http://127.0.0.1:{self._port}/v1"

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next `times` chat completions with an OpenAI-shaped error (429 carries `Retry-After`)."""
        if status == 429 and retry_after is None:
            retry_after = 0
        with self._lock:
            self._failures.extend(_Failure(status, retry_after, body) for _ in range(times))

    def hang_next(self, times: int = 1) -> None:
        """Never answer the next `times` chat completions: the client's timeout is what ends them."""
        with self._lock:
            self._failures.extend(_Failure(None) for _ in range(times))

    def reset(self) -> None:
        """Forget recorded requests and pending failures."""
        with self._lock:
            self.requests.clear()
            self._failures.clear()
            self.max_in_flight = self.in_flight

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        """Wait until at least `count` chat completions were received."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"expected {count} requests, got {len(self.requests)}")
            await asyncio.sleep(0.02)
        return list(self.requests)

    # Lifecycle -----------------------------------------------------------------------------------------

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._asgi,
            interface="asgi3",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])), name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeOpenAI:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    # HTTP ----------------------------------------------------------------------------------------------

    async def _asgi(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        route = (scope["method"], scope["path"].rstrip("/"))
        if route == ("POST", "/v1/chat/completions"):
            status, payload, extra = await self._chat_completion(body, headers)
        elif route == ("GET", "/v1/models"):
            status, payload, extra = 200, self._models(), {}
        else:
            status, payload, extra = 404, _error(404, f"Unknown route {scope['path']}"), {}
        raw = json.dumps(payload).encode()
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ]
        response_headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": raw})

    async def _chat_completion(
        self, raw_body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        try:
            body = json.loads(raw_body)
        except ValueError:
            return 400, _error(400, "We could not parse the JSON body of your request."), {}
        record = RecordedRequest(body=body, headers=headers, received_at=time.monotonic())
        with self._lock:
            self.requests.append(record)
            failure = self._failures.popleft() if self._failures else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            status, payload, extra = await self._answer(body, headers, failure)
        finally:
            with self._lock:
                self.in_flight -= 1
                record.finished_at = time.monotonic()
        record.status = status
        return status, payload, extra

    async def _answer(
        self, body: dict[str, Any], headers: dict[str, str], failure: _Failure | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, _error(401), {}
        if failure is not None:
            if failure.status is None:
                await asyncio.Event().wait()
            assert failure.status is not None
            extra = {"retry-after": f"{failure.retry_after:g}"} if failure.retry_after is not None else {}
            return failure.status, failure.body or _error(failure.status), extra
        if not isinstance(body.get("messages"), list) or not body.get("model"):
            return 400, _error(400, "'messages' and 'model' are required properties."), {}
        text = self.responder(body["messages"])
        if inspect.isawaitable(text):
            text = await text
        return 200, self._completion(body, str(text)), {}

    def _completion(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        prompt_tokens = sum(estimate_tokens(str(m.get("content") or "")) for m in body["messages"])
        completion_tokens = estimate_tokens(text)
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model or body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_papo_fake",
        }

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {
                    "id": self.model or "gpt-4o-mini",
                    "object": "model",
                    "created": 1721172741,
                    "owned_by": "system",
                }
            ],
        }


def _error(status: int, message: str | None = None) -> dict[str, Any]:
    kind, code, default_message = _ERRORS.get(status, ("api_error", None, f"HTTP {status}"))
    return {"error": {"message": message or default_message, "type": kind, "param": None, "code": code}}
