"""Hostile webhook bodies: never a 500, and never accepted unless every stage downstream can take it.

Each case reproduced a defect: a 500 from the decoder or the value parsers, or a 200 for a message that
persist (PostgreSQL 22021/22001) or deliver (the URL) then dead-lettered.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from papo_common.contracts import InboundMessage
from papo_common.contracts.base import (
    INSTANCE_MAX_LENGTH,
    JID_MAX_LENGTH,
    MESSAGE_ID_MAX_LENGTH,
    PUSH_NAME_MAX_LENGTH,
)
from papo_ingest.app import create_app
from papo_ingest.in_memory import MemoryPublisher, accept_in_memory

from .fixtures import fixture
from .test_app import AUTH, settings

# The app's clients keep trying to reach their dependencies in the background. In the unit tier pytest-socket
# refuses those attempts, which is the condition these tests want (dependencies unreachable); its warning about
# each attempt says nothing about the test.
pytestmark = pytest.mark.filterwarnings("ignore:A test tried to use socket.socket:UserWarning")


@pytest.fixture
async def app() -> AsyncIterator[tuple[AsyncTestClient[Litestar], MemoryPublisher]]:
    litestar = create_app(settings())
    publisher = accept_in_memory(litestar)
    async with AsyncTestClient(litestar) as test_client:
        yield test_client, publisher


Client = tuple[AsyncTestClient[Litestar], MemoryPublisher]


def text_webhook(**data: Any) -> dict[str, Any]:
    body = fixture("text_conversation")
    body["data"].update(data)
    return body


def audio_webhook(**audio: Any) -> dict[str, Any]:
    body = fixture("audio_no_base64")
    body["data"]["message"]["audioMessage"].update(audio)
    return body


async def post(client: AsyncTestClient[Litestar], body: dict[str, Any] | bytes) -> tuple[int, dict[str, Any]]:
    if isinstance(body, bytes):
        response = await client.post("/webhook/evolution", content=body, headers=AUTH)
    else:
        response = await client.post("/webhook/evolution", json=body, headers=AUTH)
    return response.status_code, response.json()


def the_one_published(publisher: MemoryPublisher) -> InboundMessage:
    [raw] = publisher.published
    # what a consumer reads back from the broker
    return InboundMessage.model_validate_json(raw)


async def test_json_nested_a_thousand_levels_is_400_not_500(app: Client) -> None:
    client, publisher = app
    # how deep the decoder gets depends on the stack already in use: 971 levels was a 500 under uvicorn
    status, _ = await post(client, b"[" * 971 + b"]" * 971)
    assert status in (400, 422)
    for depth in (5000, 100_000):
        status, answer = await post(client, b"[" * depth + b"]" * depth)
        assert (status, answer["reason"]) == (400, "bad_json"), depth
    deep_data = b'{"event":"messages.upsert","instance":"a","data":' + b"[" * 2000 + b"]" * 2000 + b"}"
    assert (await post(client, deep_data))[0] == 400
    assert publisher.published == []


async def test_deep_but_decodable_nesting_inside_a_message_is_not_500(app: Client) -> None:
    client, publisher = app
    body = audio_webhook()
    nested: Any = {}
    for _ in range(900):
        nested = {"n": nested}
    body["data"]["contextInfo"] = nested  # travels on inside the media request
    status, _ = await post(client, body)
    assert status in (200, 422)
    if status == 200:
        the_one_published(publisher)


@pytest.mark.parametrize("timestamp", ["9" * 312, 10**312, -(10**312), "1e400", {"low": 1, "high": 2**40}])
async def test_an_absurd_message_timestamp_falls_back_to_the_receive_time(
    app: Client, timestamp: Any
) -> None:
    client, publisher = app
    status, _ = await post(client, text_webhook(messageTimestamp=timestamp))
    assert status == 200
    message = the_one_published(publisher)
    assert message.sent_at == message.received_at


@pytest.mark.parametrize("seconds", [10**309, 10**400, -4, "1e999", "nan", 1e308])
async def test_absurd_audio_metadata_is_dropped_not_500(app: Client, seconds: Any) -> None:
    client, publisher = app
    status, _ = await post(client, audio_webhook(seconds=seconds, fileLength=10**40, mimetype="a\x00b"))
    assert status == 200
    audio = the_one_published(publisher).audio
    assert audio is not None and audio.file_length is None and audio.mimetype is None
    assert audio.seconds in (None, 1e308)


async def test_nul_characters_are_removed_from_text(app: Client) -> None:
    client, publisher = app
    body = text_webhook()
    body["data"]["message"]["conversation"] = "Oi\x00, tudo\x00 bem?"
    status, _ = await post(client, body)
    assert status == 200
    assert the_one_published(publisher).text == "Oi, tudo bem?"


async def test_text_that_is_only_nul_is_not_a_message(app: Client) -> None:
    client, publisher = app
    body = text_webhook()
    body["data"]["message"]["conversation"] = "\x00\x00"
    status, answer = await post(client, body)
    assert (status, answer["status"]) == (200, "ignored")
    assert publisher.published == []


async def test_an_overlong_push_name_is_cut_and_control_characters_dropped(app: Client) -> None:
    client, publisher = app
    status, _ = await post(client, text_webhook(pushName="Ma\x00ri\x1bna " + "x" * 1000))
    assert status == 200
    name = the_one_published(publisher).push_name
    assert name is not None and name.startswith("Marina x") and len(name) == PUSH_NAME_MAX_LENGTH


def with_key(**key: Any) -> dict[str, Any]:
    body = fixture("text_conversation")
    body["data"]["key"].update(key)
    return body


def with_instance(instance: str) -> dict[str, Any]:
    body = fixture("text_conversation")
    body["instance"] = instance
    return body


@pytest.mark.parametrize(
    "body",
    [
        with_key(id="A" * (MESSAGE_ID_MAX_LENGTH + 1)),
        with_key(id="3EB0\x00C431"),
        with_key(id="3EB0\nC431"),
        with_instance("i" * (INSTANCE_MAX_LENGTH + 1)),
        with_instance("loja\x00centro"),
        with_instance("loja\u0085centro"),
        with_key(remoteJid="5511912345678\x00@s.whatsapp.net", remoteJidAlt=None),
        with_key(remoteJid="5" * JID_MAX_LENGTH + "@s.whatsapp.net", remoteJidAlt=None),
        # each fits its column, but the ids derived from the pair would not fit theirs
        with_key(remoteJid="5" * 100 + "@s.whatsapp.net", remoteJidAlt=None) | {"instance": "i" * 120},
    ],
    ids=[
        "long_key_id",
        "nul_key_id",
        "newline_key_id",
        "long_instance",
        "nul_instance",
        "c1_instance",
        "nul_remote_jid",
        "long_remote_jid",
        "long_conversation_key",
    ],
)
async def test_identifiers_the_database_or_evolution_cannot_take_are_422(
    app: Client, body: dict[str, Any]
) -> None:
    client, publisher = app
    status, answer = await post(client, copy.deepcopy(body))
    assert status == 422
    assert answer["status"] == "rejected" and answer["reason"] == "invalid_message"
    assert publisher.published == []


async def test_identifiers_at_their_limits_are_accepted(app: Client) -> None:
    client, publisher = app
    body = with_key(id="A" * MESSAGE_ID_MAX_LENGTH)
    body["instance"] = "i" * INSTANCE_MAX_LENGTH
    status, _ = await post(client, body)
    assert status == 200
    assert the_one_published(publisher).message_id == "A" * MESSAGE_ID_MAX_LENGTH
