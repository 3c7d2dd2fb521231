"""The transcribe service: `create_app()` builds it, `main()` runs it (`papo transcribe` / the container)."""

from __future__ import annotations

import httpx
from faststream.asgi import AsgiFastStream

from papo_common.evolution import EvolutionClient, RetryPolicy
from papo_common.service import consumer_app, make_service_broker, serve
from papo_transcribe import engines
from papo_transcribe.audio import Limits
from papo_transcribe.handlers import register
from papo_transcribe.media import VoiceNoteMedia
from papo_transcribe.settings import TranscribeSettings
from papo_transcribe.speech import SpeechModel
from papo_transcribe.transcriber import Transcriber


def create_app(
    settings: TranscribeSettings | None = None, *, model: SpeechModel | None = None
) -> AsgiFastStream:
    """The ASGI app: consumer, `/healthz`, `/readyz` (not ready until the model has loaded), `/metrics`.

    `model` lets tests share one loaded model between apps.
    """
    settings = settings or TranscribeSettings()
    broker = make_service_broker("transcribe", settings)
    engine = engines.engine_name(settings)
    owns_model = model is None
    if model is None:
        model = SpeechModel(
            lambda: engines.load_engine(settings),
            name=engine,
            # faster-whisper decodes one note at a time; batching would only make the first note wait.
            batch_size=settings.transcribe_batch_size if engine == "transformers" else 1,
            batch_wait=settings.transcribe_batch_wait_ms / 1000,
        )
    http = httpx.AsyncClient()
    media = VoiceNoteMedia(
        EvolutionClient(
            http, settings.evolution_url, settings.evolution_keys(), settings.evolution_timeout_seconds
        ),
        max_bytes=settings.transcribe_max_bytes,
        policy=RetryPolicy(
            settings.transcribe_fetch_attempts,
            settings.transcribe_fetch_backoff_seconds,
            max(8.0, settings.transcribe_fetch_backoff_seconds),
        ),
    )
    limits = Limits(
        settings.transcribe_max_bytes, settings.transcribe_max_seconds, vad=settings.transcribe_vad
    )
    register(
        broker,
        Transcriber(model, media, limits, engines.decode_options(settings)),
        horizon_seconds=settings.redelivery_horizon_seconds,
    )

    async def start_loading() -> None:
        model.start_loading()  # in the background: /healthz and /readyz answer meanwhile

    async def release() -> None:
        if owns_model:
            await model.close()
        await http.aclose()

    app = consumer_app(broker, checks={"model": model.ready}, on_startup=[start_loading])
    # After the broker stopped: in-flight notes finish (graceful timeout) before the model and client go.
    app.after_shutdown(release)
    return app


def main() -> None:
    settings = TranscribeSettings()
    serve(create_app(settings), settings)
