"""The whole stack started by `papo dev` (the simulator playing Evolution API), driven through the
simulator's page in headless Chromium (Debian's `chromium`, through Playwright)."""

from __future__ import annotations

import os
import signal
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from papo_testing import infra
from papo_testing.dev_stack import DevProcess, clean_env, free_base_port

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
ARTIFACTS = Path(os.environ.get("PAPO_TEST_ARTIFACTS", Path(__file__).parents[2] / "artifacts"))


def chromium_or_skip() -> Any:
    """Playwright's sync API, or a skip that says what is missing."""
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium, or set PAPO_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install -r requirements-dev.txt)")
    return sync_playwright


@dataclass
class SimulatedStack:
    dev: DevProcess
    url: str
    base_port: int


@pytest.fixture(scope="module")
def stack_vhost() -> Iterator[str]:
    """A RabbitMQ vhost for one module's stack. A stopped stack can leave messages queued (a reply its deliver
    had not sent yet); in a shared vhost the next stack's deliver sends them, into a simulator that has the same
    contacts, and a test sees another test's reply."""
    with infra.rabbitmq_vhost() as url:
        yield url


@pytest.fixture(scope="module")
def simulated_stack(stack_vhost: str, database_url: str) -> Iterator[SimulatedStack]:
    """`papo dev` with nothing configured but the isolated infrastructure, quick windows and the fake OpenAI
    (so replies are immediate and known)."""
    from papo_testing.fake_openai import FakeOpenAI

    base = free_base_port()
    with FakeOpenAI() as openai:
        env = clean_env(
            PAPO_RABBITMQ_URL=stack_vhost,
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
