"""Thin handlers: a message or a transcript goes into its conversation's burst in Redis, then is acked."""

from __future__ import annotations

import logging
from typing import Annotated

from opentelemetry.propagate import inject
from pydantic import Field

from papo_common.contracts import InboundMessage, Transcript
from papo_common.errors import PermanentError
from papo_debounce.store import DebounceStore

logger = logging.getLogger(__name__)

DebounceInput = Annotated[InboundMessage | Transcript, Field(discriminator="type")]


async def handle(message: InboundMessage | Transcript, store: DebounceStore) -> None:
    if isinstance(message, Transcript):
        completed = await store.add_transcript(message)
        logger.debug("transcript recorded", extra={"message_id": message.message_id, "completed": completed})
        return
    if message.from_me:
        raise PermanentError("operator messages are not debounced; the queue should not be bound to them")
    carrier: dict[str, str] = {}
    inject(carrier)
    seq = await store.add_message(message, carrier.get("traceparent", ""))
    if seq is None:
        logger.info("duplicate message ignored", extra={"message_id": message.message_id})
