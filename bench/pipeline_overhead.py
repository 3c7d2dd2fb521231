"""Pipeline overhead: what papo adds between a conversation's last webhook and its reply's `sendText`, once
the quiet window and the model's own time are taken out, at a steady rate of new conversations.

ingest, debounce, llm, deliver and persist run as separate processes, as `papo dev` runs them, against the
local RabbitMQ, Redis and PostgreSQL, a fake model (papo_testing.fake_openai) answering at once and a fake
Evolution API that echoes each `sendText` back to ingest as `send.message`, as the real one does. Each
conversation is a new number writing one message; the bench posts `--rate` of them a second for `--seconds`.

    overhead = sendText received by Evolution - webhook posted - window - model time

The model time is what the fake model took to answer each completion (its server's own clock); with a
remote model the llm holds more turns in flight, which this bench does not exercise. The goal (issue 11) is
p99 <= 100 ms at 100 msg/s. There is no peer: no other program does this whole path, so the figure stands
against the goal alone; the per-stage benches compare each stage with its peer.

    .venv/bin/python bench/pipeline_overhead.py                    # 100 msg/s for 30 s, 1 s window
    .venv/bin/python bench/pipeline_overhead.py --quick            # 30 msg/s for 8 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aio_pika
import aio_pika.abc
import httpx
from prometheus_client.parser import text_string_to_metric_families

from papo_common.topology import EXCHANGE, RoutingKey
from papo_testing import infra
from papo_testing.fake_evolution import FakeEvolution
from papo_testing.fake_openai import FakeOpenAI
from papo_testing.stack import RunningStack
from papo_testing.webhooks import text_webhook

SERVICES = ("persist", "deliver", "llm", "debounce", "ingest")
INSTANCE, API_KEY = "loja", "evolution-key-loja"
TOKEN = "webhook-token-bench"
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def processes_named(*names: str) -> dict[str, list[int]]:
    """The pids of the local servers the services share the CPUs with, by command name."""
    found: dict[str, list[int]] = {name: [] for name in names}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue
        for name in names:
            if command.startswith(name):
                found[name].append(int(entry.name))
    return found


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a PostgreSQL backend that ended meanwhile
            total += cpu_seconds(pid)
    return total


def collections_so_far(stack: RunningStack) -> dict[str, dict[str, tuple[float, float]]]:
    """(passes, seconds) of the collector in each service so far, by generation, from its /metrics."""
    found: dict[str, dict[str, tuple[float, float]]] = {}
    for service in stack.services:
        values = {
            (sample.labels["generation"], sample.name.rsplit("_", 1)[1]): sample.value
            for family in text_string_to_metric_families(httpx.get(stack.url(service, "/metrics")).text)
            if family.name == "papo_gc_pause_seconds"
            for sample in family.samples
            if sample.name.endswith(("_count", "_sum"))
        }
        found[service] = {g: (values[(g, "count")], values[(g, "sum")]) for g in ("0", "1", "2")}
    return found


def number_of(index: int) -> str:
    return f"55119{index:08d}"


async def post_all(url: str, rate: float, count: int) -> tuple[dict[str, float], int]:
    """Post `count` one-message conversations at `rate` a second; returns when each was posted (by number)
    and how many were not accepted."""
    posted: dict[str, float] = {}
    refused = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(headers={"x-papo-token": TOKEN}, limits=limits, timeout=10) as client:
        start = time.monotonic()
        epoch = int(time.time())

        async def one(index: int) -> None:
            nonlocal refused
            await asyncio.sleep(max(0.0, start + index / rate - time.monotonic()))  # the schedule, not a wait
            number = number_of(index)
            body = text_webhook(
                INSTANCE, f"BENCH{index:08d}", "oi, vocês abrem amanhã?", epoch, number=number
            )
            posted[number] = time.monotonic()
            answer = await client.post(url, json=body)
            if answer.status_code != 200 or answer.json().get("status") != "accepted":
                refused += 1

        await asyncio.gather(*(one(i) for i in range(count)))
    return posted, refused


class Hops:
    """When each conversation's burst and reply crossed the exchange, read by probe queues bound beside
    papo's own: where between the webhook and the `sendText` the time goes."""

    KEYS = (RoutingKey.BURST_READY, RoutingKey.REPLY_READY)

    def __init__(self) -> None:
        self.seen: dict[str, dict[str, float]] = {key: {} for key in self.KEYS}
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def start(self, rabbitmq_url: str) -> None:
        self._connection = await aio_pika.connect(rabbitmq_url)
        channel = await self._connection.channel()
        exchange = await channel.get_exchange(EXCHANGE.name)
        for key in self.KEYS:
            queue = await channel.declare_queue(f"bench.{key}", exclusive=True)
            await queue.bind(exchange, routing_key=key)
            await queue.consume(self._stamp(key), no_ack=True)

    def _stamp(self, key: str) -> Callable[[aio_pika.abc.AbstractIncomingMessage], Awaitable[None]]:
        async def stamp(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            user = json.loads(message.body)["conversation"]["user_id"]
            self.seen[key].setdefault(user.split("@")[0], time.monotonic())

        return stamp

    async def stop(self) -> None:
        if self._connection is not None:
            await self._connection.close()


async def load_and_wait(
    url: str, rabbitmq_url: str, evolution: FakeEvolution, rate: float, count: int, settle_seconds: float
) -> tuple[dict[str, float], int, Hops]:
    hops = Hops()
    await hops.start(rabbitmq_url)
    try:
        posted, refused = await post_all(url, rate, count)
        deadline = time.monotonic() + settle_seconds
        while len({s.number for s in evolution.sent_texts()}) < len(posted) - refused:
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)  # polling the fake's record, not synchronising anything
    finally:
        await hops.stop()
    return posted, refused, hops


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(
    rate: float, seconds: float, window: float, settle_seconds: float, profile: str | None = None
) -> None:
    count = int(rate * seconds)
    with (
        infra.rabbitmq_vhost() as rabbitmq_url,
        infra.redis_prefix() as redis_prefix,
        infra.postgres_database() as database_url,
        FakeEvolution(api_keys={INSTANCE: API_KEY}) as evolution,
        FakeOpenAI() as model,
    ):
        env = {
            **os.environ,
            "PAPO_RABBITMQ_URL": rabbitmq_url,
            "PAPO_REDIS_KEY_PREFIX": redis_prefix,
            "PAPO_DATABASE_URL": database_url,
            "PAPO_EVOLUTION_URL": evolution.url,
            "PAPO_EVOLUTION_API_KEYS": json.dumps({INSTANCE: API_KEY}),
            "PAPO_WEBHOOK_TOKEN": TOKEN,
            "PAPO_DEBOUNCE_SECONDS": str(window),
            "PAPO_LLM_BASE_URL": model.base_url,
            "PAPO_LLM_API_KEY": "sk-bench",
            "PAPO_LOG_LEVEL": "WARNING",
            "PAPO_DELIVER_TYPING_MIN_MS": "0",
            "PAPO_DELIVER_TYPING_MAX_MS": "0",
            "PAPO_DELIVER_MIN_SEND_INTERVAL_MS": "0",
            "PAPO_DELIVER_MARK_READ": "false",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",
        }
        with RunningStack(SERVICES, env) as stack:
            evolution.set_webhook(stack.url("ingest", "/webhook/evolution"), headers={"x-papo-token": TOKEN})
            pids = stack.pids()
            # the poster and both fakes share this process: a pass over its whole heap would stall all three
            gc.collect()
            gc.freeze()
            collections_before = collections_so_far(stack)
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            servers = processes_named("redis-server", "beam.smp", "postgres")
            servers_before = {name: cpu_of(found) for name, found in servers.items()}
            bench_before = time.process_time()
            spy = None
            if profile:  # py-spy (not a dependency) records one service during the load
                out = f"{profile}.pyspy.raw"
                spy = subprocess.Popen(
                    ["py-spy", "record", "-r", "200", "-f", "raw", "-o", out, "--pid", str(pids[profile])]
                )
            started = time.monotonic()
            posted, refused, hops = asyncio.run(
                load_and_wait(
                    stack.url("ingest", "/webhook/evolution"),
                    rabbitmq_url,
                    evolution,
                    rate,
                    count,
                    settle_seconds,
                )
            )
            elapsed = time.monotonic() - started
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(30)
            cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
            # PostgreSQL backends that started during the run are not counted: persist's pool opens early
            servers_cpu = {name: cpu_of(found) - servers_before[name] for name, found in servers.items()}
            bench_cpu = time.process_time() - bench_before
            collections_after = collections_so_far(stack)
    model_seconds = [r.finished_at - r.received_at for r in model.requests if r.finished_at is not None]
    model_time = statistics.median(model_seconds) if model_seconds else 0.0
    first_send: dict[str, float] = {}
    for sent in evolution.sent_texts():
        first_send.setdefault(sent.number, sent.received_monotonic)
    overheads = [
        first_send[number] - at - window - model_time for number, at in posted.items() if number in first_send
    ]
    missing = len(posted) - refused - len(overheads)
    print(
        f"pipeline overhead, {count} conversations at {rate:g} msg/s, {window:g} s window, model answering at "
        f"once (median {1000 * model_time:.1f} ms), {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    if overheads:
        print(
            f"  papo: p50 {1000 * statistics.median(overheads):6.0f} ms, p99 {1000 * percentile(overheads, 0.99):6.0f}"
            f" ms, max {1000 * max(overheads):6.0f} ms; {len(overheads)} answered, {missing} unanswered, "
            f"{refused} refused"
        )
    bursts, replies = (hops.seen[key] for key in Hops.KEYS)
    stages = {
        "webhook -> burst.ready, less the window": [
            bursts[n] - at - window for n, at in posted.items() if n in bursts
        ],
        "burst.ready -> reply.ready, less the model": [
            replies[n] - bursts[n] - model_time for n in posted if n in replies and n in bursts
        ],
        "reply.ready -> sendText": [
            first_send[n] - replies[n] for n in posted if n in first_send and n in replies
        ],
    }
    for stage, values in stages.items():
        if values:
            print(
                f"  {stage:<44} p50 {1000 * statistics.median(values):6.0f} ms, "
                f"p99 {1000 * percentile(values, 0.99):6.0f} ms"
            )
    per_message = ", ".join(f"{name} {1000 * seconds / count:.2f}" for name, seconds in sorted(cpu.items()))
    print(f"  CPU ms per conversation (whole run, {elapsed:.0f} s): {per_message}")
    beside = ", ".join(f"{name} {1000 * seconds / count:.2f}" for name, seconds in servers_cpu.items())
    print(
        f"  and beside them: {beside}; this bench (poster, fake model, fake Evolution) {1000 * bench_cpu / count:.2f};"
        f" all of it {sum(cpu.values()) + sum(servers_cpu.values()) + bench_cpu:.1f} CPU s in {elapsed:.0f} s"
    )
    spent, full = [], []
    for name, before in sorted(collections_before.items()):
        after = collections_after[name]
        seconds = sum(after[g][1] - before[g][1] for g in after)
        spent.append(f"{name} {1000 * seconds / count:.2f}")
        full.append(
            f"{name} {after['2'][0] - before['2'][0]:.0f} ({1000 * (after['2'][1] - before['2'][1]):.0f} ms)"
        )
    print(f"  of it in the garbage collector, ms per conversation: {', '.join(spent)}")
    print(f"  passes over the collector's oldest generation during the run: {', '.join(full)}")
    print(f"  goal: p99 <= 100 ms at 100 msg/s{'' if not missing else '; NOT ALL ANSWERED'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--settle", type=float, default=120.0, help="seconds to wait for the last replies")
    parser.add_argument(
        "--profile", choices=SERVICES, help="record this service with py-spy into ./<service>.pyspy.raw"
    )
    parser.add_argument("--quick", action="store_true", help="30 msg/s for 8 s (for `make bench`)")
    args = parser.parse_args()
    if args.quick:
        args.rate, args.seconds = 30.0, 8.0
    run(args.rate, args.seconds, args.window, args.settle, args.profile)


if __name__ == "__main__":
    main()
