"""Hostile webhooks through the six real services: whatever ingest accepts reaches PostgreSQL, and when the
stack is quiet again every queue, dead-letter queues included, is empty. Accepted then dead-lettered would be
lost; this proves it does not happen for a sample of the fuzzer's bodies (bounded: a few minutes)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from papo_testing import infra
from papo_testing.fake_evolution import FakeEvolution
from papo_testing.fake_openai import FakeOpenAI
from papo_testing.stack import RunningStack

from .conftest import PROFILE
from .strategies import INSTANCES, webhooks

pytestmark = pytest.mark.e2e

WEBHOOK_TOKEN = "fuzz-stack-" + "w" * 32
EVOLUTION_KEY = "fuzz-evolution-key"
SAMPLE = int(os.environ.get("PAPO_FUZZ_STACK_SAMPLE", "150"))
"""Bodies posted to the real stack (about a third are accepted)."""
QUIET_TIMEOUT_SECONDS = 240.0


@dataclass
class Stack:
    services: RunningStack
    rabbitmq_url: str
    database_url: str
    redis_prefix: str
    accepted: set[tuple[str, str]] = field(default_factory=set)


@pytest.fixture(scope="module")
def stack(rabbitmq_url: str, database_url: str) -> Iterator[Stack]:
    prefix = f"papo-fuzz-{uuid.uuid4().hex[:8]}"
    with (
        FakeEvolution(api_keys=dict.fromkeys(INSTANCES, EVOLUTION_KEY), simulate_delays=False) as evolution,
        FakeOpenAI() as openai,
    ):
        env = {
            **os.environ,
            "PAPO_RABBITMQ_URL": rabbitmq_url,
            "PAPO_REDIS_KEY_PREFIX": prefix,
            "PAPO_DATABASE_URL": database_url,
            "PAPO_EVOLUTION_URL": evolution.url,
            "PAPO_EVOLUTION_API_KEY": EVOLUTION_KEY,
            "PAPO_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "PAPO_INGEST_ACCEPT_GROUPS": "true",
            "PAPO_INGEST_ACCEPT_STATUS": "true",
            "PAPO_INGEST_ACCEPT_NEWSLETTERS": "true",
            "PAPO_DEBOUNCE_SECONDS": "0.5",
            "PAPO_LLM_BASE_URL": openai.base_url,
            "PAPO_LLM_API_KEY": "sk-fuzz",
            "PAPO_DELIVER_TYPING_MIN_MS": "10",
            "PAPO_DELIVER_TYPING_MAX_MS": "20",
            "PAPO_LOG_LEVEL": "WARNING",
            "HF_HUB_OFFLINE": "1",
        }
        env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
        with RunningStack(("persist", "deliver", "llm", "transcribe", "debounce", "ingest"), env) as services:
            evolution.set_webhook(
                services.url("ingest", "/webhook/evolution"), {"x-papo-token": WEBHOOK_TOKEN}
            )
            yield Stack(services, rabbitmq_url, database_url, prefix)


def queue_messages(amqp_url: str) -> dict[str, int]:
    """Messages in every queue of the test's virtual host, ready and unacknowledged together."""
    out = infra.rabbitmqctl(
        "list_queues", "-p", amqp_url.rsplit("/", 1)[1], "name", "messages", "-q", "--no-table-headers"
    )
    return {name: int(count) for name, count in (line.split() for line in out.splitlines() if line.strip())}


def buffered_bursts(prefix: str) -> int:
    with Redis.from_url(os.environ.get("PAPO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")) as redis:
        return int(redis.zcard(f"{prefix}:debounce:due")) + int(redis.zcard(f"{prefix}:debounce:claims"))


def wait_until_quiet(stack: Stack) -> dict[str, int]:
    """Poll the broker and debounce until nothing is queued, in flight or buffered, twice in a row."""
    deadline, quiet_polls = time.monotonic() + QUIET_TIMEOUT_SECONDS, 0
    while True:
        totals = queue_messages(stack.rabbitmq_url)
        busy = {name: count for name, count in totals.items() if count and not name.endswith(".dlq")}
        if busy or buffered_bursts(stack.redis_prefix):
            quiet_polls = 0
        else:
            quiet_polls += 1
            if quiet_polls == 2:
                return totals
        assert time.monotonic() < deadline, f"never quiet: {busy}"
        time.sleep(1.0)  # polling the broker's counters, not waiting out a race


async def stored_ids(database_url: str) -> set[tuple[str, str]]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT instance, external_id FROM messages"))
            return {(row.instance, row.external_id) for row in rows}
    finally:
        await engine.dispose()


def test_accepted_hostile_webhooks_are_stored_and_never_dead_lettered(stack: Stack) -> None:
    url = stack.services.url("ingest", "/webhook/evolution")
    statuses: dict[int, int] = {}

    with httpx.Client(timeout=30) as client:

        @given(body=webhooks(instances=st.sampled_from(INSTANCES)))
        @settings(PROFILE, max_examples=SAMPLE)
        def post_one(body: dict[str, Any]) -> None:
            raw = json.dumps(body, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
            response = client.post(url, content=raw, headers={"x-papo-token": WEBHOOK_TOKEN})
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, response.text
            if response.json()["status"] == "accepted" and isinstance(body.get("data"), dict):
                stack.accepted.add((body["instance"].strip(), body["data"]["key"]["id"].strip()))

        post_one()

    assert stack.accepted, f"nothing was accepted: {statuses}"
    totals = wait_until_quiet(stack)
    dead = {name: count for name, count in totals.items() if name.endswith(".dlq") and count}
    assert dead == {}, f"accepted and then dead-lettered: {dead}\n{stack.services.all_logs()[-20000:]}"
    missing = stack.accepted - asyncio.run(stored_ids(stack.database_url))
    assert not missing, f"{len(missing)} accepted messages never reached PostgreSQL"
