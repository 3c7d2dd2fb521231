"""The app's wiring, without a broker: its queue, its handler, and when it gives up on a note."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from faststream.asgi import AsgiFastStream

from papo_common.evolution import EvolutionUnavailable
from papo_common.resilience import redelivery_plan
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


@pytest.mark.parametrize(("failed_seconds_ago", "last"), [(None, False), (60, False), (1900, True)])
def test_an_outage_is_last_only_past_the_redelivery_horizon(
    failed_seconds_ago: float | None, last: bool
) -> None:
    headers: dict[str, object] = {"x-delivery-count": 0}
    if failed_seconds_ago is not None:  # the headers the first redelivery, that long ago, gave the message
        first = redelivery_plan(TRANSCRIBE, {}, now=time.time() - failed_seconds_ago, horizon_seconds=1800)
        assert first is not None
        headers |= first.headers
    message = SimpleNamespace(headers=headers)
    outage = EvolutionUnavailable("getBase64FromMediaMessage: Evolution API answered 503")
    assert is_last_delivery(message, outage, horizon_seconds=1800) is last  # type: ignore[arg-type]
