"""Loading a chat model and its tokenizer on CPU or GPU. A GGUF file is dequantized once and kept as a
regular checkpoint in a cache folder, so later starts take about a second instead of half a minute."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from papo_llm.engines.model_locator import ModelSource

logger = logging.getLogger(__name__)

# Progress bars are for terminals; a service's log is one record a line.
transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

DeviceSetting = Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to generate, its tokenizer (with the chat template) and where it runs."""

    model: Any
    tokenizer: Any
    device: torch.device


def choose_device(setting: DeviceSetting) -> tuple[torch.device, torch.dtype]:
    """The device and compute dtype: half precision on a GPU (bf16 where supported), float32 on CPU, where
    half precision is slower, not faster."""
    if setting == "cuda" or (setting == "auto" and torch.cuda.is_available()):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.device("cuda"), dtype
    return torch.device("cpu"), torch.float32


def cpu_threads() -> int:
    """Threads torch uses on CPU: half the cores. papo's six services share a small machine, and more threads
    than free cores make every matrix product wait for the slowest one: on 2 busy cores SmolLM2-135M made
    0.7 tokens/s with 2 threads and 6-15 with 1 (`bench/local_model.py`)."""
    return max(1, (os.cpu_count() or 1) // 2)


def default_cache_root() -> Path:
    """`$XDG_CACHE_HOME/papo/models`, or `~/.cache/papo/models`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "papo" / "models"


def cache_folder(source: ModelSource, root: Path) -> Path:
    """Where the dequantized copy of a GGUF model lives. A local file is identified by its path, size and
    modification time, so a replaced file is dequantized again."""
    assert source.gguf_file is not None
    identity = f"{source.name_or_path}|{source.gguf_file}"
    if source.is_local:
        file = (Path(source.name_or_path) / source.gguf_file).resolve()
        stat = file.stat()
        identity = f"{file}|{stat.st_size}|{stat.st_mtime_ns}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return root / f"{source.display_name}-{digest}"


def load_model(source: ModelSource, *, device: DeviceSetting, cache_root: Path) -> LoadedModel:
    """Load `source` (from the GGUF cache when it has a copy) onto the chosen device, in eval mode; on CPU
    with `cpu_threads()` threads."""
    target, dtype = choose_device(device)
    if target.type == "cpu":
        torch.set_num_threads(cpu_threads())
    if source.gguf_file:
        model, tokenizer = _load_gguf(source, cache_root)
    else:
        model = AutoModelForCausalLM.from_pretrained(source.name_or_path, local_files_only=source.is_local)
        tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, local_files_only=source.is_local)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{source.display_name} has no chat template")
    model = model.to(device=target, dtype=dtype).eval()
    return LoadedModel(model=model, tokenizer=tokenizer, device=target)


def _load_gguf(source: ModelSource, cache_root: Path) -> tuple[Any, Any]:
    cached = cache_folder(source, cache_root)
    if (cached / "config.json").is_file():
        logger.info("loading the dequantized model from the cache", extra={"folder": str(cached)})
        model = AutoModelForCausalLM.from_pretrained(cached, local_files_only=True)
        return model, AutoTokenizer.from_pretrained(cached, local_files_only=True)
    logger.info(
        "dequantizing the GGUF model (once; later starts load the cached copy)",
        extra={"model": source.display_name, "folder": str(cached)},
    )
    where = {"gguf_file": source.gguf_file, "local_files_only": source.is_local}
    model = AutoModelForCausalLM.from_pretrained(source.name_or_path, **where)
    tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **where)
    if _drop_gguf_quantizer(model):
        try:
            save_atomically(model, tokenizer, cached)
        except OSError as error:
            logger.warning(
                "could not cache the dequantized model; the next start dequantizes again",
                extra={"folder": str(cached), "error": str(error)},
            )
    return model, tokenizer


def _drop_gguf_quantizer(model: Any) -> bool:
    """Whether the model holds plain tensors that `save_pretrained` can write. Recent transformers keep a
    GGUF quantizer attached even after dequantizing every weight, and refuse to save while it is there;
    with a GGUF matmul kernel installed the weights stay packed, and there is nothing to cache."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return True
    packed = any(type(module).__name__.startswith("Gguf") for module in model.modules()) or not all(
        parameter.is_floating_point() for parameter in model.parameters()
    )
    if packed:
        logger.info("the GGUF weights stay packed in memory; nothing to cache")
        return False
    quantizer.remove_quantization_config(model)
    return True


def save_atomically(model: Any, tokenizer: Any, target: Path) -> None:
    """Write into a temporary sibling folder and rename it into place, so a reader never sees half a
    checkpoint; when another process got there first, its copy is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
