"""A person sends three quick texts; papo answers once, with one reply built from all three, in order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import httpx
import pytest

from papo_testing.fake_evolution import BAILEYS, BUSINESS, EVOLUTION
from papo_testing.quiescence import settled
from papo_testing.rabbit import depths
from papo_testing.webhooks import text_webhook

REDIS_URL = "redis://127.0.0.1:6379/0"  # the stack fixture's Redis (tests/e2e/conftest.py)

Stack = Any  # the `stack` fixture of tests/e2e/conftest.py

T = int(time.time()) - 10  # messageTimestamp of the first message: recent, or it would be stale


async def wait_until(predicate, timeout: float, interval: float = 0.2):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize(
    ("channel", "cake"), [(BAILEYS, "cenoura"), (EVOLUTION, "milho"), (BUSINESS, "fubá")]
)
async def test_burst_is_answered_once_in_order_and_remembered(stack: Stack, channel: str, cake: str) -> None:
    """On every Evolution channel: typing and read receipts refused by `EVOLUTION` and the Cloud API cost
    nothing, and papo's own `send.message` echo neither pauses the bot nor becomes an operator row."""
    instance = stack.channel_instances[channel]
    order = f"quero encomendar um bolo de {cake}"
    burst = [
        text_webhook(instance, "3EB0A1", "oi", T, channel=channel),
        text_webhook(instance, "3EB0A3", order, T + 2, channel=channel),
        text_webhook(instance, "3EB0A2", "tudo bem?", T + 1, channel=channel),
        text_webhook(instance, "3EB0A1", "oi", T, channel=channel),  # Evolution delivers duplicates
    ]
    async with httpx.AsyncClient(headers={"x-papo-token": stack.webhook_token}) as client:
        answers = [await client.post(stack.webhook_url(), json=body) for body in burst]
    assert [a.status_code for a in answers] == [200, 200, 200, 200]
    assert [a.json()["status"] for a in answers] == ["accepted", "accepted", "accepted", "duplicate"]

    async def one_text_sent():  # type: ignore[no-untyped-def]
        return [s for s in stack.evolution.sent_texts(instance) if s.number.startswith("5511999990000")]

    [sent] = await wait_until(one_text_sent, timeout=30)
    [completion] = [r for r in stack.openai.requests if order in r.last_user_message]
    prompt = completion.last_user_message
    assert prompt.index("oi") < prompt.index("tudo bem?") < prompt.index(order)
    assert sent.text and sent.number.startswith("5511999990000")

    async def reply_delivered():  # type: ignore[no-untyped-def]
        connection = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
        try:
            return await connection.fetch(
                "SELECT m.role, m.text, m.delivered_at FROM messages m"
                " JOIN conversations c ON c.id = m.conversation_id"
                " WHERE m.instance = $1 AND c.user_id = $2 ORDER BY m.sent_at, m.id",
                instance,
                "5511999990000@s.whatsapp.net",
            )
        finally:
            await connection.close()

    rows = await wait_until(
        lambda: _when(reply_delivered(), lambda r: len(r) == 4 and r[-1]["delivered_at"] is not None),
        timeout=15,
    )
    assert [(r["role"], r["text"]) for r in rows[:3]] == [
        ("user", "oi"),
        ("user", "tudo bem?"),
        ("user", order),
    ]
    assert rows[3]["role"] == "assistant" and rows[3]["text"] == sent.text
    [echo] = [w for w in stack.evolution.delivered_webhooks("send.message") if w.instance == instance]
    assert echo.status == 200 and echo.body["data"]["key"]["id"] == sent.message_id

    await settled(stack.rabbitmq_url, REDIS_URL, stack.redis_prefix)  # nothing left that could answer again
    assert len([s for s in stack.evolution.sent_texts(instance) if s.number.startswith("5511999990000")]) == 1
    assert len([r for r in stack.openai.requests if order in r.last_user_message]) == 1
    assert {name: n for name, n in (await depths(stack.rabbitmq_url)).items() if n} == {}


async def _when(awaitable, check):  # type: ignore[no-untyped-def]
    value = await awaitable
    return value if check(value) else None


async def test_text_voice_text_is_one_ordered_prompt_and_one_reply(stack: Stack) -> None:
    import base64
    from pathlib import Path

    from papo_testing.webhooks import audio_webhook

    number = "5511955550001"
    note = Path(__file__).parents[1] / "fixtures" / "audio" / "pt_pizza.ogg"
    now = int(time.time())
    webhooks = [
        text_webhook(stack.instance, "3EB0M1", "oi", now - 3, number=number),
        audio_webhook(
            stack.instance,
            "3EB0M2",
            now - 2,
            base64=base64.b64encode(note.read_bytes()).decode(),
            number=number,
        ),
        text_webhook(stack.instance, "3EB0M3", "e aí?", now - 1, number=number),
    ]
    async with httpx.AsyncClient(headers={"x-papo-token": stack.webhook_token}) as client:
        # the voice note is posted last: arrival order is not send order
        for body in (webhooks[0], webhooks[2], webhooks[1]):
            assert (await client.post(stack.webhook_url(), json=body)).json()["status"] == "accepted"

    async def sent():  # type: ignore[no-untyped-def]
        return [s for s in stack.evolution.sent_texts(stack.instance) if s.number.startswith(number)]

    await wait_until(sent, timeout=90)
    await settled(stack.rabbitmq_url, REDIS_URL, stack.redis_prefix)
    assert len(await sent()) == 1, "one answer for the whole burst"
    [request] = [r for r in stack.openai.requests if "e aí?" in r.last_user_message]
    lines = request.last_user_message.splitlines()
    assert lines[0] == "oi" and lines[2] == "e aí?"
    assert lines[1].startswith("🎤 ") and "pizza" in lines[1].lower(), lines[1]
