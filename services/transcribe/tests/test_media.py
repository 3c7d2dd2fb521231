"""Downloading a voice note from Evolution: its wire format, its refusals, and retries of what is transient."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from papo_testing.fake_evolution import FakeEvolution, FakeMedia
from papo_transcribe.audio import AudioRejected
from papo_transcribe.media import EvolutionMedia, MediaUnavailable

from .conftest import clip_base64

REQUEST = {
    "key": {"id": "3A0001", "remoteJid": "5511999990000@s.whatsapp.net"},
    "message": {"audioMessage": {}},
}


@pytest.fixture
async def evolution() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution({"loja": "evo-key"}, simulate_delays=False) as fake:
        fake.add_media("3A0001", FakeMedia(clip_base64("en_table.ogg")))
        yield fake


def client(url: str, *, key: str = "evo-key", **kwargs: object) -> EvolutionMedia:
    options: dict[str, object] = {"max_bytes": 1024 * 1024, "attempts": 3, "backoff": 0.01, "timeout": 2.0}
    return EvolutionMedia(url, SecretStr(key), **{**options, **kwargs})  # type: ignore[arg-type]


async def test_fetches_the_base64_with_evolutions_request_shape(evolution: FakeEvolution) -> None:
    media = client(evolution.url)
    assert await media.fetch_base64("loja", REQUEST) == clip_base64("en_table.ogg")
    [request] = evolution.requests_to("getBase64FromMediaMessage")
    assert request.path == "/chat/getBase64FromMediaMessage/loja"
    assert request.headers["apikey"] == "evo-key"
    assert request.json == {"message": REQUEST, "convertToMp4": False}
    await media.close()


async def test_media_evolution_cannot_provide_is_a_clear_failure(evolution: FakeEvolution) -> None:
    media = client(evolution.url)
    gone = {**REQUEST, "key": {"id": "expired"}}
    with pytest.raises(
        AudioRejected, match=r"Evolution could not provide the audio \(HTTP 400: .*Message not found"
    ):
        await media.fetch_base64("loja", gone)
    assert len(evolution.requests_to("getBase64FromMediaMessage")) == 1, "a 400 is not retried"
    await media.close()


async def test_server_errors_are_retried(evolution: FakeEvolution) -> None:
    evolution.fail_next("getBase64FromMediaMessage", 503, times=2)
    media = client(evolution.url)
    assert await media.fetch_base64("loja", REQUEST) == clip_base64("en_table.ogg")
    assert len(evolution.requests_to("getBase64FromMediaMessage")) == 3
    await media.close()


async def test_persistent_server_errors_give_up_after_the_bounded_attempts(evolution: FakeEvolution) -> None:
    evolution.fail_next("getBase64FromMediaMessage", 500, times=10)
    media = client(evolution.url)
    with pytest.raises(MediaUnavailable, match="failed 3 times: HTTP 500"):
        await media.fetch_base64("loja", REQUEST)
    assert len(evolution.requests_to("getBase64FromMediaMessage")) == 3
    await media.close()


async def test_a_timeout_is_retried(evolution: FakeEvolution) -> None:
    evolution.hang_next("getBase64FromMediaMessage", 1.5)
    media = client(evolution.url, timeout=0.3)
    assert await media.fetch_base64("loja", REQUEST) == clip_base64("en_table.ogg")
    await media.close()


async def test_a_wrong_api_key_is_retried_then_raised_not_published_as_a_failed_note(
    evolution: FakeEvolution,
) -> None:
    media = client(evolution.url, key="wrong")
    with pytest.raises(MediaUnavailable, match="HTTP 401"):
        await media.fetch_base64("loja", REQUEST)
    await media.close()


async def test_an_unreachable_evolution_is_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    media = client("http://evolution.invalid", transport=httpx.MockTransport(refuse))
    with pytest.raises(MediaUnavailable, match="connection refused"):
        await media.fetch_base64("loja", REQUEST)
    await media.close()


async def test_an_oversize_download_is_refused_while_streaming(evolution: FakeEvolution) -> None:
    media = client(evolution.url, max_bytes=1024)  # the clip is 9 KB, 12 KB as base64
    with pytest.raises(AudioRejected, match="larger than the 1024-byte limit"):
        await media.fetch_base64("loja", REQUEST)
    await media.close()


async def test_an_answer_without_audio_is_a_clear_failure() -> None:
    def empty(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"mediaType": "audioMessage", "base64": "", "mimetype": "audio/ogg"})

    media = client("http://evolution.test", transport=httpx.MockTransport(empty))
    with pytest.raises(AudioRejected, match="Evolution returned no audio"):
        await media.fetch_base64("loja", REQUEST)
    await media.close()
