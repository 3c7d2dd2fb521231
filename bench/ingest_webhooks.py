"""Webhooks per second of ingest, against a minimal peer doing the same work, measured in the same run.

  papo  the production app exactly as its container runs it (`papo_ingest.app.main`: uvicorn with uvloop and
        httptools): token check, body read, JSON decode, parse into the contract, one Redis round trip to claim
        the id, a persistent publish confirmed by RabbitMQ, the dedupe mark written behind the answer.
  peer  the same work written minimally with the same libraries in one Litestar handler: constant-time token
        check, msgspec decode, `SET NX` in Redis, a confirmed persistent aio-pika publish of the fields papo's
        contract carries, routed as papo's is: into two quorum queues (papo's go to debounce's and persist's).
        Until 2026-12-02 the peer published a five-field body into one classic queue, which costs RabbitMQ
        about 80 µs of CPU less per message than papo's routing, on the same two CPUs.
  bare  a Litestar endpoint under the same uvicorn that answers 200 and does nothing: the HTTP floor.

Both run in one uvicorn process each, in turn, round by round (interleaved, so a noisy neighbour hits both),
loaded by wrk with a unique message id per request. Printed per peer: the median req/s over the rounds and the
server's CPU per request; then papo / peer and papo / bare. Needs the local RabbitMQ and Redis and `wrk` (Debian: apt-get
install -y wrk).

    .venv/bin/python bench/ingest_webhooks.py                     # 3 rounds of 10 s at c=16 and c=64
    .venv/bin/python bench/ingest_webhooks.py --quick             # 1 round of 4 s at c=16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar, Request, Response, get, post

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "evolution"
TOKEN = "bench-" + secrets.token_hex(24)
_TICKS = os.sysconf("SC_CLK_TCK")


def serve_peer(port: int) -> None:
    """The minimal peer (runs in the subprocess)."""
    import hmac

    import aio_pika
    import msgspec
    import uvicorn
    from redis.asyncio import Redis

    from papo_common.topology import DEBOUNCE, PERSIST

    token = os.environ["PAPO_WEBHOOK_TOKEN"].encode()
    prefix = os.environ["PAPO_REDIS_KEY_PREFIX"]
    redis = Redis.from_url(os.environ.get("PAPO_REDIS_URL", "redis://127.0.0.1:6379/0"))
    state: dict[str, Any] = {}

    async def connect() -> None:
        connection = await aio_pika.connect_robust(os.environ["PAPO_RABBITMQ_URL"])
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        state["exchange"] = await channel.declare_exchange("peer", aio_pika.ExchangeType.TOPIC, durable=True)
        # papo's inbound messages land in debounce's and persist's queues: two quorum queues declared with
        # the same arguments (delivery limit, at-least-once dead-lettering, reject-publish overflow)
        for service_queue in (DEBOUNCE, PERSIST):
            queue = await channel.declare_queue(
                f"peer.{service_queue.service}", durable=True, arguments=service_queue.queue.arguments
            )
            await queue.bind(state["exchange"], routing_key="inbound.*")

    @post("/webhook/evolution")
    async def webhook(request: Request[Any, Any, Any]) -> Response[dict[str, str]]:
        if not hmac.compare_digest((request.headers.get("x-papo-token") or "").encode(), token):
            return Response({"status": "unauthorized"}, status_code=401)
        body = msgspec.json.decode(await request.body())
        data = body["data"]
        message_id, instance = data["key"]["id"], body["instance"]
        if not await redis.set(f"{prefix}:peer:{instance}:{message_id}", b"1", nx=True, ex=48 * 3600):
            return Response({"status": "duplicate"})
        key = data["key"]
        payload = msgspec.json.encode(
            {
                "type": "inbound_message",
                "version": 2,
                "conversation": {"instance": instance, "user_id": key["remoteJid"]},
                "message_id": message_id,
                "chat_id": key["remoteJid"],
                "from_me": key["fromMe"],
                "source": "messages.upsert",
                "aliases": [key["remoteJidAlt"]] if key.get("remoteJidAlt") else [],
                "push_name": data.get("pushName"),
                "kind": "text",
                "text": data["message"]["conversation"],
                "sent_at": data["messageTimestamp"],
                "received_at": time.time(),
                "quoted": None,
                "audio": None,
            }
        )
        await state["exchange"].publish(
            aio_pika.Message(payload, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, message_id=message_id),
            routing_key="inbound.text",
            mandatory=True,
        )
        return Response({"status": "accepted"})

    @get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    app = Litestar([webhook, ready], on_startup=[connect], openapi_config=None, logging_config=None)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, loop="uvloop", http="httptools"
    )


def serve_bare(port: int) -> None:
    """The HTTP floor (runs in the subprocess): the same server stack, no work at all."""
    import uvicorn

    @post("/webhook/evolution")
    async def webhook() -> dict[str, str]:
        return {"status": "accepted"}

    @get("/readyz")
    async def ready() -> dict[str, str]:
        return {"status": "ready"}

    app = Litestar([webhook, ready], openapi_config=None, logging_config=None)
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, loop="uvloop", http="httptools"
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(mode: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = (
        [sys.executable, "-c", "from papo_ingest.app import main; main()"]
        if mode == "papo"
        else [sys.executable, __file__, f"--serve-{mode}", str(port)]
    )
    process = subprocess.Popen(command, env={**env, "PAPO_INGEST_PORT": str(port)})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{mode} did not become ready")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


_WRK_SCRIPT = """
local template = [==[%s]==]
local counter = 0
local run = "%s"
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.headers["x-papo-token"] = "%s"
request = function()
  counter = counter + 1
  local body = string.gsub(template, "MESSAGE_ID", run .. string.format("%%010d", counter))
  return wrk.format(nil, "/webhook/evolution", nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d\\n", summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(99)))
end
"""


def wrk_round(
    url: str, pid: int, concurrency: int, seconds: float, template: str
) -> tuple[float, float, int]:
    """(req/s, server CPU ms per request, non-2xx + socket errors) of one wrk run."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT % (template, uuid.uuid4().hex[:10].upper(), TOKEN))
    try:
        cpu_before, started = cpu_seconds(pid), time.monotonic()
        output = subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds:g}s", "-s", script.name, url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        wall, cpu = time.monotonic() - started, cpu_seconds(pid) - cpu_before
    finally:
        os.unlink(script.name)
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+)", output)
    if match is None:
        raise SystemExit(f"wrk printed no result:\n{output}")
    requests, bad_status, socket_errors, _ = map(int, match.groups())
    return requests / wall, 1000 * cpu / max(requests, 1), bad_status + socket_errors


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--quick", action="store_true", help="one 4-second round at c=16 (for `make bench`)")
    parser.add_argument("--serve-peer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_peer:
        serve_peer(args.serve_peer)
        return
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    if args.quick:
        args.rounds, args.seconds, args.concurrency = 1, 4, [16]
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install -y wrk)")

    from papo_testing import infra

    body = json.loads((FIXTURES / "text_conversation.json").read_text())
    body["data"]["key"]["id"] = "MESSAGE_ID"
    template = json.dumps(body, ensure_ascii=False)
    print(f"ingest webhooks: {args.rounds} round(s) of {args.seconds:g} s per peer and concurrency, wrk -t1")
    with infra.rabbitmq_vhost() as rabbitmq_url, infra.redis_prefix() as prefix:
        env = {
            **os.environ,
            "PAPO_RABBITMQ_URL": rabbitmq_url,
            "PAPO_REDIS_KEY_PREFIX": prefix,
            "PAPO_WEBHOOK_TOKEN": TOKEN,
            "PAPO_LOG_LEVEL": "WARNING",
        }
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        servers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        try:
            for mode in ("papo", "peer", "bare"):
                servers[mode] = start(mode, env)
            for concurrency in args.concurrency:
                results: dict[str, list[tuple[float, float, int]]] = {mode: [] for mode in servers}
                for process, url in servers.values():  # warm-up
                    wrk_round(url, process.pid, concurrency, 2, template)
                for _ in range(args.rounds):
                    for mode, (process, url) in servers.items():
                        results[mode].append(wrk_round(url, process.pid, concurrency, args.seconds, template))
                rates = {mode: statistics.median(r for r, _, _ in runs) for mode, runs in results.items()}
                for mode, runs in results.items():
                    print(
                        f"c={concurrency:<3} {mode}  {rates[mode]:7.0f} req/s  "
                        f"{statistics.median(c for _, c, _ in runs):5.2f} ms CPU/request  "
                        f"errors {sum(e for _, _, e in runs)}  rounds {[round(r) for r, _, _ in runs]}"
                    )
                print(
                    f"c={concurrency:<3} ratio papo/peer {rates['papo'] / rates['peer']:.2f}, "
                    f"papo/bare {rates['papo'] / rates['bare']:.2f}"
                )
        finally:
            for process, _ in servers.values():
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
