"""Several WhatsApp numbers in one deployment: each instance is called with its own key, never another's."""

from __future__ import annotations

import logging
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from papo_common.contracts import Reply
from papo_common.evolution import ApiKeys, EvolutionClient, EvolutionError, MissingApiKey, classify
from papo_deliver.settings import DeliverSettings
from papo_testing.fake_evolution import FakeEvolution

KEYS = ApiKeys(SecretStr("global-key"), {"loja": SecretStr("loja-key"), "clinica": SecretStr("clinica-key")})


def test_a_mapped_instance_uses_its_own_key_and_others_the_global_one() -> None:
    assert KEYS.for_instance("loja") == "loja-key"
    assert KEYS.for_instance("clinica") == "clinica-key"
    assert KEYS.for_instance("padaria") == "global-key"


def test_an_instance_with_no_key_at_all_is_a_configuration_error_redelivered_not_lost() -> None:
    keys = ApiKeys(SecretStr(""), {"loja": SecretStr("loja-key")})
    with pytest.raises(MissingApiKey, match="padaria") as raised:
        keys.for_instance("padaria")
    assert classify(raised.value).kind == "misconfigured"


def test_keys_never_show_in_a_repr() -> None:
    assert "loja-key" not in repr(KEYS)
    assert "global-key" not in repr(KEYS)


@pytest.mark.integration
async def test_each_request_carries_the_key_of_the_instance_it_goes_through(
    http: httpx.AsyncClient, make_reply: Callable[..., Reply]
) -> None:
    async with FakeEvolution(
        api_keys={"loja": "loja-key", "clinica": "clinica-key", "padaria": "padaria-key"},
        global_api_key="global-key",
        simulate_delays=False,
    ) as evolution:
        client = EvolutionClient(http, evolution.url, KEYS, timeout_seconds=2)
        for instance in ("loja", "clinica", "padaria"):
            await client.send_text(instance, "5511987654321", f"oi de {instance}")

    assert [(r.instance, r.headers["apikey"], r.status) for r in evolution.requests] == [
        ("loja", "loja-key", 201),
        ("clinica", "clinica-key", 201),
        ("padaria", "global-key", 201),
    ]


@pytest.mark.integration
async def test_another_instances_key_is_refused_by_evolution(http: httpx.AsyncClient) -> None:
    async with FakeEvolution(api_keys={"loja": "loja-key", "clinica": "clinica-key"}) as evolution:
        crossed = EvolutionClient(
            http, evolution.url, ApiKeys(SecretStr(""), {"clinica": SecretStr("loja-key")}), 2
        )
        with pytest.raises(EvolutionError, match="401"):
            await crossed.send_text("clinica", "5511987654321", "oi")
    assert evolution.sent_texts() == []


def test_settings_read_per_instance_keys_from_a_json_object(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PAPO_EVOLUTION_API_KEYS", '{"loja": "loja-key", "clinica": "clinica-key"}')
    monkeypatch.setenv("PAPO_EVOLUTION_API_KEY", "global-key")
    settings = DeliverSettings()

    assert {name: key.get_secret_value() for name, key in settings.evolution_api_keys.items()} == {
        "loja": "loja-key",
        "clinica": "clinica-key",
    }
    logging.getLogger("test").warning("settings", extra={"settings": settings})
    for secret in ("loja-key", "clinica-key", "global-key"):
        assert secret not in repr(settings)
        assert secret not in caplog.text


def test_production_accepts_per_instance_keys_without_a_global_one() -> None:
    settings = DeliverSettings(environment="production", evolution_api_keys={"loja": "a-real-key"})
    assert settings.evolution_api_key.get_secret_value() == ""


def test_production_refuses_a_placeholder_instance_key() -> None:
    with pytest.raises(ValidationError, match="PAPO_EVOLUTION_API_KEYS"):
        DeliverSettings(environment="production", evolution_api_keys={"loja": "changeme"})
