"""Throughput and latency of ingest's webhook, against its own floor, measured in the same run.

Two peers serve the same Litestar app (auth, body read, JSON decode, parse, tracing middleware) in a uvicorn
subprocess; they differ only in what happens after parsing:
  floor  answers "accepted" at once: no Redis, no broker;
  full   claims the id in Redis, publishes with a publisher confirm, marks it published (production).
The difference is the cost of durability and deduplication. Needs the local RabbitMQ and Redis.

    .venv/bin/python bench/ingest_webhooks.py --requests 5000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "evolution"
TOKEN = "bench-" + secrets.token_hex(24)


def serve(mode: str) -> None:
    """Run one peer (in the subprocess)."""
    import uvicorn

    from papo_ingest.app import create_app
    from papo_ingest.evolution import IntakePolicy, parse_webhook
    from papo_ingest.intake import ACCEPTED, Outcome
    from papo_ingest.settings import IngestSettings

    class ParseOnly:
        async def receive(self, body: Any, *, path_event: str | None = None) -> Outcome:
            from papo_common.contracts import utcnow

            parse_webhook(body, received_at=utcnow(), policy=IntakePolicy(), path_event=path_event)
            return ACCEPTED

    settings = IngestSettings()
    app = create_app(settings)
    if mode == "floor":
        app.state.intake = ParseOnly()
    uvicorn.run(app, host="127.0.0.1", port=settings.ingest_port, log_config=None, access_log=False)


def make_body(template: dict[str, Any]) -> bytes:
    body = json.loads(json.dumps(template))
    body["data"]["key"]["id"] = uuid.uuid4().hex.upper()[:20]
    return json.dumps(body).encode()


async def load(url: str, bodies: list[bytes], concurrency: int) -> tuple[list[float], float, dict[int, int]]:
    """Post every body with `concurrency` workers; per-request latencies, wall seconds, status counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    pending = iter(bodies)
    headers = {"x-papo-token": TOKEN, "content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def worker() -> None:
            for body in pending:
                started = time.perf_counter()
                try:
                    response = await client.post("/webhook/evolution", content=body, headers=headers)
                    status = response.status_code
                except httpx.TransportError:
                    status = 0  # a connection error, reported as status 0
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - started, statuses


def start_peer(mode: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode], env={**env, "PAPO_INGEST_PORT": str(port)}
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{mode} peer did not become ready")


def percentile(values: list[float], fraction: float) -> float:
    return statistics.quantiles(values, n=1000)[int(fraction * 1000) - 1]


def report(mode: str, latencies: list[float], seconds: float, statuses: dict[int, int]) -> None:
    ms = [value * 1000 for value in latencies]
    print(
        f"{mode:<6} {len(ms) / seconds:>9.0f} req/s   p50 {percentile(ms, 0.50):6.2f} ms   "
        f"p95 {percentile(ms, 0.95):6.2f} ms   p99 {percentile(ms, 0.99):6.2f} ms   statuses {statuses}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--audio-kb", type=int, default=0, help="post voice notes with this much inline base64"
    )
    parser.add_argument("--serve", choices=("floor", "full"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    from papo_testing import infra

    template = json.loads(
        (FIXTURES / ("audio_base64.json" if args.audio_kb else "text_conversation.json")).read_text()
    )
    if args.audio_kb:
        template["data"]["message"]["base64"] = base64.b64encode(os.urandom(args.audio_kb * 1024)).decode()
    print(
        f"ingest webhooks: {args.requests} requests, concurrency {args.concurrency}, "
        f"{'audio ' + str(args.audio_kb) + ' KiB' if args.audio_kb else 'text'}"
    )
    with infra.rabbitmq_vhost() as rabbitmq_url:
        env = {
            **os.environ,
            "PAPO_RABBITMQ_URL": rabbitmq_url,
            "PAPO_REDIS_KEY_PREFIX": f"papo-bench-{uuid.uuid4().hex[:8]}",
            "PAPO_WEBHOOK_TOKEN": TOKEN,
            "PAPO_LOG_LEVEL": "WARNING",
        }
        for mode in ("floor", "full"):
            process, url = start_peer(mode, env)
            try:
                asyncio.run(load(url, [make_body(template) for _ in range(200)], args.concurrency))
                bodies = [make_body(template) for _ in range(args.requests)]
                report(mode, *asyncio.run(load(url, bodies, args.concurrency)))
            finally:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
