"""Typing time and the settings' consistency checks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from papo_deliver.sending import TypingPace
from papo_deliver.settings import DeliverSettings

PACE = TypingPace(chars_per_second=20, min_ms=800, max_ms=5000)


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [("ok", 800), ("x" * 16, 800), ("x" * 40, 2000), ("x" * 61, 3050), ("x" * 100, 5000), ("x" * 5000, 5000)],
)
def test_typing_time_is_proportional_to_length_within_bounds(text: str, expected_ms: int) -> None:
    assert PACE.typing_ms(text) == expected_ms


def test_settings_read_papo_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPO_EVOLUTION_URL", "http://evolution:8080")
    monkeypatch.setenv("PAPO_EVOLUTION_API_KEY", "k3y")
    monkeypatch.setenv("PAPO_DELIVER_TYPING_CPS", "12.5")
    settings = DeliverSettings()
    assert settings.evolution_url == "http://evolution:8080"
    assert settings.evolution_api_key.get_secret_value() == "k3y"
    assert "k3y" not in repr(settings)
    assert settings.deliver_typing_cps == 12.5


def test_settings_refuse_a_missing_api_key_in_production() -> None:
    with pytest.raises(ValidationError, match="PAPO_EVOLUTION_API_KEY"):
        DeliverSettings(environment="production", evolution_api_key="")


def test_settings_refuse_a_lock_lease_too_short_to_renew() -> None:
    with pytest.raises(ValidationError, match="deliver_lock_ttl_seconds"):
        DeliverSettings(deliver_lock_ttl_seconds=1)


def test_the_order_horizon_stays_within_the_redelivery_horizon() -> None:
    settings = DeliverSettings(deliver_order_horizon_seconds=3600, redelivery_horizon_seconds=1800)
    assert settings.order_horizon_seconds == 900


def test_settings_refuse_inverted_typing_bounds() -> None:
    with pytest.raises(ValidationError, match="TYPING_MIN_MS"):
        DeliverSettings(deliver_typing_min_ms=3000, deliver_typing_max_ms=1000)
