"""The fake Evolution API answers like Evolution does: deliver's tests are only as good as its fidelity."""

from __future__ import annotations

import time

import httpx
import pytest

from papo_testing.fake_evolution import FakeEvolution, FakeMedia

pytestmark = pytest.mark.integration  # a real HTTP server or Redis

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


async def test_mark_as_read_is_validated_like_read_message_schema_and_recorded(
    evolution: FakeEvolution,
) -> None:
    key = {"remoteJid": "5511987654321@s.whatsapp.net", "fromMe": False, "id": "3A01"}
    lid = {"remoteJid": "83842157310076@lid", "fromMe": False, "id": "3A02"}
    async with httpx.AsyncClient(base_url=evolution.url, headers=HEADERS) as http:
        ok = await http.post("/chat/markMessageAsRead/acme", json={"readMessages": [key, lid]})
        empty = await http.post("/chat/markMessageAsRead/acme", json={"readMessages": []})
        duplicate = await http.post("/chat/markMessageAsRead/acme", json={"readMessages": [key, key]})
        missing = await http.post("/chat/markMessageAsRead/acme", json={"readMessages": [{"id": "x"}]})
        old_name = await http.post("/chat/markMessageAsRead/acme", json={"read_messages": [key]})

    assert (ok.status_code, ok.json()) == (201, {"message": "Read messages", "read": "success"})
    assert empty.json()["response"] == {
        "message": [["instance.readMessages does not meet minimum length of 1"]]
    }
    assert "instance.readMessages contains duplicate item" in duplicate.json()["response"]["message"][0]
    assert missing.json()["response"]["message"][0] == [
        'instance.readMessages[0] requires property "fromMe"',
        'instance.readMessages[0] requires property "remoteJid"',
    ]
    assert old_name.status_code == 400
    # Evolution 2.3 skips @lid keys: only the phone JID's message got blue ticks.
    assert [(r.remote_jid, r.message_id) for r in evolution.read_receipts("acme")] == [
        ("5511987654321@s.whatsapp.net", "3A01")
    ]


async def test_a_programmed_failure_can_let_the_first_matching_calls_through(
    evolution: FakeEvolution,
) -> None:
    evolution.fail_next("sendText", 500, times=1, skip=2)
    async with httpx.AsyncClient(base_url=evolution.url, headers=HEADERS) as http:
        statuses = [
            (await http.post("/message/sendText/acme", json={"number": "1", "text": "x"})).status_code
            for _ in range(4)
        ]
    assert statuses == [201, 201, 500, 201]


async def test_each_instance_accepts_only_its_own_key_or_the_global_one() -> None:
    tries = [("a", "key-a"), ("a", "key-b"), ("b", "key-b"), ("b", "global")]
    async with FakeEvolution(api_keys={"a": "key-a", "b": "key-b"}, global_api_key="global") as evolution:
        url = evolution.url
        async with httpx.AsyncClient(base_url=url) as http:
            statuses = [
                (
                    await http.post(
                        f"/message/sendText/{instance}",
                        json={"number": "1", "text": "x"},
                        headers={"apikey": key},
                    )
                ).status_code
                for instance, key in tries
            ]
    assert statuses == [201, 401, 201, 201]
