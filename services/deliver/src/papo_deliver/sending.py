"""Sending the chunks of a reply to one chat: one at a time, in order, each typed like a person would.

For each chunk not yet sent, its send time is reserved first (`SendSlots`: spaced from every other send
through the same instance, by any replica) and "typing…" is shown for the time it would take to type, ending
at that slot: the person sees nothing while the number is busy elsewhere (their messages already show as
read), then typing, then the message, with no dead gap between typing and text. Right before the text goes
out, the instance's turn is claimed, which holds it back should an earlier send have run late. Each accepted chunk is made
durable by `on_sent` before the next one starts, so a retry resumes at the first unsent chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass

from papo_common.errors import PermanentError
from papo_deliver.classify import classify
from papo_deliver.evolution import EvolutionClient, SentMessage
from papo_deliver.pacing import TypingPace
from papo_deliver.retry import RETRYABLE, RetryPolicy, call_with_retries
from papo_deliver.send_slots import SendSlots, sleep_until

logger = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
OnSent = Callable[[int, SentMessage], Awaitable[None]]

UNSPACED = SendSlots(None, "", interval_ms=0)
"""Sends go out as soon as their typing is done, however close to other sends."""


async def _nothing() -> None:
    return None


@dataclass(frozen=True)
class Chat:
    instance: str
    number: str
    """Evolution's `number`: see `evolution.evolution_number`."""


async def send_texts(
    client: EvolutionClient,
    chat: Chat,
    texts: Sequence[str],
    *,
    pace: TypingPace,
    policy: RetryPolicy,
    on_sent: OnSent,
    already_sent: Container[int] = (),
    before_each_call: Hook = _nothing,
    slots: SendSlots = UNSPACED,
    renew_every_seconds: float = 10.0,
) -> None:
    """Send each text not in `already_sent`, in order; `on_sent(index, message)` runs after each one is
    accepted and before the next is started. `before_each_call` runs before every HTTP call and every
    `renew_every_seconds` of waiting (the caller renews its lock there)."""

    async def wait_until(deadline: float) -> None:
        await sleep_until(deadline, renew=before_each_call, renew_every_seconds=renew_every_seconds)

    for index, text in enumerate(texts):
        if index in already_sent:
            continue
        typing_ms = pace.typing_ms(text)
        slot = await slots.reserve(chat.instance, lead_ms=typing_ms)
        await wait_until(slot - typing_ms / 1000)
        typed = await _show_typing(client, chat, typing_ms, before_each_call)
        attempts = 0

        async def send(text: str = text, first_slot: float = slot, typed: bool = typed) -> SentMessage:
            nonlocal attempts
            attempts += 1
            # A retry is another message as far as WhatsApp can tell: it takes a fresh slot.
            target = first_slot if attempts == 1 else await slots.reserve(chat.instance)
            if typed:
                await wait_until(target)
            await before_each_call()
            # Without a typing indicator shown, Evolution types until the slot itself.
            delay_ms = await _claim_turn(slots, chat.instance, None if typed else target, wait_until)
            return await client.send_text(chat.instance, chat.number, text, delay_ms=delay_ms)

        message = await call_with_retries(send, policy, what=f"sendText chunk {index}")
        await on_sent(index, message)


async def _claim_turn(
    slots: SendSlots, instance: str, types_until: float | None, wait_until: Callable[[float], Awaitable[None]]
) -> int:
    """Wait for the instance's turn to send; returns how long Evolution should type before sending."""
    while True:
        delay_ms = 0 if types_until is None else max(0, round((types_until - time.monotonic()) * 1000))
        wait = await slots.claim(instance, lead_ms=delay_ms)
        if wait <= 0:
            return delay_ms
        await wait_until(time.monotonic() + wait)


async def _show_typing(client: EvolutionClient, chat: Chat, typing_ms: int, before_call: Hook) -> bool:
    """Show "typing…" for `typing_ms` (Evolution holds the request that long). The indicator is cosmetic: a
    transient failure is logged and the text goes out anyway, with Evolution's own typing delay instead. A
    permanent one (number not on WhatsApp, wrong key, unknown instance) would fail the send too: raised."""
    await before_call()
    try:
        await client.send_presence(chat.instance, chat.number, delay_ms=typing_ms)
    except RETRYABLE as error:
        verdict = classify(error)
        if not verdict.transient:
            raise PermanentError(f"sendPresence: {verdict.reason}") from error
        logger.warning(
            "typing indicator not shown", extra={"instance": chat.instance, "reason": verdict.reason}
        )
        return False
    return True
