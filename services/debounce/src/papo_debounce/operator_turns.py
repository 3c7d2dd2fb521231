"""An operator's words in the conversation's hot history, so the model knows what the human at the business
said once the bot answers again, without waiting for the history to be reloaded from PostgreSQL.

The turn has the shape of the llm's history entries (`{"role", "content", "seq"}`); what the business said is
the assistant's side, as when the history is rebuilt from PostgreSQL. Only an existing hot copy is appended
to: a missing one is rebuilt from PostgreSQL, where persist stores the operator row.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from papo_common.contracts import InboundMessage
from papo_common.redis import ConversationKeys

APPENDED_MARK_SECONDS = 48 * 3600
"""How long a redelivered operator message is recognised and not appended twice."""

# KEYS: history, this message's mark. ARGV: the turn, mark ttl ms.
_APPEND = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', tonumber(ARGV[2])) then
  return 0
end
redis.call('RPUSH', KEYS[1], ARGV[1])
return 1
"""


class OperatorTurns:
    def __init__(self, redis: Redis, prefix: str) -> None:
        self._prefix = prefix
        self._append: Any = redis.register_script(_APPEND)

    async def append(self, message: InboundMessage) -> bool:
        """Add the operator's text to the hot history once; False when there is no text or no hot copy."""
        if not (message.text and message.text.strip()):
            return False
        keys = ConversationKeys(self._prefix, message.conversation)
        turn = json.dumps({"role": "assistant", "content": message.text, "seq": None}, ensure_ascii=False)
        appended = await self._append(
            keys=[keys.history, keys.scoped(f"operator-turn:{message.message_id}")],
            args=[turn, APPENDED_MARK_SECONDS * 1000],
        )
        return bool(appended)
