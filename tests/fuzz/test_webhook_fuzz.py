"""Hostile webhook bodies against the real ingest app: never a 5xx, and whatever it accepts, the stages after it
and PostgreSQL can take. The broker and Redis are stood in for in memory, so every example is about the body
alone (the real stack's run is `test_webhook_fuzz_stack.py`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import String
from sqlmodel import SQLModel

from papo_common.contracts import ConversationRef, InboundMessage
from papo_common.db import Conversation, Message
from papo_ingest.app import create_app
from papo_ingest.evolution import IntakePolicy
from papo_ingest.in_memory import MemoryPublisher, MemorySeen
from papo_ingest.intake import Intake
from papo_ingest.settings import IngestSettings
from papo_testing import infra

from .conftest import PROFILE
from .strategies import webhooks

TOKEN = "fuzz-" + "t" * 40
ANSWERS = {200, 400, 401, 413, 422}


SEEN = MemorySeen()


@pytest.fixture(scope="module")
def ingest() -> Iterator[tuple[TestClient[Litestar], MemoryPublisher]]:
    # The app's own connections reach the real servers (a vhost and a key prefix of this module's), though
    # the intake below never uses them: against closed ports they were retried in the background while
    # hypothesis drew bodies. redis-py's retry jitter draws from `random`, which hypothesis warns about, and
    # each failed aio-pika connection was closed un-awaited when it was collected.
    with infra.rabbitmq_vhost() as rabbitmq_url, infra.redis_prefix() as prefix:
        app = create_app(
            IngestSettings(
                webhook_token=TOKEN,
                rabbitmq_url=rabbitmq_url,  # type: ignore[arg-type]
                redis_key_prefix=prefix,
                ingest_accept_groups=True,
                ingest_accept_status=True,
                ingest_accept_newsletters=True,
            )
        )
        publisher = MemoryPublisher()
        app.state.intake = Intake(
            publish=publisher,
            seen=SEEN,  # type: ignore[arg-type]
            policy=IntakePolicy(accept_groups=True, accept_status=True, accept_newsletters=True),
            publish_timeout_seconds=5.0,
        )
        with TestClient(app) as client:
            yield client, publisher


def _widths() -> dict[tuple[str, str], int]:
    return {
        (table.name, column.name): column.type.length
        for table in SQLModel.metadata.sorted_tables
        if table.name in (Conversation.__tablename__, Message.__tablename__)
        for column in table.columns
        if isinstance(column.type, String) and column.type.length
    }


WIDTHS = _widths()


def assert_storable(raw: str) -> None:
    """What persist, debounce and deliver do with a message, short of doing it: read it back from the wire,
    and fit every stored value into its PostgreSQL column (no NUL anywhere, no value wider than its column)."""
    message = InboundMessage.model_validate_json(raw)
    ref: ConversationRef = message.conversation
    stored = {
        ("conversations", "instance"): ref.instance,
        ("conversations", "user_id"): ref.user_id,
        ("conversations", "chat_id"): message.chat_id,
        ("conversations", "push_name"): message.push_name,
        ("messages", "external_id"): message.message_id,
        ("messages", "instance"): ref.instance,
    }
    for column, value in stored.items():
        if value is not None:
            assert len(value) <= WIDTHS[column], column
            assert "\x00" not in value, column
    for text in (message.text, message.quoted.text if message.quoted else None):
        assert text is None or "\x00" not in text
    # the llm's reply id is stored in messages.external_id: it is derived from the conversation key
    assert len(f"reply:{ref.key}:{2**63}-{10**13}") <= WIDTHS[("messages", "external_id")]
    assert ref.instance.isprintable() or all(ch not in ref.instance for ch in "\x00\r\n")


def post(client: TestClient[Litestar], body: Any) -> tuple[int, dict[str, Any]]:
    try:
        raw = json.dumps(body, ensure_ascii=False).encode("utf-8", errors="surrogatepass")
    except ValueError:  # an integer too long for Python's own encoder: send it as the text it is
        raw = repr(body).encode()
    response = client.post("/webhook/evolution", content=raw, headers={"x-papo-token": TOKEN})
    return response.status_code, response.json()


@given(body=webhooks())
@settings(PROFILE)
def test_no_webhook_is_a_server_error_and_every_accepted_one_can_be_stored(
    ingest: tuple[TestClient[Litestar], MemoryPublisher], body: dict[str, Any]
) -> None:
    client, publisher = ingest
    published = publisher.published
    SEEN.values.clear()  # the same id in two examples is two messages, not a duplicate
    before = len(published)
    status, answer = post(client, body)
    event(f"{status} {answer['status']} {answer.get('reason', '')}")
    assert status in ANSWERS, (status, answer)
    if answer["status"] == "accepted" and len(published) > before:
        assert_storable(published[-1])
    else:
        assert len(published) == before, "published although not accepted"


@given(raw=st.binary(max_size=512) | st.text(max_size=512).map(str.encode))
@settings(PROFILE, max_examples=min(PROFILE.max_examples, 500))
def test_bytes_that_are_not_a_webhook_are_4xx(
    ingest: tuple[TestClient[Litestar], MemoryPublisher], raw: bytes
) -> None:
    client, _ = ingest
    response = client.post("/webhook/evolution", content=raw, headers={"x-papo-token": TOKEN})
    assert response.status_code in ANSWERS - {200} or response.json()["status"] == "ignored"
