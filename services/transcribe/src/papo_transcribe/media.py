"""Fetching a voice note's bytes from Evolution API when the webhook did not carry them.

`POST {PAPO_EVOLUTION_URL}/chat/getBase64FromMediaMessage/{instance}` with `apikey` and the body
`{"message": <the webhook's data object>, "convertToMp4": false}`; Evolution answers 201 with
`{"mediaType", "fileName", "caption", "size", "mimetype", "base64", "buffer"}`, or 400 when it cannot
download or decrypt the media (expired, deleted, not a media message).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from papo_transcribe.audio import AudioRejected

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({401, 403, 408, 425, 429})
"""Besides 5xx: a rejected key is an operator's fix away, and a throttled call is worth another try."""
_MAX_BACKOFF_SECONDS = 8.0


class MediaUnavailable(RuntimeError):
    """Evolution could not be reached or kept failing: the message should be retried later."""


class EvolutionMedia:
    """A client for Evolution's media download, with bounded retries on transient failures."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr,
        *,
        max_bytes: int,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        # base64 is 4/3 of the bytes; the rest of the JSON is small.
        self._max_body = max_bytes * 4 // 3 + 8 * 1024
        self._max_bytes = max_bytes
        self._attempts = attempts
        self._backoff = backoff
        self._client = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout, transport=transport)

    async def close(self) -> None:
        await self._client.aclose()

    async def fetch_base64(self, instance: str, media_request: dict[str, Any]) -> str:
        """The note's bytes as base64. Raises `AudioRejected` when Evolution says it cannot provide them,
        `MediaUnavailable` when it kept failing transiently."""
        for attempt in range(1, self._attempts + 1):
            try:
                return await self._once(instance, media_request)
            except (httpx.TransportError, _Transient) as error:
                if attempt == self._attempts:
                    raise MediaUnavailable(
                        f"Evolution media download failed {attempt} times: {error}"
                    ) from error
                pause = random.uniform(0, min(_MAX_BACKOFF_SECONDS, self._backoff * 2 ** (attempt - 1)))
                logger.warning(
                    "Evolution media download failed; retrying",
                    extra={"attempt": attempt, "error": str(error)[:200], "pause_s": round(pause, 2)},
                )
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, instance: str, media_request: dict[str, Any]) -> str:
        url = f"/chat/getBase64FromMediaMessage/{quote(instance, safe='')}"
        body = {"message": media_request, "convertToMp4": False}
        headers = {"apikey": self._api_key.get_secret_value()}
        async with self._client.stream("POST", url, json=body, headers=headers) as response:
            if response.status_code >= 500 or response.status_code in _RETRYABLE_STATUS:
                raise _Transient(f"HTTP {response.status_code}")
            content = bytearray()
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > self._max_body:
                    raise AudioRejected(f"audio is larger than the {self._max_bytes}-byte limit")
        if not response.is_success:
            raise AudioRejected(
                f"Evolution could not provide the audio (HTTP {response.status_code}: "
                f"{_error_message(content)})"
            )
        try:
            payload = json.loads(content)
        except ValueError as error:
            raise _Transient("Evolution answered with invalid JSON") from error
        encoded = payload.get("base64") if isinstance(payload, dict) else None
        if not isinstance(encoded, str) or not encoded:
            raise AudioRejected("Evolution returned no audio for the message")
        return encoded


class _Transient(Exception):
    pass


def _error_message(content: bytes | bytearray) -> str:
    """Evolution's error text (`{"status", "error", "response": {"message": [...]}}`), short."""
    try:
        payload = json.loads(content)
        message = payload.get("response", {}).get("message", payload)
    except (ValueError, AttributeError):
        message = content.decode(errors="replace")
    return str(message)[:200]
