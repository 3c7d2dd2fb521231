"""The app's wiring, without a broker: its queue, its handler, and the delivery count it gives up at."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from faststream.asgi import AsgiFastStream

from papo_common.topology import TRANSCRIBE
from papo_transcribe.app import create_app
from papo_transcribe.handlers import is_last_delivery
from papo_transcribe.settings import TranscribeSettings
from papo_transcribe.speech import SpeechModel

from .conftest import FakeEngine


def test_the_app_consumes_its_own_queue() -> None:
    model = SpeechModel(FakeEngine, name="fake", batch_size=1, batch_wait=0)
    app = create_app(TranscribeSettings(log_format="text"), model=model)
    assert isinstance(app, AsgiFastStream)
    [subscriber] = app.broker.subscribers  # type: ignore[union-attr]
    assert subscriber.queue.name == TRANSCRIBE.name
    assert subscriber.queue.arguments["x-delivery-limit"] == TRANSCRIBE.delivery_limit


@pytest.mark.parametrize(
    ("headers", "last"),
    [(None, False), ({}, False), ({"x-delivery-count": 0}, False), ({"x-delivery-count": 2}, False),
     ({"x-delivery-count": 3}, True), ({"x-delivery-count": 4}, True)],
)  # fmt: skip
def test_the_last_delivery_is_the_one_at_the_queues_limit(headers: dict[str, int] | None, last: bool) -> None:
    assert is_last_delivery(SimpleNamespace(headers=headers)) is last  # type: ignore[arg-type]
