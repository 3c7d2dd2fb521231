"""The classifier over error bodies shaped exactly as Evolution API returns them (from its source and from
bodies reported in its issue tracker)."""

from __future__ import annotations

import httpx
import pytest

from papo_deliver.classify import classify
from papo_deliver.evolution import EvolutionError, EvolutionProtocolError


def answer(status: int, body: object) -> EvolutionError:
    return EvolutionError("message/sendText", status, body)


TRANSIENT = {
    "socket closed (400)": answer(
        400, {"status": 400, "error": "Bad Request", "response": {"message": ["Error: Connection Closed"]}}
    ),
    "query timed out (500)": answer(
        500, {"status": 500, "error": "Internal Server Error", "response": {"message": "Timed Out"}}
    ),
    "query timed out inside the send (400)": answer(
        400, {"status": 400, "error": "Bad Request", "response": {"message": ["Error: Timed Out"]}}
    ),
    "WhatsApp rate limit (400)": answer(
        400, {"status": 400, "error": "Bad Request", "response": {"message": ["Error: rate-overlimit"]}}
    ),
    "instance reconnecting (400)": answer(
        400,
        {
            "status": 400,
            "error": "Bad Request",
            "response": {"message": ['The "acme" instance is not connected']},
        },
    ),
    "instance not loaded yet (500)": answer(
        500,
        {
            "status": 500,
            "error": "Internal Server Error",
            "response": {"message": "Cannot read properties of undefined (reading 'textMessage')"},
        },
    ),
    "proxy in front answers 502 with HTML": answer(502, "<html><body>Bad Gateway</body></html>"),
    "too many requests": answer(
        429, {"status": 429, "error": "Too Many Requests", "response": {"message": []}}
    ),
    "connection refused": httpx.ConnectError("[Errno 111] Connection refused"),
    "read timeout": httpx.ReadTimeout("timed out"),
    "connection reset": httpx.RemoteProtocolError("Server disconnected without sending a response."),
}

PERMANENT = {
    "phone number not on WhatsApp": (
        answer(
            400,
            {
                "status": 400,
                "error": "Bad Request",
                "response": {
                    "message": [
                        {
                            "jid": "274860794187802@s.whatsapp.net",
                            "exists": False,
                            "number": "274860794187802",
                        }
                    ]
                },
            },
        ),
        "not on WhatsApp: 274860794187802@s.whatsapp.net",
    ),
    "lid not on WhatsApp": (
        answer(
            400,
            {
                "status": 400,
                "error": "Bad Request",
                "response": {
                    "message": [
                        {
                            "exists": False,
                            "jid": "83842157310076@lid",
                            "name": "x",
                            "number": "83842157310076@lid",
                        }
                    ]
                },
            },
        ),
        "not on WhatsApp: 83842157310076@lid",
    ),
    "schema validation (nested list)": (
        answer(
            400,
            {
                "status": 400,
                "error": "Bad Request",
                "response": {"message": [['instance requires property "text"']]},
            },
        ),
        'instance requires property "text"',
    ),
    "blank text": (
        answer(400, {"status": 400, "error": "Bad Request", "response": {"message": ["Text is required"]}}),
        "Text is required",
    ),
    "wrong API key": (
        answer(401, {"status": 401, "error": "Unauthorized", "response": {"message": "Unauthorized"}}),
        "refused the API key (401)",
    ),
    "forbidden": (
        answer(
            403, {"status": 403, "error": "Forbidden", "response": {"message": ["Missing global api key"]}}
        ),
        "refused the API key (403)",
    ),
    "unknown instance": (
        answer(
            404,
            {
                "status": 404,
                "error": "Not Found",
                "response": {"message": ['The "acme" instance does not exist']},
            },
        ),
        'The "acme" instance does not exist',
    ),
    "Evolution 2.4 not activated": (
        answer(
            503,
            {
                "error": "service not activated",
                "code": "LICENSE_REQUIRED",
                "register_url": "http://evo/manager/login",
                "instance_id": "00000000-0000-0000-0000-000000000000",
                "docs_url": "https://docs.evolutionfoundation.com.br/licensing",
                "message": "This Evolution API instance is not activated.",
            },
        ),
        "LICENSE_REQUIRED",
    ),
    "201 without a message id": (
        EvolutionProtocolError("message/sendText", 201, {"status": "PENDING"}),
        "without a message id",
    ),
}


@pytest.mark.parametrize("error", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_failures_are_retried(error: BaseException) -> None:
    assert classify(error).transient


@pytest.mark.parametrize(("error", "reason"), PERMANENT.values(), ids=PERMANENT.keys())
def test_permanent_failures_are_dead_lettered_with_their_reason(error: BaseException, reason: str) -> None:
    verdict = classify(error)
    assert not verdict.transient
    assert reason in verdict.reason


def test_an_unknown_400_is_permanent_so_it_is_parked_for_a_human_instead_of_hammering_whatsapp() -> None:
    error = answer(
        400, {"status": 400, "error": "Bad Request", "response": {"message": ["Error: bad-request"]}}
    )
    verdict = classify(error)
    assert not verdict.transient
    assert "bad-request" in verdict.reason
