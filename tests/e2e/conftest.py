"""The whole stack as separate processes, with fake Evolution API and OpenAI servers."""

from __future__ import annotations

import json
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from papo_testing.fake_evolution import BAILEYS, BUSINESS, EVOLUTION, FakeEvolution
from papo_testing.fake_openai import FakeOpenAI, default_responder
from papo_testing.fake_otlp import FakeCollector
from papo_testing.stack import RunningStack

INSTANCE = "loja"
EVOLUTION_KEY = "evolution-key-for-loja"
OTHER_INSTANCE = "padaria"
OTHER_KEY = "evolution-key-for-padaria"
CHANNEL_INSTANCES = {BAILEYS: INSTANCE, EVOLUTION: "loja-evolution", BUSINESS: "loja-cloud"}
"""One instance per Evolution channel; the other two have their own keys (`PAPO_EVOLUTION_API_KEYS`)."""
CHANNEL_KEYS = {
    CHANNEL_INSTANCES[EVOLUTION]: "evolution-key-generic",
    CHANNEL_INSTANCES[BUSINESS]: "evolution-key-cloud",
}
ADMIN_TOKEN = "admin-token-e2e-0123456789abcdef0123"
WEBHOOK_TOKEN = "webhook-token-e2e"
SERVICES = ("persist", "deliver", "llm", "transcribe", "debounce", "ingest")


@dataclass
class Stack:
    services: RunningStack
    evolution: FakeEvolution
    openai: FakeOpenAI
    collector: FakeCollector
    rabbitmq_url: str
    database_url: str
    redis_prefix: str
    instance: str = INSTANCE
    other_instance: str = OTHER_INSTANCE
    webhook_token: str = WEBHOOK_TOKEN
    admin_token: str = ADMIN_TOKEN
    channel_instances: dict[str, str] | None = None

    def webhook_url(self) -> str:
        return self.services.url("ingest", "/webhook/evolution")


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest, rabbitmq_url: str, database_url: str) -> Iterator[Stack]:
    """The six services of one test module. A module may set `STACK_ENV` (extra settings) and `RESPONDER`
    (what the fake model answers)."""
    prefix = f"papo-e2e-{uuid.uuid4().hex[:8]}"
    responder = getattr(request.module, "RESPONDER", default_responder)
    with (
        FakeEvolution(
            api_keys={INSTANCE: EVOLUTION_KEY, OTHER_INSTANCE: OTHER_KEY, **CHANNEL_KEYS},
            channels={instance: channel for channel, instance in CHANNEL_INSTANCES.items()},
        ) as evolution,
        FakeOpenAI(responder=responder) as openai,
        FakeCollector() as collector,
    ):
        env = {
            **os.environ,
            "PAPO_RABBITMQ_URL": rabbitmq_url,
            "PAPO_REDIS_URL": "redis://127.0.0.1:6379/0",
            "PAPO_REDIS_KEY_PREFIX": prefix,
            "PAPO_DATABASE_URL": database_url,
            "PAPO_EVOLUTION_URL": evolution.url,
            "PAPO_EVOLUTION_API_KEY": EVOLUTION_KEY,
            "PAPO_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "PAPO_DEBOUNCE_SECONDS": "1.5",
            "PAPO_LLM_BASE_URL": openai.base_url,
            "PAPO_LLM_API_KEY": "sk-e2e",
            "PAPO_LOG_FORMAT": "json",
            "PAPO_DELIVER_TYPING_MIN_MS": "50",
            "PAPO_DELIVER_TYPING_MAX_MS": "200",
            "HF_HUB_OFFLINE": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "PAPO_EVOLUTION_API_KEYS": json.dumps({OTHER_INSTANCE: OTHER_KEY, **CHANNEL_KEYS}),
            "PAPO_ADMIN_TOKEN": ADMIN_TOKEN,
            **getattr(request.module, "STACK_ENV", {}),
        }
        services = RunningStack(SERVICES, env)
        with services:
            # Like Evolution, the fake announces every send (papo's own too) as `send.message` to ingest.
            evolution.set_webhook(
                services.url("ingest", "/webhook/evolution"), {"x-papo-token": WEBHOOK_TOKEN}
            )
            yield Stack(
                services,
                evolution,
                openai,
                collector,
                rabbitmq_url,
                database_url,
                prefix,
                channel_instances=dict(CHANNEL_INSTANCES),
            )
        # uvicorn finishes its graceful shutdown, then re-raises SIGTERM: -15 is a clean stop, not a kill
        assert all(code in (0, -signal.SIGTERM) for code in services.exit_codes.values()), services.exit_codes
