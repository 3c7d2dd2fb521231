"""What a business needs from its bot, over the six real services: a human can take over, people can ask
for a human or start over, sessions end and come back with context, stale backlog stays unanswered, numbers
stay apart, long replies read like a person typed them, dead letters can be replayed, and a person's data
can be erased."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx

from papo_common.contracts import ConversationRef
from papo_common.redis import ConversationKeys, make_redis
from papo_testing.fake_openai import default_responder
from papo_testing.quiescence import settled
from papo_testing.webhooks import text_webhook

REDIS_URL = "redis://127.0.0.1:6379/0"  # the stack fixture's Redis (tests/e2e/conftest.py)

Stack = Any  # the `stack` fixture of tests/e2e/conftest.py

LONG_ANSWER = "\n\n".join(
    [
        "Temos bolo de cenoura com cobertura de chocolate, bolo de fubá e bolo de laranja, todos feitos no dia. "
        "O de cenoura é o mais pedido da casa.",
        "A fatia custa R$ 9,50 e o bolo inteiro, que serve umas doze pessoas, sai por R$ 68,00. Encomendas "
        "grandes pedimos com um dia de antecedência.",
        "Entregamos no bairro sem custo para pedidos acima de R$ 50,00. Quer que eu anote o seu pedido agora?",
    ]
)


def RESPONDER(messages: list[dict[str, Any]]) -> str:
    last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return LONG_ANSWER if "cardápio completo" in last else default_responder(messages)


STACK_ENV = {
    "PAPO_DEBOUNCE_SECONDS": "1.0",
    "PAPO_SESSION_IDLE_SECONDS": "4",
    "PAPO_SESSION_SWEEP_INTERVAL_SECONDS": "0.5",
    "PAPO_SESSION_CARRYOVER_TURNS": "2",
    "PAPO_DELIVER_MIN_SEND_INTERVAL_MS": "400",
    "PAPO_DELIVER_MAX_CHUNK_CHARS": "200",
}


async def post(stack: Stack, *webhooks: dict[str, Any]) -> list[str]:
    async with httpx.AsyncClient(headers={"x-papo-token": stack.webhook_token}) as client:
        answers = [await client.post(stack.webhook_url(), json=body) for body in webhooks]
    return [answer.json()["status"] for answer in answers]


def texts_to(stack: Stack, number: str, instance: str | None = None) -> list[Any]:
    return [s for s in stack.evolution.sent_texts(instance) if s.number.startswith(number)]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


async def rows_of(stack: Stack, number: str, instance: str | None = None) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(stack.database_url.replace("+asyncpg", ""))
    try:
        return await connection.fetch(
            "SELECT m.role, m.kind, m.text, m.delivered_at IS NOT NULL AS delivered FROM messages m JOIN conversations c ON c.id = m.conversation_id"
            " WHERE c.instance = $1 AND c.user_id = $2 ORDER BY m.sent_at, m.id",
            instance or stack.instance,
            f"{number}@s.whatsapp.net",
        )
    finally:
        await connection.close()


def now() -> int:
    return int(time.time())


async def test_an_operator_message_pauses_the_bot(stack: Stack) -> None:
    number = "5521900000001"
    await post(
        stack, text_webhook(stack.instance, "OPA1", "oi, vocês abrem domingo?", now() - 2, number=number)
    )
    operator = text_webhook(
        stack.instance, "OPB1", "Oi! Abrimos sim, das 8h às 12h.", now() - 1, number=number, from_me=True
    )
    assert await post(stack, operator) == ["accepted"]
    await post(stack, text_webhook(stack.instance, "OPA2", "obrigada!", now(), number=number))
    await settled(stack.rabbitmq_url, REDIS_URL, stack.redis_prefix)
    assert texts_to(stack, number) == [], "the human answered; the bot stays out"
    rows = await eventually(lambda: _when(rows_of(stack, number), lambda r: len(r) == 3))
    assert [row["role"] for row in rows] == ["user", "operator", "user"], "everything is still recorded"


async def test_asking_for_a_human_gets_a_notice_and_silence(stack: Stack) -> None:
    number = "5521900000002"
    await post(stack, text_webhook(stack.instance, "HU1", "Atendente!", now(), number=number))
    [notice] = await eventually(lambda: _ready(texts_to(stack, number)))
    assert "equipe" in notice.text
    await post(stack, text_webhook(stack.instance, "HU2", "alguém aí?", now(), number=number))
    await settled(stack.rabbitmq_url, REDIS_URL, stack.redis_prefix)
    assert len(texts_to(stack, number)) == 1


async def test_an_idle_session_closes_and_the_next_one_remembers_recent_turns(stack: Stack) -> None:
    number = "5521900000003"
    await post(stack, text_webhook(stack.instance, "SE1", "meu nome é Joana", now(), number=number))
    await eventually(lambda: _ready(texts_to(stack, number)))
    rows = await eventually(
        lambda: _when(rows_of(stack, number), lambda r: any(x["kind"] == "session_closed" for x in r)), 20
    )
    assert rows[-1]["role"] == "system" and rows[-1]["text"] == "idle"
    redis = make_redis("redis://127.0.0.1:6379/0")
    keys = ConversationKeys(
        stack.redis_prefix, ConversationRef(instance=stack.instance, user_id=f"{number}@s.whatsapp.net")
    )
    assert not await redis.exists(keys.history), "the hot history expired with the session"
    await redis.aclose()

    await post(stack, text_webhook(stack.instance, "SE2", "lembra do meu nome?", now(), number=number))
    await eventually(lambda: _ready(texts_to(stack, number)[1:]))
    [request] = [r for r in stack.openai.requests if r.last_user_message == "lembra do meu nome?"]
    earlier = " ".join(m["content"] for m in request.messages[1:-1])
    assert "meu nome é Joana" in earlier, "rebuilt from PostgreSQL: the last turns of the previous session"


async def test_starting_over_confirms_and_forgets(stack: Stack) -> None:
    number = "5521900000004"
    await post(stack, text_webhook(stack.instance, "RS1", "quero um bolo de fubá", now(), number=number))
    await eventually(lambda: _ready(texts_to(stack, number)))
    await post(stack, text_webhook(stack.instance, "RS2", "reiniciar", now(), number=number))
    notice = (await eventually(lambda: _ready(texts_to(stack, number)[1:])))[0]
    assert "encerrada" in notice.text
    await post(stack, text_webhook(stack.instance, "RS3", "oi", now(), number=number))
    await eventually(lambda: _ready(texts_to(stack, number)[2:]))
    [request] = [
        r for r in stack.openai.requests if r.last_user_message == "oi" and "fubá" not in str(r.messages)
    ]
    assert len(request.messages) == 2, "a fresh start: the system prompt and the new message, nothing else"


async def test_stale_backlog_is_recorded_but_not_answered(stack: Stack) -> None:
    number = "5521900000005"
    assert await post(
        stack, text_webhook(stack.instance, "ST1", "oi, tem pão?", now() - 3 * 3600, number=number)
    ) == ["accepted"]
    await eventually(lambda: _when(rows_of(stack, number), lambda r: len(r) == 1))
    await settled(stack.rabbitmq_url, REDIS_URL, stack.redis_prefix)
    assert texts_to(stack, number) == []


async def test_two_numbers_keep_their_people_and_their_keys_apart(stack: Stack) -> None:
    number = "5521900000006"
    await post(
        stack,
        text_webhook(stack.instance, "TI1", "quanto custa o bolo?", now(), number=number),
        text_webhook(stack.other_instance, "TI1", "quanto custa o pão?", now(), number=number),
    )
    loja = await eventually(lambda: _ready(texts_to(stack, number, stack.instance)))
    padaria = await eventually(lambda: _ready(texts_to(stack, number, stack.other_instance)))
    assert "bolo" in loja[0].text and "pão" not in loja[0].text
    assert "pão" in padaria[0].text and "bolo" not in padaria[0].text
    keys = {
        r.instance: r.headers.get("apikey")
        for r in stack.evolution.requests
        if r.endpoint == "/message/sendText" and r.json.get("number", "").startswith(number)
    }
    assert keys == {
        stack.instance: "evolution-key-for-loja",
        stack.other_instance: "evolution-key-for-padaria",
    }


async def test_a_long_reply_arrives_as_paced_messages_in_order(stack: Stack) -> None:
    number = "5521900000007"
    await post(
        stack, text_webhook(stack.instance, "LG1", "me manda o cardápio completo", now(), number=number)
    )
    chunks = await eventually(lambda: _when(_sync(texts_to(stack, number)), lambda c: len(c) >= 3), 30)
    assert "\n\n".join(chunk.text for chunk in chunks) == LONG_ANSWER
    gaps = [b.received_monotonic - a.received_monotonic for a, b in itertools.pairwise(chunks)]
    assert all(gap >= 0.35 for gap in gaps), gaps


async def test_a_dead_letter_is_replayed_and_answered(stack: Stack) -> None:
    number = "5521900000008"
    stack.openai.fail_next(401)
    await post(stack, text_webhook(stack.instance, "DL1", "vocês entregam?", now(), number=number))
    admin = {"authorization": f"Bearer {stack.admin_token}"}
    base = stack.services.url("ingest", "/admin/dead-letters")
    async with httpx.AsyncClient(headers=admin) as client:

        async def dead() -> list[Any]:
            listed = (await client.get(base, params={"queue": "papo.llm.dlq"})).json()
            return [m for m in listed["messages"] if "DL1" in json.dumps(m)]

        await eventually(dead)
        assert texts_to(stack, number) == []
        replayed = await client.post(f"{base}/replay", json={"queue": "papo.llm.dlq", "limit": 10})
        assert replayed.status_code == 200 and replayed.json()["replayed"] >= 1
    await eventually(lambda: _ready(texts_to(stack, number)))


async def test_erasure_leaves_nothing_of_the_person(stack: Stack) -> None:
    number = "5521900000009"
    await post(stack, text_webhook(stack.instance, "ER1", "me esquece, por favor", now(), number=number))
    await eventually(lambda: _ready(texts_to(stack, number)))
    # erase once the conversation is at rest: what is still in flight would be written again (see the README)
    await eventually(lambda: _when(rows_of(stack, number), lambda r: len(r) == 2 and r[1]["delivered"]))
    url = stack.services.url(
        "ingest", f"/admin/instances/{stack.instance}/conversations/{number}@s.whatsapp.net/"
    )
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {stack.admin_token}"}) as client:
        assert (await client.delete(url)).status_code == 200
    assert await rows_of(stack, number) == []
    redis = make_redis("redis://127.0.0.1:6379/0")
    pattern = ConversationKeys(
        stack.redis_prefix, ConversationRef(instance=stack.instance, user_id=f"{number}@s.whatsapp.net")
    ).pattern
    assert [key async for key in redis.scan_iter(match=pattern.replace("{", "\\{").replace("}", "\\}"))] == []
    await redis.aclose()


async def _when(awaitable: Awaitable[Any], check: Callable[[Any], bool]) -> Any:
    value = await awaitable
    return value if check(value) else None


async def _ready(value: list[Any]) -> list[Any]:
    return value


async def _sync(value: Any) -> Any:
    return value
