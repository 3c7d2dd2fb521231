"""A served process freezes its heap once its app has started, and times every collection; apps built in a
test process freeze nothing."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest
from faststream.rabbit import RabbitBroker, TestRabbitBroker

from papo_common import heap
from papo_common.metrics import REGISTRY
from papo_common.service import consumer_app


@pytest.fixture
def served() -> Iterator[None]:
    """This test process as a served one, put back afterwards: nothing stays frozen, no callback stays."""
    assert gc.get_freeze_count() == 0
    heap.serve_process()
    yield
    gc.unfreeze()
    heap._pauses.served = False
    if heap._pauses in gc.callbacks:
        gc.callbacks.remove(heap._pauses)


def pauses_observed(generation: int) -> float:
    value = REGISTRY.get_sample_value("papo_gc_pause_seconds_count", {"generation": str(generation)})
    return value or 0.0


@pytest.mark.usefixtures("served")
def test_a_served_process_freezes_its_heap_and_shows_how_much() -> None:
    heap.freeze_heap()
    assert gc.get_freeze_count() > 0
    assert REGISTRY.get_sample_value("papo_gc_frozen_objects") == gc.get_freeze_count()


@pytest.mark.usefixtures("served")
async def test_a_consumer_service_freezes_once_its_consumers_have_started() -> None:
    broker = RabbitBroker("amqp://guest:guest@127.0.0.1:1/")
    started = asyncio.Event()
    frozen_while_starting: list[int] = []

    async def consumers_started() -> None:  # the service's own after-startup hooks (its consumers)
        frozen_while_starting.append(gc.get_freeze_count())
        started.set()

    app = consumer_app(broker, after_startup=[consumers_started])
    async with TestRabbitBroker(broker), app.start_lifespan_context():
        await started.wait()  # the freeze is the next hook, run without a pause in between
        assert frozen_while_starting == [0], "frozen before the app had finished starting"
        assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("served")
def test_each_collection_of_a_served_process_is_timed() -> None:
    before = pauses_observed(2)
    gc.collect()
    assert pauses_observed(2) == before + 1


def test_a_process_that_serves_nothing_freezes_nothing() -> None:
    assert not heap._pauses.served
    heap.freeze_heap()  # what a model loaded in a test calls
    assert gc.get_freeze_count() == 0
