"""The Dockerfiles of the five services without a GPU: one recipe, differing only in the service's name and
port; pinned bases, uv, only libs/common and the service installed, a numeric non-root user, `papo run`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SERVICES = {"ingest": 8080, "debounce": 8000, "llm": 8000, "persist": 8000, "deliver": 8000}


def dockerfile(service: str) -> str:
    return (REPO / "services" / service / "Dockerfile").read_text()


def test_one_recipe_for_all() -> None:
    def generic(service: str, port: int) -> str:
        lines = [
            line for line in dockerfile(service).splitlines() if not line.startswith("# ") or "syntax" in line
        ]
        return "\n".join(lines).replace(service, "<service>").replace(f"EXPOSE {port}", "EXPOSE <port>")

    recipes = {service: generic(service, port) for service, port in SERVICES.items()}
    assert len(set(recipes.values())) == 1, "the Dockerfiles have drifted apart"


@pytest.mark.parametrize(("service", "port"), SERVICES.items())
def test_dockerfile(service: str, port: int) -> None:
    text = dockerfile(service)
    assert re.search(
        r"^ARG PYTHON_IMAGE=python:3\.11(\.\d+)?-slim-bookworm(@sha256:[0-9a-f]{64})?$", text, re.M
    )
    assert re.search(r"^ARG UV_IMAGE=ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+(@sha256:[0-9a-f]{64})?$", text, re.M)
    copies = re.findall(r"^COPY (?!--from)(\S+)", text, re.M)
    assert copies == ["pyproject.toml", "libs/common", f"services/{service}"], (
        "only libs/common and the service go in"
    )
    assert "COPY pyproject.toml uv.lock ./\n" in text, "the workspace root and its lock"
    assert f"uv sync --frozen --no-dev --no-editable --package papo-{service} " in text, (
        "exactly the lock, not editable"
    )
    assert "torch" not in text
    assert len(re.findall(r"^FROM ", text, re.M)) == 3, "uv, build and runtime stages"
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert f"EXPOSE {port}\n" in text
    assert text.rstrip().endswith(f'ENTRYPOINT ["papo", "run", "{service}"]')


def test_dockerignore_keeps_the_context_clean() -> None:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".tools", "**/__pycache__", ".env"} <= ignored
    assert not {"libs", "libs/common", "services"} & ignored
