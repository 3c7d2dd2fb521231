"""A voice note always ends as a Transcript: its text, or `text=None` with the reason; only transient trouble
raises (to be retried by redelivery)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from pydantic import SecretStr

from papo_common.evolution import EvolutionClient, EvolutionUnavailable, RetryPolicy
from papo_common.metrics import REGISTRY
from papo_testing.fake_evolution import FakeEvolution, FakeMedia
from papo_transcribe.audio import Limits
from papo_transcribe.engines.base import DecodeOptions, Segment
from papo_transcribe.media import VoiceNoteMedia
from papo_transcribe.speech import ModelUnavailable, SpeechModel
from papo_transcribe.transcriber import Transcriber

from .conftest import FakeEngine, clip_base64, voice_note

LIMITS = Limits(max_bytes=1024 * 1024, max_seconds=60)


@pytest.fixture
def evolution() -> FakeEvolution:
    """Served in-process: no socket in the unit tier."""
    return FakeEvolution({"loja": "evo-key"}, simulate_delays=False)


@pytest.fixture
async def make(evolution: FakeEvolution) -> AsyncIterator[Callable[..., Transcriber]]:
    made: list[SpeechModel] = []
    http = httpx.AsyncClient(transport=evolution.transport())
    client = EvolutionClient(http, FakeEvolution.IN_PROCESS_URL, SecretStr("evo-key"), timeout_seconds=5)

    def build(engine: FakeEngine | None = None, limits: Limits = LIMITS) -> Transcriber:
        loaded = engine or FakeEngine()
        speech = SpeechModel(lambda: loaded, name="fake", batch_size=4, batch_wait=0.01)
        media = VoiceNoteMedia(client, max_bytes=limits.max_bytes, policy=RetryPolicy(2, 0.01, 0.01))
        made.append(speech)
        return Transcriber(speech, media, limits, DecodeOptions())

    yield build
    for speech in made:
        await speech.close()
    await http.aclose()


def count(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value("papo_transcriptions_total", {"engine": "fake", "outcome": outcome}) or 0.0
    )


async def test_a_voice_note_becomes_its_transcript(make: Callable[..., Transcriber]) -> None:
    before = count("ok")
    note = voice_note("A1", b64=clip_base64("en_table.ogg"))
    transcript = await make().transcribe(note)
    assert transcript.text == "oi, tudo bem?"
    assert transcript.failure is None
    assert (transcript.message_id, transcript.conversation, transcript.sent_at) == (
        note.message_id, note.conversation, note.sent_at,
    )  # fmt: skip
    assert (transcript.language, transcript.engine) == ("pt", "fake")
    assert 4.5 < (transcript.audio_seconds or 0) < 5
    assert count("ok") == before + 1


async def test_a_note_without_inline_bytes_is_fetched_from_evolution(
    make: Callable[..., Transcriber], evolution: FakeEvolution
) -> None:
    evolution.add_media("3A77", FakeMedia(clip_base64("en_weather.ogg")))
    transcript = await make().transcribe(voice_note("3A77"))
    assert transcript.text == "oi, tudo bem?"
    [request] = evolution.requests_to("getBase64FromMediaMessage")
    assert request.json["message"]["key"]["id"] == "3A77"


@pytest.mark.parametrize(
    ("note", "reason"),
    [
        (voice_note(b64="@@@"), "invalid base64"),
        (voice_note(b64="SGVsbG8sIHdvcmxkIQ=="), "not decodable audio"),
        (voice_note(b64=clip_base64("silence.ogg")), "silent audio"),
        (voice_note(b64=clip_base64("noise.ogg")), "no speech detected in the audio"),
        (
            voice_note(b64=clip_base64("en_table.ogg"), seconds=3600),
            "audio is too long (3600 s; the limit is 60 s)",
        ),
        (
            voice_note(b64=clip_base64("en_table.ogg"), file_length=10**9),
            "audio is larger than the 1048576-byte limit",
        ),
        (voice_note("expired"), "Evolution could not provide the audio ("),
    ],
    ids=["bad-base64", "not-audio", "silent", "noise", "declared-too-long", "declared-too-big", "media-gone"],
)
async def test_a_note_that_cannot_be_understood_is_a_failed_transcript(
    make: Callable[..., Transcriber], note: object, reason: str
) -> None:
    engine = FakeEngine()
    before = count("failed")
    transcript = await make(engine).transcribe(note)
    assert transcript.text is None
    assert transcript.failure is not None and transcript.failure.startswith(reason)
    assert transcript.text_for_prompt == "[áudio não compreendido]"
    assert engine.batches == [], "the model never saw it"
    assert count("failed") == before + 1


async def test_a_note_longer_than_declared_is_still_capped(make: Callable[..., Transcriber]) -> None:
    note = voice_note(b64=clip_base64("en_table.ogg"), seconds=1)
    transcript = await make(limits=Limits(max_bytes=1024 * 1024, max_seconds=2)).transcribe(note)
    assert transcript.failure is not None and transcript.failure.startswith("audio is too long")


async def test_only_hallucinated_text_is_a_failed_transcript(make: Callable[..., Transcriber]) -> None:
    engine = FakeEngine(segments=lambda _audio: [Segment(" Legendas pela comunidade Amara.org")])
    transcript = await make(engine).transcribe(voice_note(b64=clip_base64("en_table.ogg")))
    assert (transcript.text, transcript.failure) == (None, "no speech recognised")
    assert transcript.audio_seconds is not None


async def test_evolution_down_raises_for_redelivery(
    make: Callable[..., Transcriber], evolution: FakeEvolution
) -> None:
    evolution.fail_next("getBase64FromMediaMessage", 502, times=5)
    with pytest.raises(EvolutionUnavailable):
        await make().transcribe(voice_note("3A78"))


async def test_notes_wait_for_the_model_and_readiness_follows_it() -> None:
    release = threading.Event()

    def slow_load() -> FakeEngine:
        release.wait(10)
        return FakeEngine()

    speech = SpeechModel(slow_load, name="fake", batch_size=2, batch_wait=0.01)
    speech.start_loading()
    with pytest.raises(ModelUnavailable, match="loading"):
        await speech.ready()
    pending = asyncio.create_task(speech.transcribe(clip_samples()))
    await asyncio.sleep(0)  # it started, and can only wait while the model is held back
    assert not pending.done()
    release.set()
    assert (await pending).segments[0].text == " oi, tudo bem?"
    await speech.ready()
    await speech.close()


async def test_a_model_that_fails_to_load_is_never_ready_and_notes_are_retried() -> None:
    def broken() -> FakeEngine:
        raise OSError("model.bin: no such file")

    speech = SpeechModel(broken, name="fake", batch_size=2, batch_wait=0.01)
    speech.start_loading()
    with pytest.raises(ModelUnavailable, match="failed to load"):
        await speech.transcribe(clip_samples())
    with pytest.raises(ModelUnavailable, match="no such file"):
        await speech.ready()
    await speech.close()


def clip_samples():  # type: ignore[no-untyped-def]
    from papo_transcribe.audio import prepare

    return prepare(clip_base64("en_table.ogg"), LIMITS)
