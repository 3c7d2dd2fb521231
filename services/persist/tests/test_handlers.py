"""The handler parses each contract on persist's queue and hands it to the batcher, returning once written."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from faststream.rabbit import RabbitBroker, TestRabbitBroker

from papo_common.contracts import (
    AudioAttachment,
    ConversationRef,
    InboundMessage,
    Reply,
    ReplySent,
    Transcript,
)
from papo_common.topology import PERSIST
from papo_persist.batcher import Batcher
from papo_persist.handlers import register_handlers
from papo_persist.rows import PersistedContract

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
REF = ConversationRef(instance="shop", user_id="5511@s.whatsapp.net")

CONTRACTS: list[PersistedContract] = [
    InboundMessage(
        conversation=REF, message_id="M1", chat_id="5511@s.whatsapp.net", kind="text", text="oi",
        sent_at=NOW, received_at=NOW,
    ),
    InboundMessage(
        conversation=REF, message_id="A1", chat_id="5511@s.whatsapp.net", kind="audio",
        audio=AudioAttachment(base64="AA=="), sent_at=NOW, received_at=NOW,
    ),
    Transcript(conversation=REF, message_id="A1", sent_at=NOW, text="bolo"),
    Reply(
        reply_id="R1", burst_id="B1", conversation=REF, chat_id="5511@s.whatsapp.net", text="Claro",
        in_reply_to=("M1",), model="m", created_at=NOW,
    ),
    ReplySent(reply_id="R1", conversation=REF, whatsapp_message_ids=("W1",), sent_at=NOW),
]  # fmt: skip


class RecordingWriter:
    def __init__(self) -> None:
        self.written: list[PersistedContract] = []

    async def write(self, items: Sequence[PersistedContract]) -> None:
        self.written.extend(items)


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: f"{c.type}")
async def test_each_contract_reaches_the_writer_as_its_own_type(contract: PersistedContract) -> None:
    writer = RecordingWriter()
    batcher: Batcher[PersistedContract] = Batcher(writer, max_size=10, max_wait_s=0.001)
    broker = RabbitBroker()
    register_handlers(broker, batcher)
    await batcher.start()
    try:
        async with TestRabbitBroker(broker) as test_broker:
            await test_broker.publish(contract, queue=PERSIST.name)
    finally:
        await batcher.stop()

    assert writer.written == [contract]
