from __future__ import annotations

from collections.abc import Iterator

import pytest

from papo_common import privacy
from papo_common.privacy import conversation_ref


@pytest.fixture(autouse=True)
def fresh_key() -> Iterator[None]:
    privacy._key.cache_clear()
    yield
    privacy._key.cache_clear()


def test_ref_hides_the_number_and_is_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPO_LOG_HASH_KEY", "s3cret")
    ref = conversation_ref("loja:5511999990000@s.whatsapp.net")
    assert len(ref) == 12 and int(ref, 16) >= 0
    assert "5511999990000" not in ref
    assert conversation_ref("loja:5511999990000@s.whatsapp.net") == ref
    assert conversation_ref("loja:5511999990001@s.whatsapp.net") != ref


def test_ref_depends_on_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPO_LOG_HASH_KEY", "one")
    first = conversation_ref("loja:5511999990000@s.whatsapp.net")
    privacy._key.cache_clear()
    monkeypatch.setenv("PAPO_LOG_HASH_KEY", "two")
    assert conversation_ref("loja:5511999990000@s.whatsapp.net") != first


def test_without_a_secret_a_random_key_still_hides_the_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAPO_LOG_HASH_KEY", raising=False)
    import hashlib

    plain = hashlib.sha256(b"loja:5511999990000@s.whatsapp.net").hexdigest()[:12]
    assert conversation_ref("loja:5511999990000@s.whatsapp.net") != plain
