"""The admin API's dead letters over the real RabbitMQ: listed without being taken out, replayed to the queue
they died in with their routing key, body and headers, and acknowledged only once the replay is confirmed."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from litestar import Litestar
from litestar.testing import AsyncTestClient

from papo_common.topology import EXCHANGE, LLM, RoutingKey
from papo_ingest.admin import dead_letters as replay_module
from papo_ingest.app import create_app
from papo_ingest.settings import IngestSettings
from papo_testing.rabbit import connected_broker, depth

ADMIN_TOKEN = "admin-integration-" + "a" * 40
DLQ = LLM.dead_letter_name


@pytest.fixture
async def admin(
    rabbitmq_url: str, redis_url: str, redis_prefix: str, database_url: str
) -> AsyncIterator[AsyncTestClient[Litestar]]:
    settings = IngestSettings(
        rabbitmq_url=rabbitmq_url,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        database_url=database_url,
        webhook_token="webhook-integration-" + "w" * 40,
        admin_token=ADMIN_TOKEN,
        log_format="text",
    )
    app = create_app(settings)
    async with AsyncTestClient(app, timeout=30) as client:
        assert await app.state.broker_link.wait_connected(10)
        client.headers.update({"authorization": f"Bearer {ADMIN_TOKEN}"})
        yield client


@pytest.fixture
async def channel(rabbitmq_url: str) -> AsyncIterator[AbstractChannel]:
    """A channel on the test vhost with papo's topology declared and papo.llm and its DLQ empty."""
    async with connected_broker(rabbitmq_url):
        pass
    connection = await aio_pika.connect(rabbitmq_url)
    channel = await connection.channel(publisher_confirms=True)
    for name in (LLM.name, DLQ):
        await (await channel.get_queue(name)).purge()
    yield channel
    for name in (LLM.name, DLQ):
        await (await channel.get_queue(name)).purge()
    await connection.close()


def burst_body(n: int) -> bytes:
    """A body that breaks the Burst contract, as a poison message would."""
    return json.dumps({"type": "burst", "version": 1, "broken": n}).encode()


async def dead_letter(channel: AbstractChannel, rabbitmq_url: str, *bodies: bytes) -> list[str]:
    """Publish each body as a `burst.ready` and reject it from papo.llm the way the llm's consumer rejects
    a poison message: RabbitMQ itself dead-letters it to papo.llm.dlq and writes `x-death`."""
    exchange = await channel.get_exchange(EXCHANGE.name)
    queue = await channel.get_queue(LLM.name)
    ids = []
    for body in bodies:
        message_id = uuid.uuid4().hex
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                type="Burst",
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"},
            ),
            routing_key=RoutingKey.BURST_READY,
        )
        taken = await queue.get(timeout=5)
        await taken.reject(requeue=False)
        ids.append(message_id)
    await wait_for_depth(rabbitmq_url, DLQ, len(bodies))
    return ids


async def wait_for_depth(rabbitmq_url: str, queue: str, expected: int) -> None:
    for _ in range(100):
        if await depth(rabbitmq_url, queue) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{queue} never held {expected} messages (has {await depth(rabbitmq_url, queue)})")


async def drain(channel: AbstractChannel, queue_name: str) -> list[AbstractIncomingMessage]:
    queue = await channel.get_queue(queue_name)
    taken = []
    while (message := await queue.get(no_ack=True, fail=False)) is not None:
        taken.append(message)
    return taken


async def test_listing_shows_dead_letters_and_leaves_them_in_the_queue(
    admin: AsyncTestClient[Litestar], channel: AbstractChannel, rabbitmq_url: str
) -> None:
    ids = await dead_letter(channel, rabbitmq_url, burst_body(1), burst_body(2))

    for _ in range(2):  # a listing is repeatable: nothing was taken out the first time
        response = await admin.get("/admin/dead-letters", params={"queue": DLQ, "limit": 20})
        assert response.status_code == 200
        listing = response.json()
        assert (listing["queue"], listing["depth"]) == (DLQ, 2)
        assert sorted(m["message_id"] for m in listing["messages"]) == sorted(ids)
    first = next(m for m in listing["messages"] if m["message_id"] == ids[0])
    assert first["type"] == "Burst"
    assert first["original_routing_key"] == RoutingKey.BURST_READY
    assert first["original_queue"] == LLM.name
    [death] = first["deaths"]
    assert (death["reason"], death["count"], death["queue"], death["exchange"]) == (
        "rejected",
        1,
        LLM.name,
        "papo",
    )
    assert death["routing-keys"] == [RoutingKey.BURST_READY]
    assert first["body"] == {"type": "burst", "version": 1, "broken": 1}
    assert first["headers"]["traceparent"].startswith("00-")
    assert "x-death" not in first["headers"]

    one = (await admin.get("/admin/dead-letters", params={"queue": DLQ, "limit": 1})).json()
    assert (one["depth"], len(one["messages"])) == (2, 1)
    assert await depth(rabbitmq_url, DLQ) == 2
    assert await depth(rabbitmq_url, LLM.name) == 0


async def test_replay_sends_them_back_to_their_queue_and_empties_the_dlq(
    admin: AsyncTestClient[Litestar], channel: AbstractChannel, rabbitmq_url: str
) -> None:
    ids = await dead_letter(channel, rabbitmq_url, burst_body(1), burst_body(2))
    originals = {
        message["message_id"]: message
        for message in (await admin.get("/admin/dead-letters", params={"queue": DLQ})).json()["messages"]
    }

    response = await admin.post("/admin/dead-letters/replay", json={"queue": DLQ, "limit": 10})
    assert response.status_code == 200
    assert response.json() == {
        "status": "replayed",
        "queue": DLQ,
        "replayed": 2,
        "no_original_route": 0,
        "unroutable": 0,
        "not_found": [],
        "error": None,
    }
    assert await depth(rabbitmq_url, DLQ) == 0
    replayed = await drain(channel, LLM.name)
    assert sorted(m.message_id or "" for m in replayed) == sorted(ids)
    for message in replayed:
        original = originals[message.message_id]
        assert json.loads(message.body) == original["body"]
        assert message.routing_key == RoutingKey.BURST_READY
        assert message.exchange == EXCHANGE.name
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert (message.type, message.content_type) == ("Burst", "application/json")
        headers: dict[str, Any] = dict(message.headers)
        assert headers["traceparent"] == original["headers"]["traceparent"]
        assert headers["x-papo-replayed-from"] == DLQ
        assert not {"x-death", "x-first-death-reason", "x-first-death-queue"} & set(headers)


async def test_replay_by_message_id_picks_only_those(
    admin: AsyncTestClient[Litestar], channel: AbstractChannel, rabbitmq_url: str
) -> None:
    ids = await dead_letter(channel, rabbitmq_url, burst_body(1), burst_body(2), burst_body(3))

    response = await admin.post(
        "/admin/dead-letters/replay", json={"queue": DLQ, "message_ids": [ids[1], "not-there"]}
    )
    assert response.json()["replayed"] == 1
    assert response.json()["not_found"] == ["not-there"]
    assert [m.message_id for m in await drain(channel, LLM.name)] == [ids[1]]
    left = (await admin.get("/admin/dead-letters", params={"queue": DLQ})).json()["messages"]
    assert sorted(m["message_id"] for m in left) == sorted([ids[0], ids[2]])


async def test_a_message_without_x_death_stays_in_the_dlq(
    admin: AsyncTestClient[Litestar], channel: AbstractChannel, rabbitmq_url: str
) -> None:
    await channel.default_exchange.publish(aio_pika.Message(b"{}", message_id="orphan"), routing_key=DLQ)
    await wait_for_depth(rabbitmq_url, DLQ, 1)

    report = (await admin.post("/admin/dead-letters/replay", json={"queue": DLQ})).json()
    assert (report["replayed"], report["no_original_route"]) == (0, 1)
    assert await depth(rabbitmq_url, DLQ) == 1
    assert await depth(rabbitmq_url, LLM.name) == 0


async def test_an_unroutable_replay_is_not_acknowledged(
    admin: AsyncTestClient[Litestar], channel: AbstractChannel, rabbitmq_url: str
) -> None:
    await dead_letter(channel, rabbitmq_url, burst_body(1))
    llm = await channel.get_queue(LLM.name)
    await llm.unbind(EXCHANGE.name, RoutingKey.BURST_READY)
    try:
        report = (await admin.post("/admin/dead-letters/replay", json={"queue": DLQ})).json()
    finally:
        await llm.bind(EXCHANGE.name, RoutingKey.BURST_READY)
    assert (report["replayed"], report["unroutable"]) == (0, 1)
    assert await depth(rabbitmq_url, DLQ) == 1

    assert (await admin.post("/admin/dead-letters/replay", json={"queue": DLQ})).json()["replayed"] == 1
    assert await depth(rabbitmq_url, DLQ) == 0


async def test_a_replay_failing_midway_loses_nothing(
    admin: AsyncTestClient[Litestar],
    channel: AbstractChannel,
    rabbitmq_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = await dead_letter(channel, rabbitmq_url, burst_body(1), burst_body(2), burst_body(3))
    copy, calls = replay_module._copy, []

    def fail_on_the_second(message: AbstractIncomingMessage, queue_name: str) -> aio_pika.Message:
        calls.append(message.message_id)
        if len(calls) == 2:
            raise ConnectionError("broker went away")
        return copy(message, queue_name)

    monkeypatch.setattr(replay_module, "_copy", fail_on_the_second)
    response = await admin.post("/admin/dead-letters/replay", json={"queue": DLQ, "limit": 3})
    assert response.status_code == 503
    assert response.json()["status"] == "stopped"
    assert response.json()["replayed"] == 1
    assert "ConnectionError" in response.json()["error"]

    [replayed] = await drain(channel, LLM.name)
    assert replayed.message_id == ids[0]
    left = (await admin.get("/admin/dead-letters", params={"queue": DLQ})).json()
    assert left["depth"] == 2
    assert sorted(m["message_id"] for m in left["messages"]) == sorted(ids[1:])


async def test_concurrent_replays_and_listings_replay_each_message_once(
    admin: AsyncTestClient[Litestar], channel: AbstractChannel, rabbitmq_url: str
) -> None:
    ids = await dead_letter(channel, rabbitmq_url, *(burst_body(n) for n in range(8)))

    answers = await asyncio.gather(
        *(admin.post("/admin/dead-letters/replay", json={"queue": DLQ, "limit": 8}) for _ in range(3)),
        *(admin.get("/admin/dead-letters", params={"queue": DLQ}) for _ in range(3)),
    )
    # a listing holds messages for a moment, so a replay racing it may stop short; run one more after
    await admin.post("/admin/dead-letters/replay", json={"queue": DLQ, "limit": 8})
    assert all(answer.status_code == 200 for answer in answers)
    replayed = [m.message_id for m in await drain(channel, LLM.name)]
    assert sorted(replayed) == sorted(ids), "every message replayed exactly once"
    assert await depth(rabbitmq_url, DLQ) == 0
