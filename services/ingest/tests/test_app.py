"""The HTTP contract of ingest that needs no broker or Redis: auth, size limit, bad bodies, ignored events,
ops endpoints, and 503 while dependencies are unreachable (here: closed ports)."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from papo_common.logging import JsonFormatter
from papo_common.metrics import REGISTRY
from papo_ingest.app import create_app
from papo_ingest.ops import OPS_PATHS
from papo_ingest.settings import IngestSettings

from .fixtures import fixture

# The app's clients keep trying to reach their dependencies in the background. In the unit tier pytest-socket
# refuses those attempts, which is the condition these tests want (dependencies unreachable); its warning about
# each attempt says nothing about the test.
pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket.socket:UserWarning")

TOKEN = "t0ken-" + "x" * 40
CLOSED_RABBITMQ = "amqp://guest:guest@127.0.0.1:1/"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
AUTH = {"x-papo-token": TOKEN}


def settings(**overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "webhook_token": TOKEN,
        "rabbitmq_url": CLOSED_RABBITMQ,
        "redis_url": CLOSED_REDIS,
        "log_format": "json",
        **overrides,
    }
    return IngestSettings(**values)


@pytest.fixture(autouse=True)
async def _close_abandoned_connections() -> AsyncIterator[None]:
    """aio-pika closes a failed connection attempt from `__del__`; collect it while this test's loop runs."""
    yield
    gc.collect()
    await asyncio.sleep(0.01)


@pytest.fixture
async def client() -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(settings(ingest_max_body_bytes=4096))) as test_client:
        yield test_client


async def test_no_token_is_401_json(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/webhook/evolution", json=fixture("text_conversation"))
    assert response.status_code == 401
    assert response.json()["status"] == "unauthorized"


async def test_wrong_token_is_401(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post(
        "/webhook/evolution/messages-upsert",
        json=fixture("text_conversation"),
        headers={"x-papo-token": "nope"},
    )
    assert response.status_code == 401


async def test_oversize_body_is_413(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/webhook/evolution", content=b"x" * 5000, headers=AUTH)
    assert response.status_code == 413
    assert response.json() == {
        "status": "rejected",
        "reason": "too_large",
        "detail": "the body exceeds PAPO_INGEST_MAX_BODY_BYTES",
    }


async def test_bad_json_is_400(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/webhook/evolution", content=b"{not json", headers=AUTH)
    assert response.status_code == 400
    assert response.json()["reason"] == "bad_json"


async def test_envelope_without_data_is_422(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/webhook/evolution", json={"event": "messages.upsert"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["reason"] == "no_data"


async def test_upsert_without_key_id_is_422(client: AsyncTestClient[Litestar]) -> None:
    body = fixture("text_conversation")
    del body["data"]["key"]["id"]
    response = await client.post("/webhook/evolution", json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"] == "messages.upsert data has no key.id"


async def test_other_events_are_ignored_even_with_dependencies_down(
    client: AsyncTestClient[Litestar],
) -> None:
    response = await client.post(
        "/webhook/evolution/messages-update", json=fixture("messages_update"), headers=AUTH
    )
    assert response.status_code == 200
    assert response.json() == {
        "status": "ignored",
        "reason": "event_not_handled",
        "detail": "messages.update",
    }


async def test_connection_update_with_redis_down_is_retried(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post(
        "/webhook/evolution/connection-update", json=fixture("connection_update"), headers=AUTH
    )
    assert response.status_code == 503
    assert response.json()["reason"] == "redis"


async def test_groups_are_ignored_by_default(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/webhook/evolution", json=fixture("group_text"), headers=AUTH)
    assert response.json() == {"status": "ignored", "reason": "group"}


async def test_broker_down_is_503_with_retry_after(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/webhook/evolution", json=fixture("text_conversation"), headers=AUTH)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["reason"] == "rabbitmq"


async def test_health_and_metrics_need_no_token(client: AsyncTestClient[Litestar]) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert set(ready.json()["checks"]) == {"rabbitmq", "redis"}
    await client.post("/webhook/evolution", json={}, headers={"x-papo-token": "nope"})
    metrics = (await client.get("/metrics")).text
    assert 'papo_webhooks_total{outcome="unauthorized",reason="wrong_token"}' in metrics


async def test_requests_are_counted_by_route_and_status_and_the_ops_endpoints_are_not(
    client: AsyncTestClient[Litestar],
) -> None:
    def count(path: str, status: int, series: str = "litestar_requests_total", method: str = "POST") -> float:
        labels = {"method": method, "path": path, "status_code": str(status), "app_name": "papo-ingest"}
        return REGISTRY.get_sample_value(series, labels) or 0

    before = {
        "by_event": count("/webhook/evolution/{event}", 401),
        "503": count("/webhook/evolution", 503),
        "500": count("/webhook/evolution", 500, "litestar_requests_error_total"),
    }
    await client.post("/webhook/evolution/messages-upsert", json={})
    await client.post("/webhook/evolution", json=fixture("text_conversation"), headers=AUTH)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    client.app.state.intake.receive = broken
    await client.post("/webhook/evolution", json=fixture("text_conversation"), headers=AUTH)
    await client.get("/metrics")
    await client.get("/healthz")

    assert count("/webhook/evolution/{event}", 401) == before["by_event"] + 1, "the route's template"
    assert count("/webhook/evolution", 503) == before["503"] + 1
    assert count("/webhook/evolution", 500, "litestar_requests_error_total") == before["500"] + 1
    assert all(count(path, 200, method="GET") == 0 for path in OPS_PATHS)
    assert count("/", 200, method="GET") == 0, "the metrics mount, under its own path"


async def test_unknown_route_is_json_404(client: AsyncTestClient[Litestar]) -> None:
    response = await client.post("/webhook/other", json={}, headers=AUTH)
    assert response.status_code == 404
    assert response.json()["status"] == "error"


async def test_an_unexpected_error_is_a_bare_json_500(client: AsyncTestClient[Litestar]) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret internals")

    client.app.state.intake.receive = broken
    response = await client.post("/webhook/evolution", json=fixture("text_conversation"), headers=AUTH)
    assert response.status_code == 500
    body = response.json()
    assert body["status"] == "error"
    assert "secret internals" not in response.text
    assert len(body["trace_id"]) == 32


async def test_unauthenticated_mode_accepts_without_token() -> None:
    app = create_app(settings(webhook_token=None, webhook_allow_unauthenticated=True))
    async with AsyncTestClient(app) as test_client:
        response = await test_client.post("/webhook/evolution", json=fixture("messages_update"))
    assert response.status_code == 200


async def test_secrets_and_audio_never_reach_the_logs() -> None:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter("ingest", "stable").format(record))

    app = create_app(settings())
    collector = Collect(level=logging.DEBUG)
    logging.getLogger().addHandler(collector)
    try:
        async with AsyncTestClient(app) as test_client:
            for name in ("audio_base64", "text_conversation", "connection_update"):
                await test_client.post("/webhook/evolution", json=fixture(name), headers=AUTH)
            await test_client.post(
                "/webhook/evolution", json=fixture("audio_base64"), headers={"x-papo-token": "bad"}
            )
            await test_client.post("/webhook/evolution", content=b"{bad", headers=AUTH)
    finally:
        logging.getLogger().removeHandler(collector)
    logged = "\n".join(lines)
    assert lines
    assert TOKEN not in logged
    assert fixture("audio_base64")["apikey"] not in logged
    assert fixture("audio_base64")["data"]["message"]["base64"] not in logged
    assert all(json.loads(line) for line in lines)
