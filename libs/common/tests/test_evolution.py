"""The one reading of Evolution API's failures, over error bodies shaped exactly as Evolution returns them
(from its source, from bodies reported in its issue tracker, and from the real 2.3.7 server), and the retry
rule built on it. No network: the calls retried here are plain coroutines."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.evolution import (
    DEFAULT_EVOLUTION_URL,
    ApiKeys,
    EvolutionError,
    EvolutionMisconfigured,
    EvolutionProtocolError,
    EvolutionRejected,
    EvolutionSettings,
    EvolutionUnavailable,
    MethodNotAvailable,
    MissingApiKey,
    RetryPolicy,
    call_with_retries,
    classify,
    evolution_number,
)


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
        "1 number(s) not on WhatsApp",
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
        "1 number(s) not on WhatsApp",
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
    "201 without a message id": (
        EvolutionProtocolError("message/sendText", 201, {"status": "PENDING"}),
        "without a message id",
    ),
}


MISCONFIGURED = {
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
    "no key configured for the instance": (MissingApiKey("no Evolution API key for instance 'acme'"), "acme"),
}

UNSUPPORTED = {
    "EVOLUTION channel, sendPresence": answer(
        400,
        {
            "status": 400,
            "error": "Bad Request",
            "response": {"message": ["Method not available on Evolution Channel"]},
        },
    ),
    "WHATSAPP-BUSINESS channel, markMessageAsRead": answer(
        400,
        {
            "status": 400,
            "error": "Bad Request",
            "response": {"message": ["Method not available on WhatsApp Business API"]},
        },
    ),
}

META_ERROR = {
    "message": "(#131047) Re-engagement message",
    "type": "OAuthException",
    "code": 131047,
    "error_data": {"messaging_product": "whatsapp", "details": "More than 24 hours have passed"},
    "fbtrace_id": "AbCdEf",
}


@pytest.mark.parametrize("error", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_failures_are_retried(error: BaseException) -> None:
    verdict = classify(error)
    assert verdict.kind == "transient"
    assert isinstance(verdict.error("sendText"), EvolutionUnavailable)


@pytest.mark.parametrize(("error", "reason"), PERMANENT.values(), ids=PERMANENT.keys())
def test_permanent_failures_are_dead_lettered_with_their_reason(error: BaseException, reason: str) -> None:
    verdict = classify(error)
    assert verdict.kind == "permanent"
    assert reason in verdict.reason
    assert isinstance(verdict.error("sendText"), EvolutionRejected)


@pytest.mark.parametrize(("error", "reason"), MISCONFIGURED.values(), ids=MISCONFIGURED.keys())
def test_configuration_errors_are_redelivered_not_lost(error: BaseException, reason: str) -> None:
    verdict = classify(error)
    assert verdict.kind == "misconfigured"
    assert reason in verdict.reason
    raised = verdict.error("sendText")
    assert isinstance(raised, EvolutionMisconfigured)
    assert isinstance(raised, DependencyUnavailable) and not isinstance(raised, PermanentError)


@pytest.mark.parametrize("error", UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_a_method_the_channel_lacks_is_unsupported(error: BaseException) -> None:
    verdict = classify(error)
    assert verdict.kind == "unsupported"
    assert isinstance(verdict.error("sendPresence"), MethodNotAvailable)


def test_a_number_not_on_whatsapp_never_reaches_the_reason() -> None:
    error = PERMANENT["phone number not on WhatsApp"][0]
    assert "274860794187802" not in classify(error).reason


def test_an_unknown_400_is_permanent_so_it_is_parked_for_a_human_instead_of_hammering_whatsapp() -> None:
    error = answer(
        400, {"status": 400, "error": "Bad Request", "response": {"message": ["Error: bad-request"]}}
    )
    verdict = classify(error)
    assert verdict.kind == "permanent"
    assert "bad-request" in verdict.reason


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (131047, "permanent"),
        (131026, "permanent"),
        (130429, "transient"),
        (131000, "transient"),
        (190, "misconfigured"),
    ],
)
def test_the_cloud_api_channel_passes_metas_refusal_as_a_201_and_it_is_read_by_its_code(
    code: int, kind: str
) -> None:
    error = EvolutionProtocolError("message/sendText", 201, {**META_ERROR, "code": code})
    assert classify(error).kind == kind


def test_the_cloud_api_channel_with_meta_unreachable_is_transient() -> None:
    body = {
        "status": 400,
        "error": "Bad Request",
        "response": {"message": ["TypeError: Cannot read properties of undefined (reading 'message')"]},
    }
    assert classify(answer(400, body)).kind == "transient"


class Flaky:
    """Fails with `errors` in turn, then answers "sent"."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "sent"


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


POLICY = RetryPolicy(attempts=3, base_seconds=0.01, max_seconds=0.02)


async def test_a_transient_failure_is_retried_until_it_passes() -> None:
    call = Flaky(TRANSIENT["socket closed (400)"], httpx.ConnectError("refused"))
    assert await call_with_retries(call, POLICY, what="sendText", sleep=no_sleep) == "sent"
    assert call.calls == 3


async def test_transient_failures_past_the_attempts_mean_redelivery() -> None:
    call = Flaky(*[httpx.ReadTimeout("slow")] * 3)
    with pytest.raises(EvolutionUnavailable, match="sendText"):
        await call_with_retries(call, POLICY, what="sendText", sleep=no_sleep)
    assert call.calls == 3


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (MISCONFIGURED["wrong API key"][0], EvolutionMisconfigured),
        (PERMANENT["blank text"][0], EvolutionRejected),
        (UNSUPPORTED["EVOLUTION channel, sendPresence"], MethodNotAvailable),
    ],
    ids=["misconfigured", "permanent", "unsupported"],
)
async def test_what_is_not_transient_is_raised_at_once_without_retrying(
    error: BaseException, raised: type[Exception]
) -> None:
    call = Flaky(error)
    with pytest.raises(raised):
        await call_with_retries(call, POLICY, what="sendText", sleep=no_sleep)
    assert call.calls == 1


async def test_other_failures_pass_through_untouched() -> None:
    call = Flaky(RuntimeError("the lock was lost"))
    with pytest.raises(RuntimeError, match="lock"):
        await call_with_retries(call, POLICY, what="sendText", sleep=no_sleep)


def test_a_mapped_instance_uses_its_own_key_and_others_the_global_one() -> None:
    keys = ApiKeys(SecretStr("global"), {"loja": SecretStr("loja-key")})
    assert keys.for_instance("loja") == "loja-key"
    assert keys.for_instance("outra") == "global"
    with pytest.raises(MissingApiKey, match="PAPO_EVOLUTION_API_KEYS"):
        ApiKeys(SecretStr(""), {"loja": SecretStr("k")}).for_instance("outra")


def test_the_one_default_evolution_url_and_per_instance_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PAPO_EVOLUTION_API_KEYS", '{"loja": "loja-key"}')
    settings = EvolutionSettings()
    assert settings.evolution_url == DEFAULT_EVOLUTION_URL == "http://127.0.0.1:8081"
    assert settings.evolution_keys().for_instance("loja") == "loja-key"
    assert "loja-key" not in repr(settings)


def test_production_needs_a_real_key_but_per_instance_keys_make_the_global_one_optional() -> None:
    with pytest.raises(ValidationError, match="PAPO_EVOLUTION_API_KEY"):
        EvolutionSettings(environment="production")
    EvolutionSettings(environment="production", evolution_api_keys={"loja": "k-real"})
    with pytest.raises(ValidationError, match="PAPO_EVOLUTION_API_KEYS"):
        EvolutionSettings(environment="production", evolution_api_keys={"loja": "changeme"})


@pytest.mark.parametrize(
    ("chat_id", "number"),
    [
        ("5511987654321@s.whatsapp.net", "5511987654321"),
        ("5511987654321:12@s.whatsapp.net", "5511987654321"),
        ("83842157310076@lid", "83842157310076@lid"),
        ("5511987654321", "5511987654321"),
    ],
)
def test_number_sent_to_evolution(chat_id: str, number: str) -> None:
    assert evolution_number(chat_id) == number
