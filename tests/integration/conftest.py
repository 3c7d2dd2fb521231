"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from faststream.rabbit import RabbitBroker

from .deliver_stack import probe_broker


@pytest.fixture
async def probe(rabbitmq_url: str) -> AsyncIterator[RabbitBroker]:
    """A second broker connection, standing in for llm (publishes replies) and persist (reads reply.sent)."""
    async with probe_broker(rabbitmq_url) as broker:
        yield broker
