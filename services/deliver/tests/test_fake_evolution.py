"""The fake Evolution API answers like Evolution does: deliver's tests are only as good as its fidelity."""

from __future__ import annotations

import time

import httpx

from papo_testing.fake_evolution import FakeEvolution, FakeMedia

HEADERS = {"apikey": "acme-key"}


async def test_guards_run_in_evolutions_order_unknown_instance_then_api_key(evolution: FakeEvolution) -> None:
    async with httpx.AsyncClient(base_url=evolution.url) as http:
        unknown = await http.post(
            "/message/sendText/nope", json={"number": "1", "text": "x"}, headers=HEADERS
        )
        wrong_key = await http.post(
            "/message/sendText/acme", json={"number": "1", "text": "x"}, headers={"apikey": "x"}
        )
        no_route = await http.post("/message/sendSomething/acme", json={}, headers=HEADERS)

    assert (unknown.status_code, unknown.json()) == (
        404,
        {
            "status": 404,
            "error": "Not Found",
            "response": {"message": ['The "nope" instance does not exist']},
        },
    )
    assert (wrong_key.status_code, wrong_key.json()["response"]) == (401, {"message": "Unauthorized"})
    assert no_route.status_code == 404


async def test_bodies_are_validated_like_evolutions_json_schemas(evolution: FakeEvolution) -> None:
    async with httpx.AsyncClient(base_url=evolution.url, headers=HEADERS) as http:
        missing = await http.post("/message/sendText/acme", json={"number": "5511987654321"})
        blank = await http.post("/message/sendText/acme", json={"number": "5511987654321", "text": "  "})
        presence = await http.post(
            "/chat/sendPresence/acme", json={"number": "5511987654321", "presence": "composing"}
        )

    assert missing.json()["response"] == {"message": [['instance requires property "text"']]}
    assert blank.json()["response"] == {"message": ["Text is required"]}
    assert presence.json()["response"] == {"message": [['instance requires property "delay"']]}
    assert evolution.sent_texts() == []


async def test_send_text_answers_201_with_the_sent_message(evolution: FakeEvolution) -> None:
    async with httpx.AsyncClient(base_url=evolution.url, headers=HEADERS) as http:
        answer = await http.post("/message/sendText/acme", json={"number": "+55 11 98765-4321", "text": "oi"})

    body = answer.json()
    assert answer.status_code == 201
    assert body["key"]["remoteJid"] == "5511987654321@s.whatsapp.net"
    assert body["key"]["fromMe"] is True
    assert body["key"]["id"].startswith("3EB0") and len(body["key"]["id"]) == 22
    assert body["message"] == {"conversation": "oi"}
    assert body["status"] == "PENDING"
    assert evolution.sent_texts("acme")[0].message_id == body["key"]["id"]


async def test_media_is_served_by_message_id(evolution: FakeEvolution) -> None:
    evolution.add_media("3A1234", FakeMedia(base64="T2dnUw==", file_length=4))
    async with httpx.AsyncClient(base_url=evolution.url, headers=HEADERS) as http:
        found = await http.post(
            "/chat/getBase64FromMediaMessage/acme", json={"message": {"key": {"id": "3A1234"}}}
        )
        missing = await http.post(
            "/chat/getBase64FromMediaMessage/acme", json={"message": {"key": {"id": "nope"}}}
        )

    assert found.status_code == 201
    assert found.json()["base64"] == "T2dnUw=="
    assert found.json()["mimetype"] == "audio/ogg; codecs=opus"
    assert found.json()["mediaType"] == "audioMessage"
    assert missing.json()["response"] == {"message": ["Message not found"]}


async def test_programmed_failures_apply_to_the_next_matching_calls_only(evolution: FakeEvolution) -> None:
    evolution.fail_next("sendText", 503, times=2)
    async with httpx.AsyncClient(base_url=evolution.url, headers=HEADERS) as http:
        statuses = [
            (await http.post("/message/sendText/acme", json={"number": "1", "text": "x"})).status_code
            for _ in range(3)
        ]
    assert statuses == [503, 503, 201]
    assert [r.status for r in evolution.requests] == statuses


def test_the_sync_context_manager_serves_subprocess_style_tests() -> None:
    with FakeEvolution(api_keys={"acme": "acme-key"}, simulate_delays=False) as evolution:
        started = time.monotonic()
        answer = httpx.post(
            f"{evolution.url}/chat/sendPresence/acme",
            json={"number": "1", "presence": "composing", "delay": 5000},
            headers=HEADERS,
        )
        assert answer.status_code == 201
        assert time.monotonic() - started < 2
        assert evolution.requests[0].received_at.tzinfo is not None
