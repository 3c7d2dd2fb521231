"""`papo dev` on a fresh checkout: what it fills in for development, and what it never fills in."""

from __future__ import annotations

import pytest

from papo_common.dev import DEV_PORTS, dev_ports, dev_setup


def test_nothing_configured_gets_a_token_the_simulator_and_the_local_model() -> None:
    setup = dev_setup({})

    token = setup.env["PAPO_WEBHOOK_TOKEN"]
    assert len(token) >= 32
    assert "PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED" not in setup.env, "development never turns auth off"
    assert setup.simulator
    assert setup.env["PAPO_EVOLUTION_URL"] == "http://127.0.0.1:8081"
    assert setup.env["PAPO_SIMULATOR_WEBHOOK_URL"] == "http://127.0.0.1:8080/webhook/evolution"
    assert setup.env["PAPO_EVOLUTION_API_KEY"] and setup.env["PAPO_ADMIN_TOKEN"]
    assert setup.env["PAPO_ADMIN_TOKEN"] != token
    assert not {"PAPO_LLM_API_KEY", "OPENAI_API_KEY", "PAPO_LLM_BASE_URL"} & set(setup.env)
    shown = "\n".join(setup.notices)
    assert shown.count(token) == 1, "the token is shown once"
    assert "http://127.0.0.1:8081/" in shown
    assert "local" in shown


def test_each_run_makes_its_own_token() -> None:
    assert dev_setup({}).env["PAPO_WEBHOOK_TOKEN"] != dev_setup({}).env["PAPO_WEBHOOK_TOKEN"]


def test_what_is_configured_is_kept() -> None:
    configured = {
        "PAPO_WEBHOOK_TOKEN": "a-real-token",
        "PAPO_EVOLUTION_URL": "https://evolution.example.com",
        "PAPO_EVOLUTION_API_KEY": "evolution-key",
        "PAPO_LLM_API_KEY": "sk-real",
    }
    setup = dev_setup(configured)

    assert setup.env == configured
    assert not setup.simulator
    assert setup.notices == []


def test_production_gets_no_default() -> None:
    environ = {"PAPO_ENVIRONMENT": "production"}
    setup = dev_setup(environ)

    assert setup.env == environ
    assert not setup.simulator and not setup.notices


def test_without_the_simulator_installed_evolution_is_left_unset() -> None:
    setup = dev_setup({}, simulator_available=False)

    assert not setup.simulator
    assert "PAPO_EVOLUTION_URL" not in setup.env
    assert "PAPO_WEBHOOK_TOKEN" in setup.env


def test_a_base_port_moves_every_port() -> None:
    ports = dev_ports({"PAPO_DEV_BASE_PORT": "20080"})
    assert ports == {name: port + 12000 for name, port in DEV_PORTS.items()}
    setup = dev_setup({"PAPO_DEV_BASE_PORT": "20080"})
    assert setup.env["PAPO_EVOLUTION_URL"] == "http://127.0.0.1:20081"
    assert setup.env["PAPO_SIMULATOR_WEBHOOK_URL"] == "http://127.0.0.1:20080/webhook/evolution"


@pytest.mark.parametrize("allowed", ["true"])
def test_an_explicit_unauthenticated_switch_is_respected(allowed: str) -> None:
    setup = dev_setup({"PAPO_WEBHOOK_ALLOW_UNAUTHENTICATED": allowed})
    assert "PAPO_WEBHOOK_TOKEN" not in setup.env
