"""`papo dev` (or `make run`) as a child process for end-to-end tests: free ports for all of it, a newcomer's
clean environment, its output kept and the simulator's URL read from what it prints."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

import httpx

from papo_common.dev import DEV_PORTS

SIMULATOR_LINE = re.compile(r"chat with papo in the WhatsApp simulator: (http://\S+)")
CLEAN_ENV_KEEP = ("PATH", "HOME", "LANG", "TMPDIR", "XDG_CACHE_HOME")


def free_base_port() -> int:
    """A port for ingest such that every port `papo dev` derives from it is free now. Drawn below the
    kernel's ephemeral range, where outgoing connections would otherwise take ports between check and bind."""
    offsets = [port - DEV_PORTS["ingest"] for port in DEV_PORTS.values()]
    low, _ = _ephemeral_range()
    for _ in range(200):
        base = random.randrange(10000, low - max(offsets) - 1)
        if all(_free(base + offset) for offset in offsets):
            return base
    raise RuntimeError("no free range of ports for papo dev")


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def clean_env(**settings: str) -> dict[str, str]:
    """A newcomer's environment: no PAPO_* or OPENAI_* variable but the ones given."""
    env = {name: os.environ[name] for name in CLEAN_ENV_KEEP if name in os.environ}
    return {**env, "HF_HUB_OFFLINE": "1", **settings}


class DevProcess:
    """`papo dev` (or `make run`) as a child process: its output kept, the simulator's URL read from it."""

    def __init__(self, command: list[str], env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lines: deque[str] = deque(maxlen=20000)
        self._url: str | None = None
        self._seen_url = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if match := SIMULATOR_LINE.search(line):
                self._url = match.group(1)
                self._seen_url.set()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def simulator_url(self, timeout: float) -> str:
        if not self._seen_url.wait(timeout) or self._url is None:
            raise TimeoutError(f"no simulator URL printed within {timeout}s\n{self.output[-5000:]}")
        return self._url

    def wait_ready(self, urls: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(urls)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"papo dev exited with {self.process.returncode}\n{self.output[-8000:]}")
            try:
                if httpx.get(pending[0], timeout=2).status_code == 200:
                    pending.pop(0)
                    continue
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending[0]} not ready after {timeout}s\n{self.output[-8000:]}")
            time.sleep(0.2)

    def stop(self) -> int:
        if self.process.poll() is None:
            # the whole group: `make` does not pass SIGTERM on to `papo dev`
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode
