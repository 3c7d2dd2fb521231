"""The broker side: a voice note in, its `Transcript` out."""

from __future__ import annotations

import logging
import time

from faststream.rabbit import RabbitBroker, RabbitMessage

from papo_common.broker import publish, subscribe
from papo_common.contracts import InboundMessage
from papo_common.errors import PermanentError
from papo_common.resilience import OUTAGES, redelivery_plan
from papo_common.topology import TRANSCRIBE
from papo_transcribe.transcriber import Transcriber

logger = logging.getLogger(__name__)


def is_last_delivery(
    message: RabbitMessage, error: BaseException | None = None, *, horizon_seconds: float = 1800.0
) -> bool:
    """Whether this message is dead-lettered if it fails once more with `error`: a dependency outage past
    the redelivery horizon (`papo_common.resilience`), or any other failure at the queue's delivery limit
    (quorum queues count deliveries in `x-delivery-count`: 0 at first, up to the limit)."""
    headers = message.headers or {}
    if isinstance(error, OUTAGES):
        return redelivery_plan(TRANSCRIBE, headers, now=time.time(), horizon_seconds=horizon_seconds) is None
    return int(headers.get("x-delivery-count") or 0) >= TRANSCRIBE.delivery_limit


def register(broker: RabbitBroker, transcriber: Transcriber, *, horizon_seconds: float = 1800.0) -> None:
    """Subscribe the handler to transcribe's queue."""

    @subscribe(
        broker,
        TRANSCRIBE,
        contract=InboundMessage,
        title="transcribe",
        description="Voice notes to transcripts",
    )
    async def transcribe_voice_note(body: InboundMessage, message: RabbitMessage) -> None:
        if body.kind != "audio":
            raise PermanentError(f"transcribe got a {body.kind} message; only audio is bound to its queue")
        try:
            transcript = await transcriber.transcribe(body)
        except Exception as error:
            if not is_last_delivery(message, error, horizon_seconds=horizon_seconds):
                raise
            # Out of retries: debounce must still hear about this note, or the burst waits for its timeout.
            logger.exception("giving up on a voice note", extra={"message_id": body.message_id})
            await publish(
                broker, transcriber.failure(body, f"transcription unavailable ({type(error).__name__})")
            )
            raise
        await publish(broker, transcript)
