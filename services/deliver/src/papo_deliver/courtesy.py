"""Typing indicators and read receipts: courtesies that never cost or delay a reply.

Any failure of `sendPresence` or `markMessageAsRead` is swallowed, logged without the person's number and
counted; the reply goes on, with `sendText`'s own `delay` standing in for the typing indicator. A failure that
would also fail the send (a rejected key, an unknown instance, a number not on WhatsApp) is left to `sendText`
to report. Each call gets a short timeout of its own beyond the delay Evolution holds it for.

The `EVOLUTION` and `WHATSAPP-BUSINESS` channels refuse both calls ("Method not available on …"). Such a
refusal is remembered per instance and call for a while, in this process: the channel of an instance does not
change while it lives, so each replica paying one refused call per period is cheaper than a Redis round trip
on every reply, and a forgotten refusal costs only one more refused call.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from papo_common.evolution import EvolutionClient, classify
from papo_common.metrics import DELIVER_COURTESIES_SKIPPED

logger = logging.getLogger(__name__)

PRESENCE = "sendPresence"
READ_RECEIPT = "markMessageAsRead"


class RefusalMemory:
    """Which (instance, call) pairs a channel refused, until when. `seconds` 0 remembers nothing."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: dict[tuple[str, str], float] = {}

    def refused(self, instance: str, call: str) -> bool:
        until = self._until.get((instance, call))
        if until is None:
            return False
        if self._clock() < until:
            return True
        del self._until[(instance, call)]
        return False

    def remember(self, instance: str, call: str) -> None:
        if self._seconds > 0:
            self._until[(instance, call)] = self._clock() + self._seconds


class Courtesies:
    """Shows typing and sends read receipts through `client`, best effort."""

    def __init__(
        self, client: EvolutionClient, *, timeout_seconds: float = 3.0, refusals: RefusalMemory | None = None
    ) -> None:
        self._client = client
        self._timeout_seconds = timeout_seconds
        self._refusals = refusals or RefusalMemory(3600)

    async def show_typing(self, instance: str, number: str, typing_ms: int) -> bool:
        """Show "typing…" to `number` for `typing_ms` (Evolution holds the request that long). False when it
        was not shown: the caller then has `sendText` type instead."""
        return await self._attempt(
            PRESENCE,
            instance,
            lambda: self._client.send_presence(
                instance, number, delay_ms=typing_ms, timeout_seconds=self._timeout_seconds
            ),
        )

    async def mark_read(self, instance: str, chat_id: str, message_ids: Sequence[str]) -> bool:
        """Blue ticks on the messages a reply answers, as a person reading them would, before typing."""
        if not message_ids:
            return False
        return await self._attempt(
            READ_RECEIPT,
            instance,
            lambda: self._client.mark_as_read(
                instance, chat_id, message_ids, timeout_seconds=self._timeout_seconds
            ),
        )

    async def _attempt(self, call: str, instance: str, run: Callable[[], Awaitable[None]]) -> bool:
        if self._refusals.refused(instance, call):
            DELIVER_COURTESIES_SKIPPED.labels(instance=instance, call=call, reason="unsupported").inc()
            return False
        try:
            await run()
        except Exception as error:  # a courtesy must never fail the reply
            verdict = classify(error)
            if verdict.kind == "unsupported":
                self._refusals.remember(instance, call)
                logger.info(
                    "%s refused by the instance's channel; not asking again for a while",
                    call,
                    extra={"instance": instance, "call": call},
                )
            else:
                logger.warning(
                    "%s failed; replying anyway",
                    call,
                    extra={"instance": instance, "call": call, "reason": verdict.reason},
                )
            reason = "unsupported" if verdict.kind == "unsupported" else "failed"
            DELIVER_COURTESIES_SKIPPED.labels(instance=instance, call=call, reason=reason).inc()
            return False
        return True
