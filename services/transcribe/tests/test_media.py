"""A voice note's bytes from Evolution on every channel, with the instance's own key: the wire format, the
refusals, and what is retried, redelivered or given up."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from papo_common.evolution import (
    ApiKeys,
    EvolutionClient,
    EvolutionMisconfigured,
    EvolutionUnavailable,
    RetryPolicy,
)
from papo_testing.fake_evolution import BUSINESS, EVOLUTION, FakeEvolution, FakeMedia
from papo_transcribe.audio import AudioRejected
from papo_transcribe.media import VoiceNoteMedia, media_url

from .conftest import clip_base64

# The webhook `data` of a Baileys voice note (what ingest passes as `media_request`).
BAILEYS_NOTE: dict[str, Any] = {
    "key": {"id": "3A0001", "remoteJid": "5511999990000@s.whatsapp.net", "fromMe": False},
    "message": {"audioMessage": {"mimetype": "audio/ogg; codecs=opus", "ptt": True, "seconds": 4}},
    "messageType": "audioMessage",
}
# ... and of a Cloud API one: Meta's `audio` object (a media id, no URL) as Evolution 2.3.7 rewrites it.
BUSINESS_NOTE: dict[str, Any] = {
    "key": {"id": "wamid.HBgNNTUxMTk5OTk5MDAwMBUCABIYFjNFQjA", "remoteJid": "5511999990000@s.whatsapp.net"},
    "pushName": "Ana",
    "message": {
        "audioMessage": {
            "mime_type": "audio/ogg; codecs=opus",
            "sha256": "ZmFrZQ==",
            "id": "1234567890123456",
            "voice": True,
            "ptt": True,
        }
    },
    "messageType": "audioMessage",
    "messageTimestamp": 1764580000,
    "source": "unknown",
}
FAST = RetryPolicy(attempts=3, base_seconds=0.01, max_seconds=0.02)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def media_for(
    url: str,
    http: httpx.AsyncClient,
    keys: ApiKeys | None = None,
    *,
    max_bytes: int = 1024 * 1024,
    timeout: float = 2.0,
) -> VoiceNoteMedia:
    client = EvolutionClient(http, url, keys or ApiKeys(SecretStr("evo-key")), timeout)
    return VoiceNoteMedia(client, max_bytes=max_bytes, policy=FAST)


@pytest.mark.integration
class TestAgainstTheFake:
    @pytest.fixture
    async def evolution(self) -> AsyncIterator[FakeEvolution]:
        async with FakeEvolution(
            {"loja": "loja-key", "clinica": "clinica-key", "cloud": "cloud-key", "generic": "generic-key"},
            channels={"cloud": BUSINESS, "generic": EVOLUTION},
            simulate_delays=False,
        ) as fake:
            fake.add_media("3A0001", FakeMedia(clip_base64("en_table.ogg")))
            fake.add_media(BUSINESS_NOTE["key"]["id"], FakeMedia(clip_base64("en_weather.ogg")))
            yield fake

    @pytest.fixture
    def keys(self) -> ApiKeys:
        """Per-instance keys and no global key: the deployment transcribe once sent an empty key for."""
        return ApiKeys(
            SecretStr(""),
            {name: SecretStr(f"{name}-key") for name in ("loja", "clinica", "cloud", "generic")},
        )

    async def test_a_note_is_fetched_with_the_instances_own_key_in_evolutions_request_shape(
        self, evolution: FakeEvolution, http: httpx.AsyncClient, keys: ApiKeys
    ) -> None:
        media = media_for(evolution.url, http, keys)
        assert await media.fetch_base64("loja", BAILEYS_NOTE) == clip_base64("en_table.ogg")
        [request] = evolution.requests_to("getBase64FromMediaMessage")
        assert request.path == "/chat/getBase64FromMediaMessage/loja"
        assert request.headers["apikey"] == "loja-key"
        assert request.json == {"message": BAILEYS_NOTE, "convertToMp4": False}

    async def test_a_cloud_api_note_is_fetched_through_evolution_from_meta(
        self, evolution: FakeEvolution, http: httpx.AsyncClient, keys: ApiKeys
    ) -> None:
        media = media_for(evolution.url, http, keys)
        assert await media.fetch_base64("cloud", BUSINESS_NOTE) == clip_base64("en_weather.ogg")
        [request] = evolution.requests_to("getBase64FromMediaMessage")
        assert (request.headers["apikey"], request.status) == ("cloud-key", 201)

    async def test_a_media_url_is_downloaded_directly_without_the_api_key(
        self, evolution: FakeEvolution, http: httpx.AsyncClient, keys: ApiKeys
    ) -> None:
        note = {
            **BAILEYS_NOTE,
            "message": {**BAILEYS_NOTE["message"], "mediaUrl": evolution.media_url("3A0001")},
        }
        media = media_for(evolution.url, http, keys)
        assert await media.fetch_base64("generic", note) == clip_base64("en_table.ogg")
        [download] = evolution.requests
        assert (download.method, download.status) == ("GET", 200)
        assert "apikey" not in download.headers

    async def test_the_evolution_channel_without_a_media_url_cannot_provide_the_note(
        self, evolution: FakeEvolution, http: httpx.AsyncClient, keys: ApiKeys
    ) -> None:
        media = media_for(evolution.url, http, keys)
        with pytest.raises(AudioRejected, match="Method not available on Evolution Channel"):
            await media.fetch_base64("generic", BAILEYS_NOTE)
        assert len(evolution.requests) == 1

    async def test_media_evolution_cannot_provide_is_a_clear_failure_not_retried(
        self, evolution: FakeEvolution, http: httpx.AsyncClient
    ) -> None:
        gone = {**BAILEYS_NOTE, "key": {"id": "expired"}}
        with pytest.raises(AudioRejected, match=r"Evolution could not provide the audio .*Message not found"):
            await media_for(evolution.url, http, ApiKeys(SecretStr("loja-key"))).fetch_base64("loja", gone)
        assert len(evolution.requests_to("getBase64FromMediaMessage")) == 1

    async def test_server_errors_are_retried(self, evolution: FakeEvolution, http: httpx.AsyncClient) -> None:
        evolution.fail_next("getBase64FromMediaMessage", 503, times=2)
        media = media_for(evolution.url, http, ApiKeys(SecretStr("loja-key")))
        assert await media.fetch_base64("loja", BAILEYS_NOTE) == clip_base64("en_table.ogg")
        assert len(evolution.requests_to("getBase64FromMediaMessage")) == 3

    async def test_persistent_server_errors_mean_redelivery_later(
        self, evolution: FakeEvolution, http: httpx.AsyncClient
    ) -> None:
        evolution.fail_next("getBase64FromMediaMessage", 500, times=10)
        with pytest.raises(EvolutionUnavailable, match="after 3 attempts"):
            await media_for(evolution.url, http, ApiKeys(SecretStr("loja-key"))).fetch_base64(
                "loja", BAILEYS_NOTE
            )
        assert len(evolution.requests_to("getBase64FromMediaMessage")) == 3

    async def test_a_timeout_is_retried(self, evolution: FakeEvolution, http: httpx.AsyncClient) -> None:
        evolution.hang_next("getBase64FromMediaMessage", 1.5)
        media = media_for(evolution.url, http, ApiKeys(SecretStr("loja-key")), timeout=0.3)
        assert await media.fetch_base64("loja", BAILEYS_NOTE) == clip_base64("en_table.ogg")

    async def test_a_wrong_key_is_a_configuration_error_said_loudly_once_and_redelivered(
        self, evolution: FakeEvolution, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        media = media_for(evolution.url, http, ApiKeys(SecretStr("wrong-secret")))
        with caplog.at_level(logging.ERROR), pytest.raises(EvolutionMisconfigured, match="401"):
            await media.fetch_base64("loja", BAILEYS_NOTE)
        assert len(evolution.requests_to("getBase64FromMediaMessage")) == 1, "no 401 retries"
        assert "configuration problem" in caplog.text
        assert "wrong-secret" not in caplog.text

    async def test_an_oversize_download_is_refused_while_streaming(
        self, evolution: FakeEvolution, http: httpx.AsyncClient
    ) -> None:
        media = media_for(
            evolution.url, http, ApiKeys(SecretStr("loja-key")), max_bytes=1024
        )  # the clip is 9 KB
        with pytest.raises(AudioRejected, match="larger than the 1024-byte limit"):
            await media.fetch_base64("loja", BAILEYS_NOTE)


async def test_a_missing_key_is_a_configuration_error_and_nothing_is_sent() -> None:
    def never(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request without a key")

    async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as http:
        media = media_for("http://evolution.invalid", http, ApiKeys(SecretStr(""), {"loja": SecretStr("k")}))
        with pytest.raises(EvolutionMisconfigured, match="PAPO_EVOLUTION_API_KEYS"):
            await media.fetch_base64("clinica", BAILEYS_NOTE)


async def test_an_unreachable_evolution_means_redelivery_later() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        with pytest.raises(EvolutionUnavailable, match="unreachable"):
            await media_for("http://evolution.invalid", http).fetch_base64("loja", BAILEYS_NOTE)


async def test_an_answer_without_audio_is_a_clear_failure() -> None:
    def empty(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, json={"mediaType": "audioMessage", "base64": "", "mimetype": "audio/ogg"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(empty)) as http:
        with pytest.raises(AudioRejected, match="without the media"):
            await media_for("http://evolution.invalid", http).fetch_base64("loja", BAILEYS_NOTE)


@pytest.mark.parametrize(
    ("message", "url"),
    [
        ({"audioMessage": {}, "mediaUrl": "https://s3.example/evo/a.ogg"}, "https://s3.example/evo/a.ogg"),
        ({"audioMessage": {}, "mediaUrl": "file:///etc/passwd"}, None),
        ({"audioMessage": {}}, None),
    ],
)
def test_only_an_http_media_url_is_followed(message: dict[str, Any], url: str | None) -> None:
    assert media_url({"message": message}) == url
