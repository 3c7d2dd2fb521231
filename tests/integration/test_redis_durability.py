"""`require_durable_redis` against real Redis servers: a private one with an append-only file, and one
without persistence."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from papo_common.redis_durability import VolatileRedisError, require_durable_redis
from papo_common.settings import PapoSettings

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    port = _free_port()
    appendonly = "yes" if request.param == "aof" else "no"
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--save",
            "",
            "--appendonly",
            appendonly,
            "--appendfsync",
            "everysec",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    try:
        for line in server.stdout:  # the server says when it listens: wait for that, not for a delay
            if "Ready to accept connections" in line:
                break
        else:
            pytest.fail("redis-server exited before accepting connections")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.mark.parametrize("private_redis", ["aof"], indirect=True)
def test_production_starts_on_redis_with_an_append_only_file(private_redis: str) -> None:
    require_durable_redis(PapoSettings(environment="production", redis_url=private_redis))


@pytest.mark.parametrize("private_redis", ["none"], indirect=True)
def test_production_refuses_redis_without_persistence(private_redis: str) -> None:
    with pytest.raises(VolatileRedisError):
        require_durable_redis(PapoSettings(environment="production", redis_url=private_redis))


@pytest.mark.parametrize("private_redis", ["none"], indirect=True)
def test_development_warns_about_redis_without_persistence(
    private_redis: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        require_durable_redis(PapoSettings(redis_url=private_redis))
    assert "not an append-only file" in caplog.text


def test_an_unreachable_redis_is_left_to_readiness(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        require_durable_redis(
            PapoSettings(environment="production", redis_url=f"redis://127.0.0.1:{_free_port()}/0")
        )
    assert "not checked" in caplog.text
