"""The admin API's HTTP contract without infrastructure (dependencies on closed ports): off without a
token, its own bearer token, JSON errors, 400 for bad input, 503 while a dependency is down."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from pydantic import ValidationError

from papo_ingest.app import create_app
from papo_ingest.settings import IngestSettings

from .fixtures import fixture

# The app's clients keep trying to reach their dependencies in the background. In the unit tier pytest-socket
# refuses those attempts, which is the condition these tests want (dependencies unreachable); its warning about
# each attempt says nothing about the test.
pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket.socket:UserWarning")

WEBHOOK_TOKEN = "webhook-" + "w" * 40
ADMIN_TOKEN = "admin-" + "a" * 40
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
CONVERSATION = "/admin/instances/loja/conversations/5511999990000"


def settings(**overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "webhook_token": WEBHOOK_TOKEN,
        "admin_token": ADMIN_TOKEN,
        "rabbitmq_url": "amqp://guest:guest@127.0.0.1:1/",
        "redis_url": "redis://127.0.0.1:1/0",
        "database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/papo",
        **overrides,
    }
    return IngestSettings(**values)


@pytest.fixture(autouse=True)
async def _close_abandoned_connections() -> AsyncIterator[None]:
    yield
    gc.collect()
    await asyncio.sleep(0.01)


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings())) as test_client:
        yield test_client


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_without_an_admin_token_admin_routes_are_404_and_startup_says_so() -> None:
    app = create_app(settings(admin_token=None))
    collector = Collect()
    logging.getLogger().addHandler(collector)  # after create_app, which configures logging
    try:
        async with AsyncTestClient(app) as test_client:
            for path in (f"{CONVERSATION}/status", "/admin/dead-letters?queue=papo.llm.dlq", CONVERSATION):
                response = await test_client.get(path, headers=ADMIN)
                assert response.status_code == 404
                assert response.json()["status"] == "error"
    finally:
        logging.getLogger().removeHandler(collector)
    assert any("admin API disabled" in message for message in collector.messages)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {WEBHOOK_TOKEN}"},
        {"x-papo-token": WEBHOOK_TOKEN},
        {"x-papo-token": ADMIN_TOKEN},
    ],
)
async def test_anything_but_the_admin_bearer_token_is_401(
    client: AsyncTestClient[Litestar], headers: dict[str, str]
) -> None:
    for method, path in (
        ("GET", f"{CONVERSATION}/status"),
        ("POST", f"{CONVERSATION}/pause"),
        ("DELETE", CONVERSATION),
        ("GET", "/admin/dead-letters?queue=papo.llm.dlq"),
        ("POST", "/admin/dead-letters/replay"),
    ):
        response = await client.request(method, path, headers=headers, json={"minutes": 5})
        assert response.status_code == 401, (method, path)
        assert response.json() == {
            "status": "unauthorized",
            "detail": "send Authorization: Bearer <PAPO_ADMIN_TOKEN>",
        }


async def test_the_admin_token_does_not_open_the_webhook(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/webhook/evolution", json=fixture("connection_update"), headers=ADMIN)
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path", "body", "key"),
    [
        ("GET", "/admin/instances/loja/conversations/abc/status", None, None),
        ("GET", f"{CONVERSATION}/messages?limit=0", None, "limit"),
        ("GET", f"{CONVERSATION}/messages?limit=201", None, "limit"),
        ("GET", f"{CONVERSATION}/messages?before=not-a-cursor", None, None),
        ("POST", f"{CONVERSATION}/pause", {"minutes": 0}, "minutes"),
        ("POST", f"{CONVERSATION}/pause", {"minutes": 7 * 24 * 60 + 1}, "minutes"),
        ("POST", f"{CONVERSATION}/pause", {"minutes": 5, "reason": "x"}, "reason"),
        ("GET", "/admin/dead-letters?queue=papo.llm", None, None),
        ("GET", "/admin/dead-letters?queue=papo.llm.dlq&limit=101", None, "limit"),
        ("POST", "/admin/dead-letters/replay", {"queue": "papo.debounce"}, None),
        ("POST", "/admin/dead-letters/replay", {"queue": "papo.llm.dlq", "limit": 0}, "limit"),
        ("POST", "/admin/dead-letters/replay", {"queue": "papo.llm.dlq", "message_ids": []}, "message_ids"),
    ],
)
async def test_bad_input_is_a_json_400(
    client: AsyncTestClient[Litestar], method: str, path: str, body: Any, key: str | None
) -> None:
    response = await client.request(method, path, headers=ADMIN, json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["status"] == "error"
    if key is not None:
        assert key in {error["key"] for error in answer["errors"]}


@pytest.mark.integration  # dials closed ports on 127.0.0.1: real connection refusals, so not the unit tier
@pytest.mark.parametrize(
    ("method", "path", "body", "dependency"),
    [
        ("GET", f"{CONVERSATION}/status", None, "redis"),
        ("POST", f"{CONVERSATION}/pause", {"minutes": 5}, "redis"),
        ("POST", f"{CONVERSATION}/resume", None, "redis"),
        ("GET", f"{CONVERSATION}/messages", None, "postgresql"),
        ("DELETE", CONVERSATION, None, "postgresql"),
        ("GET", "/admin/dead-letters?queue=papo.llm.dlq", None, "rabbitmq"),
        ("POST", "/admin/dead-letters/replay", {"queue": "papo.llm.dlq"}, "rabbitmq"),
    ],
)
async def test_a_dependency_down_is_a_json_503(
    client: AsyncTestClient[Litestar], method: str, path: str, body: Any, dependency: str
) -> None:
    response = await client.request(method, path, headers=ADMIN, json=body)
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "detail": f"{dependency} is unavailable"}


async def test_readiness_never_checks_postgresql(client: AsyncTestClient[Litestar]) -> None:
    assert set((await client.get("/readyz")).json()["checks"]) == {"rabbitmq", "redis"}


def test_the_admin_token_must_differ_from_the_webhook_token() -> None:
    with pytest.raises(ValidationError, match="must differ"):
        settings(admin_token=WEBHOOK_TOKEN)


@pytest.mark.parametrize("token", ["changeme", "secret"])
def test_production_refuses_placeholder_admin_tokens(token: str) -> None:
    with pytest.raises(ValidationError, match="PAPO_ADMIN_TOKEN must be set to a real secret"):
        settings(environment="production", admin_token=token)


def test_an_empty_admin_token_leaves_the_admin_api_off() -> None:
    assert not settings(admin_token="").admin_enabled
    assert not settings(admin_token=None).admin_enabled
    assert settings().admin_enabled
