"""The GPU engine: Hugging Face `WhisperForConditionalGeneration` on torch, several notes per forward pass.

fp16 with SDPA attention on CUDA; fp32 on CPU (fp16 matmuls are slow or unsupported there). Notes up to 30 s
are padded to Whisper's 30 s window and decoded together; a batch holding a longer note switches to
sequential long-form generation (timestamps on, previous text not fed back), which is what keeps long notes
out of repetition loops.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from papo_transcribe.engines.base import SAMPLE_RATE, DecodeOptions, EngineResult, Segment

logger = logging.getLogger(__name__)

_WINDOW_FRAMES = 3000
"""Mel frames in Whisper's 30 s window."""

_TOKEN_COMPRESSION_RATIO = 1.35
"""transformers measures compression over token ids, not text: its documented equivalent of Whisper's 2.4."""


class TransformersEngine:
    """A Whisper checkpoint in Hugging Face format (a `save_pretrained` folder or a hub id)."""

    name = "transformers"

    def __init__(self, model: str, *, device: str, options: DecodeOptions, cpu_threads: int) -> None:
        import torch
        import transformers
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if device == "cpu" and cpu_threads:
            torch.set_num_threads(cpu_threads)
        self._torch = torch
        self._device = torch.device(device)
        self._dtype = torch.float16 if device == "cuda" else torch.float32
        # `torch_dtype` was renamed `dtype` in transformers 4.56.
        major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
        dtype_arg = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        loaded: Any = WhisperForConditionalGeneration.from_pretrained(
            model,
            attn_implementation="sdpa",
            **{dtype_arg: self._dtype},  # type: ignore[arg-type]
        )
        self._model: Any = loaded.to(self._device).eval()
        self._processor: Any = WhisperProcessor.from_pretrained(model)
        multilingual = bool(getattr(self._model.generation_config, "is_multilingual", True))
        self.language = options.language if multilingual else "en"
        if self.language != options.language:
            logger.warning("model is English-only: decoding English", extra={"requested": options.language})
        self._generate_kwargs = self._decoding(options, multilingual)

    @staticmethod
    def _decoding(options: DecodeOptions, multilingual: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "num_beams": options.beam_size,
            "do_sample": options.temperature > 0,
            "temperature": options.temperature,
            "condition_on_prev_tokens": False,
            "compression_ratio_threshold": _TOKEN_COMPRESSION_RATIO,
            "logprob_threshold": options.log_prob_threshold,
            "no_speech_threshold": options.no_speech_threshold,
        }
        if multilingual:  # an English-only checkpoint refuses both
            kwargs.update(language=options.language, task="transcribe")
        return kwargs

    def warm_up(self) -> None:
        """A two-token decode of one second of silence: initialises kernels without a full transcription."""
        features = self._features([np.zeros(SAMPLE_RATE, dtype=np.float32)])
        kwargs = {
            key: self._generate_kwargs[key] for key in ("language", "task") if key in self._generate_kwargs
        }
        with self._torch.inference_mode():
            self._model.generate(
                input_features=features["input_features"].to(self._device, self._dtype),
                attention_mask=features["attention_mask"].to(self._device),
                max_new_tokens=2,
                **kwargs,
            )

    def transcribe_batch(self, audios: Sequence[np.ndarray]) -> list[EngineResult]:
        """Decode every note of the batch in one `generate` call."""
        features = self._features(audios)
        long_form = features["input_features"].shape[-1] > _WINDOW_FRAMES
        with self._torch.inference_mode():
            tokens = self._model.generate(
                input_features=features["input_features"].to(self._device, self._dtype),
                attention_mask=features["attention_mask"].to(self._device),
                return_timestamps=long_form,
                **self._generate_kwargs,
            )
        texts = self._processor.batch_decode(tokens, skip_special_tokens=True)
        return [EngineResult(segments=(Segment(text=text),), language=self.language) for text in texts]

    def _features(self, audios: Sequence[np.ndarray]) -> Any:
        extractor = self._processor.feature_extractor
        longest = max(len(audio) for audio in audios)
        if longest <= extractor.n_samples:
            return extractor(
                list(audios), sampling_rate=SAMPLE_RATE, return_tensors="pt", return_attention_mask=True
            )
        # Long-form generation wants the whole note: no truncation, padded to the longest in the batch.
        return extractor(
            list(audios),
            sampling_rate=SAMPLE_RATE,
            return_tensors="pt",
            truncation=False,
            padding="longest",
            return_attention_mask=True,
        )
