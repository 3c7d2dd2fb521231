"""An AMQP channel and deliveries as aiormq hands them over, for testing consumers without a broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import aiormq.abc
from pamqp import commands as spec
from pamqp.header import ContentHeader


class ChannelClosed(Exception):
    """What aiormq raises (`ChannelInvalidStateError`) on settling through a closed channel."""


@dataclass(eq=False)
class FakeChannel:
    """The AMQP channel deliveries come on, recording how each was settled; settling raises once it closed."""

    settled: list[tuple[str, int, bool]]
    closed: bool = False

    def _open(self) -> None:
        if self.closed:
            raise ChannelClosed

    async def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        self._open()
        self.settled.append(("ack", delivery_tag, multiple))

    async def basic_nack(self, delivery_tag: int, multiple: bool = False, requeue: bool = True) -> None:
        self._open()
        self.settled.append(("nack", delivery_tag, requeue))

    async def basic_reject(self, delivery_tag: int, *, requeue: bool = True) -> None:
        self._open()
        self.settled.append(("reject", delivery_tag, requeue))


def delivered(
    channel: FakeChannel,
    tag: int,
    payload: bytes,
    headers: dict[str, Any] | None = None,
    *,
    routing_key: str = "inbound.text",
    **properties: Any,
) -> aiormq.abc.DeliveredMessage:
    """A delivery as aiormq hands it over, with `properties` (message_id, message_type...) on it."""
    return aiormq.abc.DeliveredMessage(
        delivery=spec.Basic.Deliver(
            consumer_tag="test", delivery_tag=tag, exchange="papo", routing_key=routing_key
        ),
        header=ContentHeader(properties=spec.Basic.Properties(headers=headers or {}, **properties)),
        body=payload,
        channel=cast(Any, channel),
    )
