"""Typing and read receipts against each channel's real answers, with the fake served in-process (no socket)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from papo_common.evolution import EvolutionClient
from papo_deliver.courtesy import PRESENCE, READ_RECEIPT, Courtesies, RefusalMemory
from papo_testing.fake_evolution import BAILEYS, BUSINESS, EVOLUTION, FakeEvolution


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeEvolution, EvolutionClient]]:
    evolution = FakeEvolution(
        {"baileys": "k", "generic": "k", "cloud": "k"},
        channels={"baileys": BAILEYS, "generic": EVOLUTION, "cloud": BUSINESS},
        simulate_delays=False,
    )
    async with httpx.AsyncClient(transport=evolution.transport()) as http:
        yield evolution, EvolutionClient(http, FakeEvolution.IN_PROCESS_URL, SecretStr("k"), 2.0)


async def test_baileys_shows_typing_and_blue_ticks(fake: tuple[FakeEvolution, EvolutionClient]) -> None:
    evolution, client = fake
    courtesies = Courtesies(client)
    assert await courtesies.mark_read("baileys", "5511987654321@s.whatsapp.net", ["3A01"])
    assert await courtesies.show_typing("baileys", "5511987654321", 100)
    assert [r.status for r in evolution.requests] == [201, 201]


@pytest.mark.parametrize("instance", ["generic", "cloud"])
async def test_a_refusing_channel_is_asked_once_per_period_and_never_raises(
    fake: tuple[FakeEvolution, EvolutionClient], instance: str
) -> None:
    evolution, client = fake
    clock = Clock()
    courtesies = Courtesies(client, refusals=RefusalMemory(60, clock=clock))

    for _ in range(3):
        assert not await courtesies.show_typing(instance, "5511987654321", 100)
        assert not await courtesies.mark_read(instance, "5511987654321", ["3A01"])
    assert len(evolution.requests) == 2, "one refused call each, then remembered"
    clock.now += 61
    assert not await courtesies.show_typing(instance, "5511987654321", 100)
    assert len(evolution.requests) == 3, "asked again once the memory lapsed"


async def test_refusals_are_remembered_per_instance_and_call(
    fake: tuple[FakeEvolution, EvolutionClient],
) -> None:
    memory = RefusalMemory(60, clock=Clock())
    memory.remember("generic", PRESENCE)
    assert memory.refused("generic", PRESENCE)
    assert not memory.refused("generic", READ_RECEIPT)
    assert not memory.refused("baileys", PRESENCE)
    assert not RefusalMemory(0).refused("generic", PRESENCE)


async def test_any_failure_is_swallowed_even_a_rejected_key(
    fake: tuple[FakeEvolution, EvolutionClient],
) -> None:
    evolution, client = fake
    evolution.fail_next("sendPresence", 401)
    evolution.fail_next("markMessageAsRead", 500)
    courtesies = Courtesies(client)
    assert not await courtesies.show_typing("baileys", "5511987654321", 100)
    assert not await courtesies.mark_read("baileys", "5511987654321@s.whatsapp.net", ["3A01"])
    assert await courtesies.show_typing("baileys", "5511987654321", 100), "a failure is not remembered"
