"""Many runs of one script in one pipeline (`papo_common.redis.run_script_many`), and writes applied together as
one script (`papo_common.redis.Writes`), on the real Redis."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ResponseError

from papo_common import redis as papo_redis
from papo_common.redis import Writes, run_script_many

pytestmark = pytest.mark.integration


def counting_round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sent = [0]
    original = AbstractConnection.send_packed_command

    async def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent[0] += 1
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


async def test_a_script_redis_does_not_know_is_loaded_and_each_call_runs_once(
    redis_client: Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a script never seen before (its comment is new): Redis answers NOSCRIPT to the first pipeline
    script = redis_client.register_script(f"-- {uuid.uuid4().hex}\nreturn redis.call('INCR', KEYS[1])")
    keys = [f"{redis_prefix}:counter:{n}" for n in range(3)]
    await redis_client.ping()
    sent = counting_round_trips(monkeypatch)

    assert await run_script_many(redis_client, script, [([key], []) for key in keys]) == [1, 1, 1]
    assert sent[0] == 3, "the pipeline, the load, the pipeline again"
    assert await run_script_many(redis_client, script, [([key], []) for key in keys]) == [2, 2, 2]
    assert sent[0] == 4, "one round trip, with no SCRIPT EXISTS before it"


async def test_an_error_in_one_call_is_raised_after_the_others_ran(
    redis_client: Redis, redis_prefix: str
) -> None:
    script = redis_client.register_script("return redis.call('INCR', KEYS[1])")
    text = f"{redis_prefix}:text"
    await redis_client.set(text, b"not a number")
    counter = f"{redis_prefix}:counter"
    with pytest.raises(ResponseError):
        await run_script_many(redis_client, script, [([text], []), ([counter], [])])
    assert await redis_client.get(counter) == b"1"


async def test_writes_are_applied_together_in_one_round_trip(
    redis_client: Redis, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await redis_client.script_load(papo_redis._WRITES)
    hash_key, text_key, gone_key = (f"{redis_prefix}:{name}" for name in ("hash", "text", "gone"))
    await redis_client.set(gone_key, b"1")
    sent = counting_round_trips(monkeypatch)

    writes = Writes().hset(hash_key, "0", "first").expire(hash_key, 600)
    writes.set(text_key, b"1", ex=900).delete(gone_key)
    await writes.apply(redis_client)

    assert sent[0] == 1
    assert await redis_client.hgetall(hash_key) == {b"0": b"first"}
    assert 0 < await redis_client.ttl(hash_key) <= 600
    assert await redis_client.get(text_key) == b"1" and 0 < await redis_client.ttl(text_key) <= 900
    assert await redis_client.exists(gone_key) == 0
    before = sent[0]
    await Writes().apply(redis_client)
    assert sent[0] == before, "nothing to write, no round trip"


async def test_the_writes_script_runs_only_the_writes_it_queues(
    redis_client: Redis, redis_prefix: str
) -> None:
    key = f"{redis_prefix}:kept"
    await redis_client.set(key, b"1")
    script = redis_client.register_script(papo_redis._WRITES)
    with pytest.raises(ResponseError, match="not a write papo queues"):
        await script(keys=[key], args=["GETDEL", 0])
    assert await redis_client.get(key) == b"1"
