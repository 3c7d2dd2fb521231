"""Speech-to-text engines behind one interface, picked by `PAPO_TRANSCRIBE_ENGINE`."""

from __future__ import annotations

import logging
import os

from papo_transcribe.engines.base import SAMPLE_RATE, DecodeOptions, Engine, EngineResult, Segment
from papo_transcribe.model_locator import resolve_model
from papo_transcribe.settings import EngineName, TranscribeSettings

logger = logging.getLogger(__name__)


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def engine_name(settings: TranscribeSettings) -> EngineName:
    """The configured engine, or transformers when a GPU is there and faster-whisper otherwise."""
    if settings.transcribe_engine is not None:
        return settings.transcribe_engine
    return "transformers" if settings.transcribe_device != "cpu" and cuda_available() else "faster-whisper"


def device(settings: TranscribeSettings, engine: EngineName) -> str:
    """`cpu` or `cuda` for this engine."""
    if settings.transcribe_device != "auto":
        return settings.transcribe_device
    if engine == "transformers":
        return "cuda" if cuda_available() else "cpu"
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def decode_options(settings: TranscribeSettings) -> DecodeOptions:
    return DecodeOptions(
        language=settings.transcribe_language,
        beam_size=settings.transcribe_beam_size,
        temperature=settings.transcribe_temperature,
        no_speech_threshold=settings.transcribe_no_speech_threshold,
    )


def _usable_cores() -> int:
    """Cores this process may run on (a container's CPU set), not the host's."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def load_engine(settings: TranscribeSettings) -> Engine:
    """Find the model and load it (blocking: seconds to minutes; call it off the event loop)."""
    name = engine_name(settings)
    on = device(settings, name)
    model = resolve_model(name, settings.transcribe_model)
    threads = settings.transcribe_cpu_threads or _usable_cores()
    logger.info("loading speech model", extra={"engine": name, "device": on, "model": model})
    if name == "transformers":
        from papo_transcribe.engines.transformers import TransformersEngine

        return TransformersEngine(model, device=on, options=decode_options(settings), cpu_threads=threads)
    from papo_transcribe.engines.faster_whisper import FasterWhisperEngine

    return FasterWhisperEngine(model, device=on, options=decode_options(settings), cpu_threads=threads)


__all__ = [
    "SAMPLE_RATE",
    "DecodeOptions",
    "Engine",
    "EngineResult",
    "Segment",
    "decode_options",
    "device",
    "engine_name",
    "load_engine",
]
