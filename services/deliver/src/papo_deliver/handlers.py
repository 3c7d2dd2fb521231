"""deliver's one handler: a `Reply` in, the reply sent through Evolution API, a `ReplySent` out."""

from __future__ import annotations

import logging
from typing import Any

from faststream.rabbit import RabbitBroker

from papo_common.broker import publish, subscribe
from papo_common.contracts import Reply, ReplySent
from papo_common.control import paused_reason
from papo_common.errors import DependencyUnavailable, PermanentError
from papo_common.metrics import REPLIES
from papo_common.topology import DELIVER
from papo_deliver.runtime import DeliverRuntime

logger = logging.getLogger(__name__)


def register_handlers(broker: RabbitBroker, runtime: DeliverRuntime) -> Any:
    """Subscribe deliver's handler to its queue; returns FastStream's wrapper of it (tests read its `mock`)."""

    @subscribe(broker, DELIVER)
    async def deliver_reply(reply: Reply) -> None:
        instance = reply.conversation.instance
        if reply.kind == "answer" and await paused_reason(
            runtime.redis, runtime.settings.redis_key_prefix, reply.conversation
        ):
            # A human took over while the answer was being written: theirs is the answer now. Notices
            # ("a human will answer you") still go out.
            REPLIES.labels(instance=instance, outcome="withheld").inc()
            logger.info("reply withheld: the bot is paused", extra={"reply_id": reply.reply_id})
            return
        try:
            outcome = await runtime.deliverer.deliver(reply)
        except (PermanentError, DependencyUnavailable):
            REPLIES.labels(instance=instance, outcome="failed").inc()
            raise
        REPLIES.labels(instance=instance, outcome="duplicate" if outcome.already_sent else "sent").inc()
        # Published after the send is recorded: a crash in between redelivers the reply, which then sends
        # nothing and publishes this again.
        await publish(
            broker,
            ReplySent(
                reply_id=reply.reply_id,
                conversation=reply.conversation,
                whatsapp_message_ids=outcome.message_ids,
                sent_at=outcome.sent_at,
            ),
        )

    return deliver_reply
