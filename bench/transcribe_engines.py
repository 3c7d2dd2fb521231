"""Both transcribe engines on the same voice notes, side by side: real-time factor, per-note latency, peak RSS.

Each engine runs in its own subprocess, so its peak resident memory is its own and nothing is shared (imports,
allocator arenas, thread pools). Both load the same weights: the packaged multilingual Whisper base, as
CTranslate2 int8 for faster-whisper and converted to Hugging Face format for transformers.

    python bench/transcribe_engines.py [--beam 5] [--repeat 3] [--batch]

Notes are the committed fixtures (tests/fixtures/audio) plus a 35 s note made by joining them (Whisper's
window is 30 s). The real-time factor is processing seconds per audio second (lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

AUDIO = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "audio"
CLIPS = ("en_table.ogg", "en_weather.ogg", "pt_pizza.ogg")
ENGINES = ("faster-whisper", "transformers")


def notes() -> dict[str, object]:
    import base64

    import numpy as np

    from papo_transcribe.audio import Limits, prepare

    limits = Limits(max_bytes=1 << 24, max_seconds=600)
    decoded = {
        name: prepare(base64.b64encode((AUDIO / name).read_bytes()).decode(), limits) for name in CLIPS
    }
    pause = np.zeros(16_000, dtype=np.float32)
    joined = [part for name in CLIPS for part in (decoded[name], pause)] * 3
    decoded["joined_35s"] = np.concatenate(joined)[: 35 * 16_000]
    return decoded


def child(engine: str, beam: int, repeat: int, batch: bool) -> dict[str, object]:
    """Runs inside the subprocess: load, warm up, then time every note `repeat` times."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from papo_transcribe import engines
    from papo_transcribe.settings import TranscribeSettings

    settings = TranscribeSettings(
        transcribe_engine=engine, transcribe_beam_size=beam, transcribe_device="cpu"
    )
    started = time.perf_counter()
    model = engines.load_engine(settings)
    model.warm_up()
    load_s = time.perf_counter() - started
    clips = notes()
    per_note: dict[str, float] = {}
    texts: dict[str, str] = {}
    for name, audio in clips.items():
        runs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            [result] = model.transcribe_batch([audio])  # type: ignore[list-item]
            runs.append(time.perf_counter() - t0)
        per_note[name] = statistics.median(runs)
        texts[name] = " ".join(segment.text.strip() for segment in result.segments)
    audio_s = {name: len(audio) / 16_000 for name, audio in clips.items()}  # type: ignore[arg-type]
    out: dict[str, object] = {
        "engine": engine,
        "load_s": load_s,
        "per_note_s": per_note,
        "audio_s": audio_s,
        "rtf": sum(per_note.values()) / sum(audio_s.values()),
        "pt_text": texts["pt_pizza.ogg"],
    }
    if batch:
        short = [clips[name] for name in CLIPS] * 2
        t0 = time.perf_counter()
        model.transcribe_batch(short)  # type: ignore[arg-type]
        out["batch_of_6_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", action="store_true", help="also time one batch of six short notes")
    parser.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="one pass, greedy (for `make bench`)")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.beam = 1, 1
    if args.child:
        print(json.dumps(child(args.child, args.beam, args.repeat, args.batch)))
        return
    results = []
    for engine in ENGINES:
        command = [sys.executable, __file__, "--child", engine, "--beam", str(args.beam)]
        command += ["--repeat", str(args.repeat), *(["--batch"] if args.batch else [])]
        done = subprocess.run(command, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{engine} failed:\n{done.stderr[-3000:]}")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report(results, args)


def report(results: list[dict], args: argparse.Namespace) -> None:
    print(
        f"Whisper base, beam {args.beam}, CPU ({os.cpu_count()} cores), median of {args.repeat} runs per note"
    )
    print(f"{'':28}" + "".join(f"{r['engine']:>18}" for r in results))
    print(f"{'load + warm-up (s)':28}" + "".join(f"{r['load_s']:>18.2f}" for r in results))
    for name, seconds in results[0]["audio_s"].items():
        label = f"{name} ({seconds:.1f} s audio)"
        print(f"{label:28}" + "".join(f"{r['per_note_s'][name]:>17.2f}s" for r in results))
    print(f"{'real-time factor':28}" + "".join(f"{r['rtf']:>18.3f}" for r in results))
    if args.batch:
        print(f"{'one batch of 6 notes (s)':28}" + "".join(f"{r['batch_of_6_s']:>18.2f}" for r in results))
    print(f"{'peak RSS (MB)':28}" + "".join(f"{r['peak_rss_mb']:>18.0f}" for r in results))
    for r in results:
        print(f"{r['engine']} on pt_pizza.ogg: {r['pt_text']!r}")


if __name__ == "__main__":
    main()
