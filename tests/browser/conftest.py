"""The whole stack started by `papo dev` (the simulator playing Evolution API), driven through the
simulator's page in headless Chromium (Debian's `chromium`, through Playwright)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from papo_common.dev import DEV_PORTS

CHROMIUM = os.environ.get("PAPO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SIMULATOR_LINE = re.compile(r"chat with papo in the WhatsApp simulator: (http://\S+)")
ARTIFACTS = Path(os.environ.get("PAPO_TEST_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))
CLEAN_ENV_KEEP = ("PATH", "HOME", "LANG", "TMPDIR", "XDG_CACHE_HOME")


def chromium_or_skip() -> Any:
    """Playwright's sync API, or a skip that says what is missing."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set PAPO_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -r requirements-dev.txt)")
    return sync_playwright


def free_base_port() -> int:
    """A port for ingest such that every port `papo dev` derives from it is free now."""
    offsets = [port - DEV_PORTS["ingest"] for port in DEV_PORTS.values()]
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = int(probe.getsockname()[1])
        if base + max(offsets) < 65535 and all(_free(base + offset) for offset in offsets):
            return base
    raise RuntimeError("no free range of ports for papo dev")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
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


@dataclass
class SimulatedStack:
    dev: DevProcess
    url: str
    base_port: int


@pytest.fixture(scope="module")
def simulated_stack(rabbitmq_url: str, database_url: str) -> Iterator[SimulatedStack]:
    """`papo dev` with nothing configured but the isolated infrastructure, quick windows and the fake OpenAI
    (so replies are immediate and known)."""
    from papo_testing.fake_openai import FakeOpenAI

    base = free_base_port()
    with FakeOpenAI() as openai:
        env = clean_env(
            PAPO_RABBITMQ_URL=rabbitmq_url,
            PAPO_DATABASE_URL=database_url,
            PAPO_REDIS_KEY_PREFIX=f"papo-browser-{uuid.uuid4().hex[:8]}",
            PAPO_DEV_BASE_PORT=str(base),
            PAPO_DEBOUNCE_SECONDS="2",
            PAPO_LLM_BASE_URL=openai.base_url,
            PAPO_LLM_API_KEY="sk-browser-test",
            # long enough for "typing…" to be seen
            PAPO_DELIVER_TYPING_MIN_MS="1500",
            PAPO_DELIVER_TYPING_MAX_MS="2500",
        )
        dev = DevProcess([sys.executable, "-m", "papo_common.cli", "dev", "--no-migrate"], env)
        try:
            url = dev.simulator_url(60)
            dev.wait_ready([f"http://127.0.0.1:{base}/readyz", url], 180)
            yield SimulatedStack(dev, url, base)
        finally:
            code = dev.stop()
            (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "browser" / "papo-dev.log").write_text(dev.output)
        assert code in (0, -signal.SIGTERM), dev.output[-5000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page; its screenshot is written to artifacts/browser/<test>.png whatever the outcome."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    yield opened
    folder = ARTIFACTS / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    opened.screenshot(path=str(folder / f"{request.node.name}.png"))
    context.close()
