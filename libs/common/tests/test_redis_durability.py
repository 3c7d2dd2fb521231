"""The start-up judgement of Redis persistence, without a Redis: the integration tier checks real servers."""

from __future__ import annotations

import logging

import pytest

from papo_common.redis_durability import VolatileRedisError, judge, persistence_of
from papo_common.settings import PapoSettings


@pytest.mark.parametrize(
    ("info", "save", "expected"),
    [
        ({"aof_enabled": 1}, "", "aof"),
        ({"aof_enabled": "1"}, None, "aof"),
        ({"aof_enabled": 0}, "3600 1 300 100", "snapshots"),
        ({"aof_enabled": 0}, "", "none"),
        ({"aof_enabled": 0}, None, "unknown"),
    ],
)
def test_persistence_is_read_from_info_and_the_save_schedule(
    info: dict[str, object], save: str | None, expected: str
) -> None:
    assert persistence_of(info, save) == expected


def test_production_refuses_redis_without_an_append_only_file() -> None:
    with pytest.raises(VolatileRedisError, match="PAPO_REDIS_ALLOW_VOLATILE"):
        judge("snapshots", PapoSettings(environment="production"))


def test_production_may_accept_a_volatile_redis_when_told(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        judge("none", PapoSettings(environment="production", redis_allow_volatile=True))
    assert "not an append-only file" in caplog.text


def test_development_warns_and_starts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        judge("unknown", PapoSettings())
    assert "not an append-only file" in caplog.text


def test_an_append_only_file_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        judge("aof", PapoSettings(environment="production"))
    assert caplog.text == ""
