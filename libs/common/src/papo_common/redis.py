"""Redis clients and the key names that more than one service reads."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
    parse_url,
)
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from papo_common.contracts import ConversationRef

ScriptCall = tuple[Sequence[Any], Sequence[Any]]
"""A script's keys and arguments."""

CONNECTION_RETRIES = 3
"""How often a command whose connection broke is sent again on a new one before it counts as an outage."""


async def run_script_many(redis: Redis, script: AsyncScript, calls: Sequence[ScriptCall]) -> list[Any]:
    """Run `script` once per `(keys, args)` in one pipeline; returns the answers in order.

    redis-py's pipeline asks `SCRIPT EXISTS` before every execute that holds a script: a round trip more per
    batch. This sends `EVALSHA` alone, and when Redis answers NOSCRIPT (it restarted, or its scripts were
    flushed) loads the script and runs again only the calls that got that answer, which never ran."""
    answers: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(2):
        async with redis.pipeline(transaction=False) as pipe:
            for index in todo:
                keys, args = calls[index]
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
        for index, reply in zip(todo, replies, strict=True):
            answers[index] = reply
        todo = [index for index, reply in zip(todo, replies, strict=True) if isinstance(reply, NoScriptError)]
        if not todo:
            break
        await redis.script_load(script.script)
    for answer in answers:
        if isinstance(answer, Exception):
            raise answer
    return answers


def make_redis(url: str, *, timeout_seconds: float = 5.0) -> Redis:
    """An async Redis client with bounded timeouts, so a dead Redis fails fast instead of hanging a handler.

    A command whose connection broke (a Redis failover, a proxy or a `CLIENT KILL` cutting it) is sent again
    on a new connection, a few times within a second, before it counts as an outage. Redis may have run it
    already, its answer lost with the connection: every script and lease papo keeps state with is written
    to answer such a repeat as the first run did. A timeout is not repeated: Redis is slow, not gone.

    `timeout_seconds` bounds each read and each write."""
    options: dict[str, Any] = dict(parse_url(url))
    # the class the URL's scheme calls for (TLS for rediss://), with the scoped write timeout
    scoped = _SCOPED_WRITE_TIMEOUT[options.pop("connection_class", Connection)]
    pool = ConnectionPool(
        connection_class=scoped,
        **options,
        decode_responses=False,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=3,
        health_check_interval=30,
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=0.5),
            CONNECTION_RETRIES,
            supported_errors=(RedisConnectionError,),
        ),
    )
    return Redis.from_pool(pool)


class _ScopedWriteTimeout:
    """A redis-py connection whose writes are bounded by a timeout scope instead of `asyncio.wait_for`.

    On Python 3.11, `wait_for` runs each write in a task of its own, one more trip through the event loop per
    command: 15–25 µs of client CPU on a 100–135 µs GET (docs/performance.md, the ninth run). The same `socket_timeout` bounds the write,
    and a write that overruns it disconnects and raises redis-py's `TimeoutError`, as before. Reads keep
    redis-py's own scope."""

    socket_timeout: float | None

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        timeout = self.socket_timeout
        if not timeout:
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        try:
            async with asyncio.timeout(timeout):
                # with no socket timeout, redis-py writes inline; the scope around it bounds the write, and
                # the health check's PING that may come first. The connection serves one command at a time.
                self.socket_timeout = None
                try:
                    await super().send_packed_command(command, check_health)  # type: ignore[misc]
                finally:
                    self.socket_timeout = timeout
        except TimeoutError:
            await self.disconnect(nowait=True)  # type: ignore[attr-defined]
            raise RedisTimeoutError("Timeout writing to socket") from None


class ScopedWriteTimeoutConnection(_ScopedWriteTimeout, Connection):
    """`redis://`"""


class ScopedWriteTimeoutSSLConnection(_ScopedWriteTimeout, SSLConnection):
    """`rediss://`"""


class ScopedWriteTimeoutUnixConnection(_ScopedWriteTimeout, UnixDomainSocketConnection):
    """`unix://`"""


_SCOPED_WRITE_TIMEOUT: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: ScopedWriteTimeoutConnection,
    SSLConnection: ScopedWriteTimeoutSSLConnection,
    UnixDomainSocketConnection: ScopedWriteTimeoutUnixConnection,
}


class ConversationKeys:
    """Redis keys of one conversation. The `{...}` hash tag keeps them in one Redis Cluster slot, so Lua
    scripts may touch several of them atomically."""

    def __init__(self, prefix: str, conversation: ConversationRef) -> None:
        self._base = f"{prefix}:conv:{{{conversation.key}}}"

    @property
    def inbound_seq(self) -> str:
        """Counter of inbound messages (written by debounce, read by llm to detect a superseded reply)."""
        return f"{self._base}:inbound-seq"

    @property
    def history(self) -> str:
        return f"{self._base}:history"

    @property
    def turn_lock(self) -> str:
        return f"{self._base}:turn-lock"

    @property
    def answered_seq(self) -> str:
        return f"{self._base}:answered-seq"

    @property
    def paused(self) -> str:
        """Present while the bot is paused for this conversation (a human took over); expires by itself."""
        return f"{self._base}:paused"

    @property
    def pattern(self) -> str:
        """Matches every key of this conversation (for erasure)."""
        return f"{self._base}:*"

    def scoped(self, suffix: str) -> str:
        """A service-private key of this conversation."""
        return f"{self._base}:{suffix}"


# KEYS: one per write. ARGV: per write, the command, how many arguments follow the key, then those arguments.
# Only the commands `Writes` queues run; all of them are safe to repeat.
_WRITES = """
local allowed = {SET = true, HSET = true, EXPIRE = true, DEL = true}
local at = 1
for _, key in ipairs(KEYS) do
  local command, count = ARGV[at], tonumber(ARGV[at + 1])
  if not allowed[command] then return redis.error_reply('not a write papo queues: ' .. tostring(command)) end
  redis.call(command, key, unpack(ARGV, at + 2, at + 1 + count))
  at = at + 2 + count
end
return #KEYS
"""


class Writes:
    """Writes applied together in one script: atomic as a MULTI/EXEC transaction is, in one round trip, for
    about 60 % of the client's CPU (redis-py's transaction sends and parses MULTI, each command's QUEUED and
    EXEC: 160 against 100 µs for four writes, measured alone; docs/performance.md). Each is safe to repeat, so
    redis-py sending the script again after its answer was lost writes the same state."""

    _script: AsyncScript | None = None
    """Registered once for every client, as redis-py registers its `Lock`'s scripts, and run on the caller's."""

    def __init__(self) -> None:
        self._keys: list[str] = []
        self._args: list[Any] = []

    def _queue(self, command: str, key: str, *args: Any) -> Writes:
        self._keys.append(key)
        self._args += [command, len(args), *args]
        return self

    def set(self, key: str, value: bytes | str, *, ex: int) -> Writes:
        return self._queue("SET", key, value, "EX", ex)

    def hset(self, key: str, field: str, value: bytes | str) -> Writes:
        return self._queue("HSET", key, field, value)

    def expire(self, key: str, seconds: int) -> Writes:
        return self._queue("EXPIRE", key, seconds)

    def delete(self, key: str) -> Writes:
        return self._queue("DEL", key)

    def __len__(self) -> int:
        return len(self._keys)

    async def apply(self, redis: Redis) -> None:
        """Write them all, atomically, in one round trip."""
        if not self._keys:
            return
        if Writes._script is None:
            Writes._script = redis.register_script(_WRITES)
        await Writes._script(keys=self._keys, args=self._args, client=redis)


CONVERSATION_INDEXES = ("debounce:due", "debounce:claims", "sessions:active", "sessions:closing")
"""Sorted sets, under `<prefix>:`, whose members are conversations (`conversation_member`): what debounce has
due or is publishing, and the llm's open and closing sessions. An erasure removes the person from each."""


def conversation_member(conversation: ConversationRef) -> str:
    """A conversation as a member of the shared sorted sets."""
    return json.dumps([conversation.instance, conversation.user_id], separators=(",", ":"))
