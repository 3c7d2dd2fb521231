"""A served process freezes its heap once its app has started, and times every collection; apps built in a
test process freeze nothing."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from papo_common import heap
from papo_common.metrics import REGISTRY


@pytest.fixture
def served() -> Iterator[None]:
    """This test process as a served one, put back afterwards: nothing stays frozen, no callback stays."""
    assert gc.get_freeze_count() == 0
    yield
    gc.unfreeze()
    heap._pauses.served = False
    if heap._pauses in gc.callbacks:
        gc.callbacks.remove(heap._pauses)


class LifespanApp:
    """An ASGI app that completes its lifespan's start-up and records the scopes it was handed."""

    def __init__(self) -> None:
        self.scopes: list[str] = []
        self.frozen_during_startup: int | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope["type"])
        if scope["type"] == "lifespan":
            await receive()
            self.frozen_during_startup = gc.get_freeze_count()
            await send({"type": "lifespan.startup.complete"})


async def run_startup(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan"}, receive, send)
    return sent


def pauses_observed(generation: int) -> float:
    value = REGISTRY.get_sample_value("papo_gc_pause_seconds_count", {"generation": str(generation)})
    return value or 0.0


@pytest.mark.usefixtures("served")
async def test_the_heap_is_frozen_once_the_served_app_has_started() -> None:
    app = LifespanApp()
    sent = await run_startup(heap.serving(app))
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert app.frozen_during_startup == 0, "frozen before the app had finished starting"
    assert gc.get_freeze_count() > 0
    assert REGISTRY.get_sample_value("papo_gc_frozen_objects") == gc.get_freeze_count()


@pytest.mark.usefixtures("served")
async def test_requests_reach_the_served_app_untouched() -> None:
    app = LifespanApp()
    served = heap.serving(app)
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    await served({"type": "http"}, receive, send)
    assert app.scopes == ["http"]
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("served")
def test_each_collection_of_a_served_process_is_timed() -> None:
    heap.serving(LifespanApp())
    before = pauses_observed(2)
    gc.collect()
    assert pauses_observed(2) == before + 1


def test_a_process_that_serves_nothing_freezes_nothing() -> None:
    assert not heap._pauses.served
    heap.freeze_heap()  # what a model loaded in a test calls
    assert gc.get_freeze_count() == 0
