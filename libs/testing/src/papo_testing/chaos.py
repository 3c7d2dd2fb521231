"""What the chaos tier needs beyond `RunningStack`: replicas, kill -9 and restart, a private Redis that can
be abused freely, RabbitMQ connection drops, and queue totals that count unacknowledged messages too."""

from __future__ import annotations

import collections
import contextlib
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

from papo_common.dev import start_services
from papo_testing.infra import rabbitmqctl
from papo_testing.stack import RunningStack, free_port


class ChaosStack(RunningStack):
    """A `RunningStack` whose processes can be killed, restarted and multiplied. A replica is named
    `<service>#<n>` and runs the same service on a port of its own."""

    def add_replica(self, service: str) -> str:
        name = f"{service}#{sum(1 for s in self.services if s.split('#')[0] == service) + 1}"
        self.services.append(name)
        self.ports[name] = free_port()
        self._spawn(name)
        return name

    def kill(self, name: str) -> None:
        """SIGKILL: no drain, no ack, no goodbye."""
        process = self._processes[name]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def restart(self, name: str, *, ready_timeout: float = 120.0) -> None:
        self._spawn(name)
        self.wait_ready_one(name, ready_timeout)

    def wait_ready_one(self, name: str, timeout: float) -> None:
        services, self.services = self.services, [name]
        try:
            self.wait_ready(timeout)
        finally:
            self.services = services

    def _spawn(self, name: str) -> None:
        service = name.split("#", maxsplit=1)[0]
        [process] = start_services([service], self._env, {service: self.ports[name]}).values()
        self._processes[name] = process
        self._logs.setdefault(name, collections.deque(maxlen=5000))
        threading.Thread(target=self._drain, args=(name, process), daemon=True).start()


def vhost_of(amqp_url: str) -> str:
    return amqp_url.rsplit("/", 1)[1]


def drop_broker_connections(amqp_url: str) -> None:
    """Close every client connection of the URL's virtual host, as a broker restart or failover would."""
    rabbitmqctl("close_all_connections", "--vhost", vhost_of(amqp_url), "chaos: connection dropped")


def queue_totals(amqp_url: str) -> dict[str, int]:
    """Messages in every queue of the virtual host, ready and unacknowledged together."""
    out = rabbitmqctl(
        "list_queues", "-p", vhost_of(amqp_url), "name", "messages", "--quiet", "--no-table-headers"
    )
    totals: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            totals[parts[0]] = int(parts[1])
    return totals


@contextlib.contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    """A Redis of the test's own, with an append-only file as papo requires, so its clients can be killed
    without touching anybody else's. Yields its URL."""
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--maxclients",
            "10000",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    try:
        for line in server.stdout:  # the server says when it listens
            if "Ready to accept connections" in line:
                break
        else:
            raise RuntimeError("redis-server exited before accepting connections")
        threading.Thread(target=server.stdout.read, daemon=True).start()  # keep the pipe from filling up
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


def kill_redis_clients(redis_url: str) -> int:
    """`CLIENT KILL TYPE normal` on the given (private) Redis: every client connection but ours is cut."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"))
    finally:
        client.close()
