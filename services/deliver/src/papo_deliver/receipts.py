"""Blue ticks before the answer: the messages a reply answers are marked as read, as a person reading them
would, before "typing…" starts.

Best effort: a read receipt is a courtesy, so any failure (Evolution down, a 500, no key) is logged and the
reply goes on. One attempt, with a short timeout of its own, so a hanging Evolution delays the reply little.
"""

from __future__ import annotations

import logging

from papo_common.contracts import Reply
from papo_deliver.classify import classify
from papo_deliver.evolution import EvolutionClient

logger = logging.getLogger(__name__)

READ_RECEIPT_TIMEOUT_SECONDS = 3.0


async def mark_answered_as_read(client: EvolutionClient, reply: Reply) -> bool:
    """Mark `reply.in_reply_to` as read in the reply's chat; False (and a warning) when it could not be."""
    if not reply.in_reply_to:
        return False
    try:
        await client.mark_as_read(
            reply.conversation.instance,
            reply.chat_id,
            reply.in_reply_to,
            timeout_seconds=READ_RECEIPT_TIMEOUT_SECONDS,
        )
    except Exception as error:  # a courtesy must never fail the reply
        logger.warning(
            "could not mark messages as read; replying anyway",
            extra={
                "instance": reply.conversation.instance,
                "reply_id": reply.reply_id,
                "reason": classify(error).reason,
            },
        )
        return False
    return True
