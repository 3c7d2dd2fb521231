"""Runs papo's services as separate processes, exactly as `papo dev` does, for end-to-end tests."""

from __future__ import annotations

import collections
import socket
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType

import httpx

from papo_common.dev import start_services, stop_services


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningStack:
    """The services as child processes, their output collected, their readiness awaited."""

    def __init__(self, services: Iterable[str], env: Mapping[str, str]) -> None:
        self.services = list(services)
        self.ports = {service: free_port() for service in self.services}
        self._env = dict(env)
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, collections.deque[str]] = {}
        self.exit_codes: dict[str, int | None] = {}

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def pids(self) -> dict[str, int]:
        """The process id of each running service (for reading its CPU time)."""
        return {name: process.pid for name, process in self._processes.items()}

    def logs(self, service: str) -> str:
        return "".join(self._logs.get(service, ()))

    def all_logs(self) -> str:
        return "\n".join(f"--- {s} ---\n{self.logs(s)}" for s in self.services)

    def _drain(self, service: str, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in iter(process.stdout.readline, b""):
            self._logs[service].append(line.decode(errors="replace"))

    def start(self, *, ready_timeout: float = 120.0) -> RunningStack:
        self._processes = start_services(self.services, self._env, self.ports)
        for service, process in self._processes.items():
            self._logs[service] = collections.deque(maxlen=5000)
            threading.Thread(target=self._drain, args=(service, process), daemon=True).start()
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.services)
        while pending:
            for service in list(pending):
                process = self._processes[service]
                if process.poll() is not None:
                    raise RuntimeError(f"{service} exited with {process.returncode}\n{self.logs(service)}")
                try:
                    if httpx.get(self.url(service, "/readyz"), timeout=2).status_code == 200:
                        pending.discard(service)
                except httpx.HTTPError:
                    pass
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"not ready after {timeout}s: {sorted(pending)}\n{self.all_logs()}")
            time.sleep(0.2)

    def stop(self) -> None:
        stop_services(self._processes)
        self.exit_codes = {name: process.returncode for name, process in self._processes.items()}

    def __enter__(self) -> RunningStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
