"""A newcomer's first run: clone the repository, `make run` with nothing configured, open the printed URL and
chat. The llm answers with its packaged local model (no key is set: that is what a newcomer gets).

To keep it short the clone runs from this checkout's installed environment (`make run SKIP_INSTALL=1
VENV=...`); a fresh `make install` is timed on its own. Like every test it keeps to its own RabbitMQ vhost,
database, Redis prefix and free ports, the only settings it passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from papo_testing.dev_stack import DevProcess, clean_env, free_base_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).parents[2]
ARTIFACTS = REPO / "artifacts"


def test_clone_make_run_and_chat(page: Any, tmp_path: Path, stack_vhost: str, database_url: str) -> None:
    from playwright.sync_api import expect

    started = time.monotonic()
    clone = tmp_path / "papo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    base = free_base_port()
    env = clean_env(
        PAPO_RABBITMQ_URL=stack_vhost,
        PAPO_DATABASE_URL=database_url,
        PAPO_REDIS_KEY_PREFIX=f"papo-newcomer-{uuid.uuid4().hex[:8]}",
        PAPO_DEV_BASE_PORT=str(base),
    )
    venv = Path(sys.executable).parent.parent
    dev = DevProcess(["make", "run", "SKIP_INSTALL=1", f"VENV={venv}"], env, cwd=clone)
    try:
        url = dev.simulator_url(120)
        assert "webhook token for this run" in dev.output
        llm_ready = f"http://127.0.0.1:{base + 23}/readyz"
        dev.wait_ready([f"http://127.0.0.1:{base}/readyz", llm_ready, url], 300)
        ready = time.monotonic()

        page.goto(url)
        box = page.get_by_role("textbox", name=re.compile("Message"))
        box.fill("Hello! What can you help me with?")
        box.press("Enter")
        sent = time.monotonic()
        reply = page.get_by_role("log").locator(".bubble.bot").first
        reply.wait_for(timeout=180_000)
        answered = time.monotonic()
        expect(reply).not_to_be_empty()
        (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "browser" / "newcomer.png"))
        if os.environ.get("PAPO_README_SCREENSHOT"):  # refreshes the README's picture of the page
            page.screenshot(path=str(REPO / "docs" / "img" / "simulator.png"))
        window = 15.0
        print(
            f"\nclone to stack ready: {ready - started:.1f}s; message to first reply: {answered - sent:.1f}s "
            f"({answered - sent - window:.1f}s after the {window:g}s window closed); "
            f"clone to first reply: {answered - started:.1f}s"
        )
        assert "local smoke-test model" in dev.output
    finally:
        dev.stop()
        (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "browser" / "newcomer-make-run.log").write_text(dev.output)
