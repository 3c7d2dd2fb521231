"""`make_redis`'s client: its writes are bounded by a timeout scope rather than `asyncio.wait_for`, and still
fail within `timeout_seconds` when the server stops reading."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from papo_common.redis import (
    ScopedWriteTimeoutConnection,
    ScopedWriteTimeoutSSLConnection,
    ScopedWriteTimeoutUnixConnection,
    make_redis,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def deaf_server() -> AsyncIterator[str]:
    """A server that answers the client's connection handshake (`CLIENT SETINFO`, twice), then never reads
    again: the socket buffers fill and the client's next large write cannot finish."""
    released = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"+OK\r\n+OK\r\n")
        await writer.drain()
        await released.wait()  # hold the connection open, reading nothing, until the test is over
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        released.set()
        server.close()
        await server.wait_closed()


async def test_a_write_the_server_never_reads_fails_within_the_timeout(deaf_server: str) -> None:
    client = make_redis(deaf_server, timeout_seconds=0.3)
    try:
        with pytest.raises(RedisTimeoutError, match="writing"):
            async with asyncio.timeout(10):  # the test's own bound: the client's must come first
                await client.set("big", b"x" * (64 * 1024 * 1024))
    finally:
        await client.aclose()


async def test_commands_go_through_on_a_real_server(redis_url: str, redis_prefix: str) -> None:
    client = make_redis(redis_url)
    key = f"{redis_prefix}:scoped-write"
    try:
        assert await client.set(key, b"1", ex=10)
        assert await client.get(key) == b"1"
        connection = await client.connection_pool.get_connection()
        assert connection.socket_timeout == 5.0, "the timeout survives the write"
        await client.connection_pool.release(connection)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("url", "connection_class"),
    [
        ("redis://127.0.0.1:6379/0", ScopedWriteTimeoutConnection),
        ("rediss://redis.example:6380/0", ScopedWriteTimeoutSSLConnection),
        ("unix:///run/redis.sock", ScopedWriteTimeoutUnixConnection),
    ],
)
def test_the_connection_class_follows_the_scheme(url: str, connection_class: type) -> None:
    """redis-py picks the class by scheme (TLS for rediss://); papo swaps in the scoped write timeout."""
    assert make_redis(url).connection_pool.connection_class is connection_class
