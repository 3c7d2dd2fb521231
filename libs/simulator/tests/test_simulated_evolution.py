"""The simulator answers papo's calls as Evolution 2.3 does, and turns the page's actions into Evolution's
webhooks. In process: nothing is posted (the webhook worker is not started), the queue is read instead."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from pydantic import SecretStr

from papo_simulator.app import create_app
from papo_simulator.settings import SimulatorSettings

KEY = "simulator-key"
INSTANCE = "papo-shop"
ANA = "5511987650001"


@pytest.fixture
def app() -> Litestar:
    return create_app(
        SimulatorSettings(evolution_api_key=SecretStr(KEY), webhook_token=SecretStr("hook-token"))
    )


@pytest.fixture
def client(app: Litestar) -> TestClient[Litestar]:
    return TestClient(app)  # no lifespan: the webhook worker stays off


def posted(app: Litestar) -> list[dict[str, Any]]:
    queue = app.state.phones._poster._queue
    return [queue.get_nowait().body for _ in range(queue.qsize())]


def evolution(client: TestClient[Litestar], path: str, body: Any, key: str = KEY) -> Any:
    return client.post(f"{path}/{INSTANCE}", json=body, headers={"apikey": key})


def test_guards_run_in_evolutions_order(client: TestClient[Litestar]) -> None:
    unknown = client.post("/message/sendText/nobody", json={}, headers={"apikey": "wrong"})
    assert unknown.status_code == 404
    assert unknown.json()["response"]["message"] == ['The "nobody" instance does not exist']
    wrong_key = evolution(client, "/message/sendText", {"number": ANA, "text": "hi"}, key="wrong")
    assert wrong_key.status_code == 401
    assert wrong_key.json() == {
        "status": 401,
        "error": "Unauthorized",
        "response": {"message": "Unauthorized"},
    }


def test_send_text_is_validated_like_evolution(client: TestClient[Litestar]) -> None:
    missing = evolution(client, "/message/sendText", {"number": ANA})
    assert missing.status_code == 400
    assert missing.json()["response"]["message"] == [['instance requires property "text"']]
    stranger = evolution(client, "/message/sendText", {"number": "5500000000000", "text": "hi"})
    assert stranger.status_code == 400
    assert stranger.json()["response"]["message"][0]["exists"] is False


def test_a_sent_text_reaches_the_chat_and_is_announced_as_send_message(
    app: Litestar, client: TestClient[Litestar]
) -> None:
    answer = evolution(client, "/message/sendText", {"number": ANA, "text": "Hello Ana", "delay": 0})

    assert answer.status_code == 201
    body = answer.json()
    assert body["key"]["fromMe"] is True and body["key"]["remoteJid"] == f"{ANA}@s.whatsapp.net"
    assert body["key"]["id"].startswith("3EB0")
    chat = client.get(f"/api/chats/{INSTANCE}/{ANA}").json()
    assert [(m["author"], m["text"]) for m in chat["messages"]] == [("bot", "Hello Ana")]
    [webhook] = posted(app)
    assert webhook["event"] == "send.message" and webhook["instance"] == INSTANCE
    assert webhook["data"]["key"]["id"] == body["key"]["id"]


def test_presence_types_for_its_delay(app: Litestar, client: TestClient[Litestar]) -> None:
    world = app.state.world
    seen: list[bool] = []
    world.announce = lambda kind, chat, **details: (
        seen.append(details["typing"]) if kind == "typing" else None
    )

    answer = evolution(client, "/chat/sendPresence", {"number": ANA, "presence": "composing", "delay": 20})

    assert answer.status_code == 201 and answer.json() == {"presence": "composing"}
    assert seen == [True, False]
    bad = evolution(client, "/chat/sendPresence", {"number": ANA, "presence": "dancing", "delay": 0})
    assert bad.status_code == 400


def test_the_page_writes_webhooks_and_papo_reads_them(app: Litestar, client: TestClient[Litestar]) -> None:
    written = client.post(f"/api/chats/{INSTANCE}/{ANA}/messages", json={"text": "oi"})
    assert written.status_code == 202
    operator = client.post(
        f"/api/chats/{INSTANCE}/{ANA}/messages", json={"text": "Maria here", "as_operator": True}
    )
    assert operator.status_code == 202
    note = base64.b64encode(b"OggS fake opus").decode()
    voice = client.post(f"/api/chats/{INSTANCE}/{ANA}/voice-notes", json={"base64": note})
    assert voice.status_code == 202

    text, by_operator, audio = posted(app)
    assert text["event"] == "messages.upsert" and text["data"]["key"]["fromMe"] is False
    assert text["data"]["message"]["conversation"] == "oi"
    assert by_operator["data"]["key"]["fromMe"] is True
    assert "base64" not in audio["data"]["message"], "papo fetches the media itself"
    media = evolution(
        client, "/chat/getBase64FromMediaMessage", {"message": {"key": {"id": voice.json()["id"]}}}
    )
    assert media.status_code == 201 and media.json()["base64"] == note
    read = evolution(
        client,
        "/chat/markMessageAsRead",
        {
            "readMessages": [
                {"remoteJid": f"{ANA}@s.whatsapp.net", "fromMe": False, "id": written.json()["id"]}
            ]
        },
    )
    assert read.status_code == 201
    statuses = {m["id"]: m["status"] for m in client.get(f"/api/chats/{INSTANCE}/{ANA}").json()["messages"]}
    assert statuses[written.json()["id"]] == "read"


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        (f"/api/chats/{INSTANCE}/{ANA}/messages", {"text": ""}, 400),
        (f"/api/chats/{INSTANCE}/{ANA}/messages", {"text": "   "}, 400),
        (f"/api/chats/{INSTANCE}/5500000000000/messages", {"text": "hi"}, 404),
        (f"/api/chats/nobody/{ANA}/messages", {"text": "hi"}, 404),
        (f"/api/chats/{INSTANCE}/{ANA}/voice-notes", {"base64": "not base64!"}, 400),
        (f"/api/chats/{INSTANCE}/{ANA}/voice-notes", {"base64": "AAAA", "mimetype": "text/plain"}, 400),
    ],
)
def test_bad_input_from_the_page_is_a_clear_4xx(
    app: Litestar, client: TestClient[Litestar], path: str, body: Any, status: int
) -> None:
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert posted(app) == []
