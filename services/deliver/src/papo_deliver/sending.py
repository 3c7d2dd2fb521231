"""Sending texts to one chat, in order, each preceded by a typing indicator as long as a person would type it.

The caller passes the chunks of a reply (today one; later a reply split into several messages), the indices
already sent (skipped), and a callback that makes each accepted chunk durable before the next is sent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Container, Sequence
from dataclasses import dataclass

from papo_common.errors import PermanentError
from papo_deliver.classify import classify
from papo_deliver.evolution import EvolutionClient, SentMessage
from papo_deliver.pacing import TypingPace
from papo_deliver.retry import RETRYABLE, RetryPolicy, call_with_retries

logger = logging.getLogger(__name__)

Hook = Callable[[], Awaitable[None]]
OnSent = Callable[[int, SentMessage], Awaitable[None]]


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
) -> None:
    """Send each text not in `already_sent`, in order; `on_sent(index, message)` runs after each one is
    accepted and before the next is started. `before_each_call` runs before every HTTP call (the caller
    renews its lock there)."""
    for index, text in enumerate(texts):
        if index in already_sent:
            continue
        typing_ms = pace.typing_ms(text)
        typed = await _show_typing(client, chat, typing_ms, before_each_call)

        async def send(text: str = text, delay_ms: int = 0 if typed else typing_ms) -> SentMessage:
            await before_each_call()
            return await client.send_text(chat.instance, chat.number, text, delay_ms=delay_ms)

        message = await call_with_retries(send, policy, what=f"sendText chunk {index}")
        await on_sent(index, message)


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
