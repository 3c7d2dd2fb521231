"""ingest over the real RabbitMQ and Redis, served by uvicorn: a webhook lands once in the consumers' queues,
in the shape and order the rest of papo relies on, and the trace continues from the webhook to the message."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import jwt
import pytest
import uvicorn

from papo_common.topology import DEBOUNCE, PERSIST, TRANSCRIBE, RoutingKey
from papo_ingest.app import create_app
from papo_ingest.settings import IngestSettings
from papo_testing import infra
from papo_testing.rabbit import connected_broker, depth

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evolution"
TOKEN = "integration-" + "t" * 40
AUTH = {"x-papo-token": TOKEN}


def webhook(name: str, **data: Any) -> dict[str, Any]:
    """A fixture webhook with a fresh message id (and any `data` fields replaced)."""
    body: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    if "key" in body["data"]:
        body["data"]["key"]["id"] = uuid.uuid4().hex.upper()[:20]
    body["data"].update(data)
    return body


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_ingest(
    settings: IngestSettings, *, wait_for_broker: bool = True
) -> AsyncIterator[httpx.AsyncClient]:
    """ingest in uvicorn on a free port, and an HTTP client pointed at it."""
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "ingest did not start"
        await asyncio.sleep(0.01)
    if wait_for_broker:
        assert await app.state.broker_link.wait_connected(10)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        await task


def make_settings(rabbitmq_url: str, redis_url: str, redis_prefix: str, **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "rabbitmq_url": rabbitmq_url,
        "redis_url": redis_url,
        "redis_key_prefix": redis_prefix,
        "webhook_token": TOKEN,
        "log_format": "text",
        **overrides,
    }
    return IngestSettings(**values)


@pytest.fixture
async def queues(rabbitmq_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A channel on the test vhost with the consumers' queues declared and empty."""
    async with connected_broker(rabbitmq_url):
        pass
    connection = await aio_pika.connect(rabbitmq_url)
    channel = await connection.channel()
    for service_queue in (DEBOUNCE, TRANSCRIBE, PERSIST):
        await (await channel.declare_queue(service_queue.name, passive=True)).purge()
    yield channel
    await connection.close()


async def drain(
    channel: aio_pika.abc.AbstractChannel, queue_name: str
) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Every message in the queue right now (confirmed publishes are already there)."""
    queue = await channel.declare_queue(queue_name, passive=True)
    taken = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


def bodies(messages: list[aio_pika.abc.AbstractIncomingMessage]) -> list[dict[str, Any]]:
    return [json.loads(message.body) for message in messages]


@pytest.fixture
async def ingest(rabbitmq_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serve_ingest(make_settings(rabbitmq_url, redis_url, redis_prefix)) as client:
        yield client


async def test_a_text_webhook_lands_in_debounce_and_persist(
    ingest: httpx.AsyncClient, queues: aio_pika.abc.AbstractChannel
) -> None:
    body = webhook("text_conversation")
    trace_id = uuid.uuid4().hex
    headers = {**AUTH, "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    response = await ingest.post("/webhook/evolution/messages-upsert", json=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted"}

    debounced, persisted = await drain(queues, DEBOUNCE.name), await drain(queues, PERSIST.name)
    assert bodies(debounced) == bodies(persisted)
    [message] = bodies(debounced)
    assert message["type"] == "inbound_message"
    assert message["message_id"] == body["data"]["key"]["id"]
    assert message["conversation"] == {"instance": "loja-centro", "user_id": "5511912345678@s.whatsapp.net"}
    assert message["text"] == "Oi, vocês abrem sábado?"
    assert debounced[0].routing_key == "inbound.text"
    assert debounced[0].delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    # without an exporter nothing is traced, so there is no trace to continue (tests/e2e/test_observability.py
    # follows one trace through the six services with an exporter)
    assert "traceparent" not in (debounced[0].headers or {})
    assert await drain(queues, TRANSCRIBE.name) == []


async def test_jwt_bearer_from_evolutions_jwt_key(
    ingest: httpx.AsyncClient, queues: aio_pika.abc.AbstractChannel
) -> None:
    iat = int(time.time())
    token = jwt.encode(
        {"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}, TOKEN, "HS256"
    )
    response = await ingest.post(
        "/webhook/evolution", json=webhook("text_conversation"), headers={"authorization": f"Bearer {token}"}
    )
    assert response.json() == {"status": "accepted"}
    assert len(await drain(queues, PERSIST.name)) == 1


async def test_audio_with_and_without_base64(
    ingest: httpx.AsyncClient, queues: aio_pika.abc.AbstractChannel
) -> None:
    inline, fetched = webhook("audio_base64"), webhook("audio_no_base64")
    for body in (inline, fetched):
        assert (await ingest.post("/webhook/evolution", json=body, headers=AUTH)).json()[
            "status"
        ] == "accepted"
    transcribed = {m["message_id"]: m for m in bodies(await drain(queues, TRANSCRIBE.name))}
    assert transcribed[inline["data"]["key"]["id"]]["audio"]["base64"] == inline["data"]["message"]["base64"]
    assert transcribed[inline["data"]["key"]["id"]]["audio"]["media_request"] is None
    assert transcribed[fetched["data"]["key"]["id"]]["audio"]["media_request"] == fetched["data"]
    assert len(await drain(queues, DEBOUNCE.name)) == 2
    assert len(await drain(queues, PERSIST.name)) == 2


async def test_an_operator_message_is_routed_as_inbound_operator(
    ingest: httpx.AsyncClient, queues: aio_pika.abc.AbstractChannel
) -> None:
    response = await ingest.post("/webhook/evolution", json=webhook("from_me"), headers=AUTH)
    assert response.json() == {"status": "accepted"}
    [persisted] = await drain(queues, PERSIST.name)
    assert persisted.routing_key == RoutingKey.INBOUND_OPERATOR
    assert json.loads(persisted.body)["from_me"] is True
    assert await drain(queues, TRANSCRIBE.name) == []


async def test_a_duplicate_publishes_nothing(
    ingest: httpx.AsyncClient, queues: aio_pika.abc.AbstractChannel, redis_client: Any, redis_prefix: str
) -> None:
    body = webhook("text_conversation")
    first = await ingest.post("/webhook/evolution", json=body, headers=AUTH)
    again = await ingest.post("/webhook/evolution/messages-upsert", json=body, headers=AUTH)
    assert (first.json(), again.json()) == ({"status": "accepted"}, {"status": "duplicate"})
    assert again.status_code == 200
    assert len(await drain(queues, DEBOUNCE.name)) == 1
    key = f"{redis_prefix}:ingest:seen:loja-centro:{body['data']['key']['id']}"
    assert 47 * 3600 < await redis_client.ttl(key) <= 48 * 3600


async def test_concurrent_identical_posts_publish_once(
    ingest: httpx.AsyncClient, queues: aio_pika.abc.AbstractChannel
) -> None:
    body = webhook("text_conversation")
    responses = await asyncio.gather(
        *(ingest.post("/webhook/evolution", json=body, headers=AUTH) for _ in range(25))
    )
    statuses = sorted(response.json()["status"] for response in responses)
    assert statuses == ["accepted"] + ["duplicate"] * 24
    assert len(await drain(queues, DEBOUNCE.name)) == 1
    assert len(await drain(queues, PERSIST.name)) == 1


async def test_out_of_order_timestamps_are_preserved(
    ingest: httpx.AsyncClient, queues: aio_pika.abc.AbstractChannel
) -> None:
    later = webhook("text_conversation", messageTimestamp=1760439800)
    earlier = webhook("text_extended", messageTimestamp="1760439700")
    for body in (later, earlier):
        assert (await ingest.post("/webhook/evolution", json=body, headers=AUTH)).json()[
            "status"
        ] == "accepted"
    arrived = bodies(await drain(queues, DEBOUNCE.name))
    assert [m["message_id"] for m in arrived] == [later["data"]["key"]["id"], earlier["data"]["key"]["id"]]
    assert [m["sent_at"][:19] for m in arrived] == ["2025-10-14T11:03:20", "2025-10-14T11:01:40"]


async def test_ignored_events_publish_nothing(ingest: httpx.AsyncClient, rabbitmq_url: str) -> None:
    before = await depth(rabbitmq_url, PERSIST.name)
    for name in (
        "group_text",
        "status_broadcast",
        "newsletter",
        "sticker",
        "messages_update",
    ):
        response = await ingest.post("/webhook/evolution", json=webhook(name), headers=AUTH)
        assert response.json()["status"] == "ignored", name
    assert await depth(rabbitmq_url, PERSIST.name) == before


async def test_connection_update_is_recorded_and_publishes_nothing(
    ingest: httpx.AsyncClient, rabbitmq_url: str
) -> None:
    before = await depth(rabbitmq_url, PERSIST.name)
    response = await ingest.post("/webhook/evolution", json=webhook("connection_update_close"), headers=AUTH)
    assert response.json() == {"status": "accepted"}
    assert await depth(rabbitmq_url, PERSIST.name) == before
    metrics = (await ingest.get("/metrics")).text
    assert 'papo_instance_connected{instance="loja-centro"} 0.0' in metrics


async def test_an_operators_send_message_reaches_debounce_and_persist(
    ingest: httpx.AsyncClient, rabbitmq_url: str
) -> None:
    persist_before, debounce_before = (
        await depth(rabbitmq_url, PERSIST.name),
        await depth(rabbitmq_url, DEBOUNCE.name),
    )
    response = await ingest.post("/webhook/evolution", json=webhook("send_message"), headers=AUTH)
    assert response.json() == {"status": "accepted"}
    assert await depth(rabbitmq_url, PERSIST.name) == persist_before + 1
    assert await depth(rabbitmq_url, DEBOUNCE.name) == debounce_before + 1


async def test_ready_and_metrics_with_everything_up(ingest: httpx.AsyncClient) -> None:
    ready = await ingest.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"rabbitmq": "ok", "redis": "ok"}
    await ingest.post("/webhook/evolution", json=webhook("text_conversation"), headers=AUTH)
    metrics = (await ingest.get("/metrics")).text
    assert 'papo_webhooks_total{outcome="accepted",reason=""}' in metrics
    assert "faststream_published_messages_total" in metrics


async def test_a_chunked_oversize_body_is_413(rabbitmq_url: str, redis_url: str, redis_prefix: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"x" * 1024

    settings = make_settings(rabbitmq_url, redis_url, redis_prefix, ingest_max_body_bytes=4096)
    async with serve_ingest(settings) as client:
        response = await client.post("/webhook/evolution", content=chunks(), headers=AUTH)
    assert response.status_code == 413


# --- dependencies down: 503 (Evolution retries), nothing published, nothing marked, the retry is accepted ---


async def assert_retry_is_accepted(settings: IngestSettings, body: dict[str, Any], rabbitmq_url: str) -> None:
    async with serve_ingest(settings) as healthy:
        retry = await healthy.post("/webhook/evolution", json=body, headers=AUTH)
    assert retry.json() == {"status": "accepted"}


async def test_rabbitmq_down_is_503_and_leaves_no_mark(
    rabbitmq_url: str,
    redis_url: str,
    redis_prefix: str,
    redis_client: Any,
    queues: aio_pika.abc.AbstractChannel,
) -> None:
    body = webhook("text_conversation")
    down = make_settings("amqp://guest:guest@127.0.0.1:1/", redis_url, redis_prefix)
    async with serve_ingest(down, wait_for_broker=False) as client:
        response = await client.post("/webhook/evolution", json=body, headers=AUTH)
        assert (await client.get("/readyz")).status_code == 503
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["reason"] == "rabbitmq"
    assert [key async for key in redis_client.scan_iter(match=f"{redis_prefix}:*")] == []

    await assert_retry_is_accepted(make_settings(rabbitmq_url, redis_url, redis_prefix), body, rabbitmq_url)
    assert len(await drain(queues, DEBOUNCE.name)) == 1


async def test_rabbitmq_lost_mid_flight_is_503_and_the_retry_goes_through(
    rabbitmq_url: str,
    redis_url: str,
    redis_prefix: str,
    redis_client: Any,
    queues: aio_pika.abc.AbstractChannel,
) -> None:
    body = webhook("text_conversation")
    with infra.rabbitmq_vhost() as doomed_url:
        async with serve_ingest(make_settings(doomed_url, redis_url, redis_prefix)) as client:
            before = await client.post("/webhook/evolution", json=webhook("text_conversation"), headers=AUTH)
            assert before.json() == {"status": "accepted"}
            infra.rabbitmqctl("delete_vhost", doomed_url.rsplit("/", 1)[1])
            response = await client.post("/webhook/evolution", json=body, headers=AUTH)
    assert response.status_code == 503
    assert response.json()["reason"] == "rabbitmq"
    assert (
        await redis_client.exists(f"{redis_prefix}:ingest:seen:loja-centro:{body['data']['key']['id']}") == 0
    )

    await assert_retry_is_accepted(make_settings(rabbitmq_url, redis_url, redis_prefix), body, rabbitmq_url)
    assert [m["message_id"] for m in bodies(await drain(queues, PERSIST.name))] == [body["data"]["key"]["id"]]


async def test_ingest_started_before_rabbitmq_connects_when_it_appears(
    redis_url: str, redis_prefix: str
) -> None:
    vhost = f"papo-test-late-{uuid.uuid4().hex[:8]}"
    late_url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    app_settings = make_settings(late_url, redis_url, redis_prefix)
    try:
        async with serve_ingest(app_settings, wait_for_broker=False) as client:
            early = await client.post("/webhook/evolution", json=webhook("text_conversation"), headers=AUTH)
            assert early.status_code == 503
            infra.rabbitmqctl("add_vhost", vhost)
            infra.rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
            deadline = time.monotonic() + 20
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "ingest never connected to RabbitMQ"
                await asyncio.sleep(0.2)
            late = await client.post("/webhook/evolution", json=webhook("text_conversation"), headers=AUTH)
            assert late.json() == {"status": "accepted"}
        assert await depth(late_url, DEBOUNCE.name) == 1
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            infra.rabbitmqctl("delete_vhost", vhost)


async def test_redis_down_is_503_and_publishes_nothing(
    rabbitmq_url: str, redis_url: str, redis_prefix: str, queues: aio_pika.abc.AbstractChannel
) -> None:
    body = webhook("audio_base64")
    async with serve_ingest(make_settings(rabbitmq_url, "redis://127.0.0.1:1/0", redis_prefix)) as client:
        response = await client.post("/webhook/evolution", json=body, headers=AUTH)
        ready = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["reason"] == "redis"
    assert ready.status_code == 503
    assert ready.json()["checks"]["rabbitmq"] == "ok"
    assert await drain(queues, PERSIST.name) == []

    await assert_retry_is_accepted(make_settings(rabbitmq_url, redis_url, redis_prefix), body, rabbitmq_url)
    assert len(await drain(queues, TRANSCRIBE.name)) == 1
