"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from faststream.rabbit import RabbitBroker

from papo_testing.fake_evolution import FakeEvolution

from .deliver_stack import API_KEY, INSTANCE, probe_broker


@pytest.fixture
async def evolution() -> AsyncIterator[FakeEvolution]:
    """A fake Evolution API that knows `INSTANCE` by its key."""
    async with FakeEvolution(api_keys={INSTANCE: API_KEY}) as fake:
        yield fake


@pytest.fixture
async def probe(rabbitmq_url: str) -> AsyncIterator[RabbitBroker]:
    """A second broker connection, standing in for llm (publishes replies) and persist (reads reply.sent)."""
    async with probe_broker(rabbitmq_url) as broker:
        yield broker
