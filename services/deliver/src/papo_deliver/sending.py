"""Sending the chunks of a reply to one chat: one at a time, in order, each typed like a person would.

For each chunk not yet sent, its send time is reserved first (`SendSlots`: spaced from every other send
through the same instance, by any replica) and "typing…" is shown for the time it would take to type, ending
at that slot: the person sees nothing while the number is busy elsewhere (their messages already show as
read), then typing, then the message, with no dead gap between typing and text. Right before the text goes
out, the instance's turn is claimed, which holds it back should an earlier send have run late. Each accepted chunk is made
durable by `on_sent` before the next one starts, so a retry resumes at the first unsent chunk.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass

from papo_common.evolution import (
    EvolutionClient,
    EvolutionError,
    EvolutionProtocolError,
    RetryPolicy,
    SentMessage,
    call_with_retries,
)
from papo_deliver.courtesy import Courtesies
from papo_deliver.send_slots import SendSlots, sleep_until

Hook = Callable[[], Awaitable[None]]
OnSent = Callable[[int, SentMessage], Awaitable[None]]
OnSending = Callable[[int], Awaitable[None]]
Evidence = Callable[[str], Awaitable[str | None]]

UNSPACED = SendSlots(None, "", interval_ms=0)
"""Sends go out as soon as their typing is done, however close to other sends."""


async def _nothing() -> None:
    return None


async def _nothing_for(index: int) -> None:
    return None


@dataclass(frozen=True)
class TypingPace:
    chars_per_second: float
    min_ms: int
    max_ms: int

    def typing_ms(self, text: str) -> int:
        """Milliseconds of "typing…" before `text` is sent: proportional to its length, within bounds, so a
        one-word answer still shows a moment of typing and a long one never keeps the person waiting long."""
        proportional = round(len(text) / self.chars_per_second * 1000)
        return max(self.min_ms, min(self.max_ms, proportional))


@dataclass(frozen=True)
class Chat:
    instance: str
    number: str
    """Evolution's `number`: see `papo_common.evolution.evolution_number`."""
    jid: str = ""
    """The chat's JID, under which papo's own sends are recorded (`OwnSends`); the number when empty."""


async def send_texts(
    client: EvolutionClient,
    chat: Chat,
    texts: Sequence[str],
    *,
    pace: TypingPace,
    policy: RetryPolicy,
    on_sent: OnSent,
    on_sending: OnSending = _nothing_for,
    on_not_sent: OnSending = _nothing_for,
    already_sent: Container[int] = (),
    before_each_call: Hook = _nothing,
    slots: SendSlots = UNSPACED,
    renew_every_seconds: float = 10.0,
    courtesies: Courtesies | None = None,
    evidence: Evidence | None = None,
) -> None:
    """Send each text not in `already_sent`, in order; `on_sending(index)` runs right before each `sendText`
    call (the caller marks the chunk in flight there), `on_not_sent(index)` after a call Evolution refused
    with a 4xx (nothing went out, so the mark can go), `on_sent(index, message)` after each one is accepted
    and before the next is started. `before_each_call` runs before every HTTP call and every
    `renew_every_seconds` of waiting (the caller renews its lock there). Without `courtesies` no typing
    indicator is shown: Evolution types for the typing time itself.

    With `evidence` (the message id papo's own echo left for a text, `OwnSends.sent_evidence`), a retry after a
    failed call first looks for it, so a send that went out though its answer was lost is not sent again. The
    caller writes what makes that evidence in its hooks: the text expected before the call (`on_sending`),
    its id after it (`on_sent`)."""

    async def wait_until(deadline: float) -> None:
        await sleep_until(deadline, renew=before_each_call, renew_every_seconds=renew_every_seconds)

    for index, text in enumerate(texts):
        if index in already_sent:
            continue
        typing_ms = pace.typing_ms(text)
        slot = await slots.reserve(chat.instance, lead_ms=typing_ms)
        await wait_until(slot - typing_ms / 1000)
        typed = False
        if courtesies is not None and typing_ms > 0:  # nothing to type (typing turned off): no call
            await before_each_call()
            typed = await courtesies.show_typing(chat.instance, chat.number, typing_ms)
        attempts = 0

        async def send(
            text: str = text, first_slot: float = slot, typed: bool = typed, index: int = index
        ) -> SentMessage:
            nonlocal attempts
            attempts += 1
            # A retry is another message as far as WhatsApp can tell: it takes a fresh slot.
            target = first_slot if attempts == 1 else await slots.reserve(chat.instance)
            if typed:
                await wait_until(target)
            await before_each_call()
            if evidence is not None and attempts > 1 and (sent_as := await evidence(text)) is not None:
                return SentMessage(sent_as, None, None)
            # Without a typing indicator shown, Evolution types until the slot itself.
            delay_ms = await _claim_turn(slots, chat.instance, None if typed else target, wait_until)
            await on_sending(index)
            try:
                return await client.send_text(chat.instance, chat.number, text, delay_ms=delay_ms)
            except EvolutionError as error:
                if definitely_not_sent(error):
                    await on_not_sent(index)
                raise

        message = await call_with_retries(send, policy, what=f"sendText chunk {index}")
        await on_sent(index, message)


def definitely_not_sent(error: EvolutionError) -> bool:
    """Whether Evolution's answer proves the text did not go out. A 4xx is a refusal before WhatsApp took it
    (Baileys' closed socket, a bad number, a rejected key). A 5xx may come after Baileys handed the text on,
    and a success without an id is a success: both may have been sent, so only the echo can tell."""
    return not isinstance(error, EvolutionProtocolError) and 400 <= error.status_code < 500


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
